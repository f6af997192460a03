package main

import (
	"testing"

	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// The sandbox runtime's defaults are the sandbox and workspace packages'.
func TestDefaultsAreTheLibraries(t *testing.T) {
	testsupport.CheckEnvDefaults(t, &config{}, map[string]any{
		"PYTHON_PATH":               sandbox.DefaultPythonPath,
		"SANDBOX_WORKSPACE_MB":      int64(workspace.DefaultMaxBytes >> 20),
		"SANDBOX_WORKSPACE_FILES":   workspace.DefaultMaxFiles,
		"SANDBOX_OBSERVATION_BYTES": workspace.DefaultObservationBytes,
	})
}
