package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// The variables this binary reads, and their defaults, are the README's.
func TestConfigDocumented(t *testing.T) {
	testsupport.CheckEnvDocumented(t, &config{}, metricsAddr, "Shared by all services:", "Both runtimes:", "Sandbox runtime:")
}

// The workspace variables have no envDefault (zero takes internal/workspace's
// defaults, their one definition); the README's cells must be those.
func TestWorkspaceDefaultsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, def := range map[string]int{
		"SANDBOX_MAX_WORKSPACES":    workspace.DefaultMaxOpen,
		"SANDBOX_WORKSPACE_MB":      workspace.DefaultMaxBytes >> 20,
		"SANDBOX_WORKSPACE_FILES":   workspace.DefaultMaxFiles,
		"SANDBOX_OBSERVATION_BYTES": workspace.DefaultObservationBytes,
	} {
		if row := fmt.Sprintf("| `%s` | `%d` |", name, def); !strings.Contains(string(b), row) {
			t.Errorf("README has no row %q", row)
		}
	}
}
