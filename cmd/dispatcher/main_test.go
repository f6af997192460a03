package main

import (
	"testing"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The variables this binary reads, and their defaults, are docs/configuration.md's.
func TestConfigDocumented(t *testing.T) {
	testsupport.CheckEnvDocumented(t, &config{}, metricsAddr, "Shared by all services:", "Dispatcher:")
}
