package main

import (
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// The variables this binary reads, and their defaults, are docs/configuration.md's.
func TestConfigDocumented(t *testing.T) {
	testsupport.CheckEnvDocumented(t, &config{}, metricsAddr, "Shared by all services:", "Both runtimes:", "Sandbox runtime:", "Image store (the sandbox runtime and `adpctl env`):")
}

// The workspace variables' defaults are the workspace package's.
func TestWorkspaceDefaults(t *testing.T) {
	var cfg config
	if err := env.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.InFlight = 6
	cfg.OutputDir = "/data/output"
	got := cfg.managerConfig()
	want := workspace.Config{
		SeedRoot: "/data/output/workspaces", MaxBytes: workspace.DefaultMaxBytes, MaxFiles: workspace.DefaultMaxFiles,
		ObservationBytes: workspace.DefaultObservationBytes, MaxOpen: 6,
	}
	if got != want {
		t.Errorf("managerConfig() = %+v, want %+v", got, want)
	}
}

// The caps' defaults are core.DefaultResourceCaps (and so adpctl import
// harbor's); caps below the defaults are refused, naming the setting.
func TestResourceCapsDefaults(t *testing.T) {
	var cfg config
	if err := env.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	caps, err := cfg.resourceCaps()
	if err != nil || caps != core.DefaultResourceCaps {
		t.Errorf("resourceCaps() = %+v, %v; want %+v", caps, err, core.DefaultResourceCaps)
	}
	cfg.Caps.Threads = cfg.MaxThreads - 1
	if _, err := cfg.resourceCaps(); err == nil || !strings.Contains(err.Error(), "SANDBOX_CAP_THREADS is below SANDBOX_MAX_THREADS") {
		t.Errorf("caps below the defaults: %v", err)
	}
}
