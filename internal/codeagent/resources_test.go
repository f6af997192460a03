package codeagent

import (
	"context"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// TestTaskResources: a task's constraints.resources reach its jail, and a
// task asking above the runtime's caps is refused, never run with less.
func TestTaskResources(t *testing.T) {
	a := newAgent(t, nil, nil)
	a.Caps = core.ResourceCaps{MemoryMB: 2048, MaxProcs: 64, MaxThreads: 512, CPUs: 2, WorkspaceMB: 1024}
	// 24 processes alive at once: above the default of 16 processes.
	const procs = "import subprocess\n" +
		"ps = [subprocess.Popen(['sleep', '1']) for _ in range(24)]\n" +
		"print(sum(p.wait() == 0 for p in ps))\n"
	tests := []struct {
		name      string
		resources map[string]any
		success   bool
		exit      core.ExitReason
		msg       string // in the error message
	}{
		{"default process limit", nil, false, "", "process limit"},
		{"the task asks for more processes", map[string]any{"max_procs": 32}, true, core.ExitReplayed, ""},
		{"above the runtime's cap", map[string]any{"max_procs": 65}, false, core.ExitInvalidTask, "constraints.resources.max_procs"},
		{"memory above the cap", map[string]any{"memory_mb": 4096}, false, core.ExitInvalidTask, "constraints.resources.memory_mb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := map[string]any{"code": procs, "expected_output": "24"}
			if tc.resources != nil {
				c["resources"] = tc.resources
			}
			tr, err := a.Execute(context.Background(), task("spawn", c))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success {
				t.Fatalf("success %v, want %v (%s: %s)", tr.Success, tc.success, tr.ErrorType, tr.ErrorMessage)
			}
			if tc.exit != "" && tr.ExitReason != tc.exit {
				t.Errorf("exit_reason %q, want %q", tr.ExitReason, tc.exit)
			}
			if !strings.Contains(tr.ErrorMessage, tc.msg) {
				t.Errorf("error message %q does not name %q", tr.ErrorMessage, tc.msg)
			}
			if tc.exit == core.ExitInvalidTask && len(tr.Steps) != 0 {
				t.Errorf("a refused task ran %d steps", len(tr.Steps))
			}
		})
	}
}
