package codeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// backends runs f under every jail present.
func backends(t *testing.T, f func(t *testing.T, j sandbox.Jail)) {
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		t.Run(backend, func(t *testing.T) {
			j, err := sandbox.New(backend, sandbox.Config{})
			if errors.Is(err, sandbox.ErrNoJail) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			f(t, j)
		})
	}
}

// wsAgent is an agent with workspaces and the image store.
func wsAgent(t *testing.T, j sandbox.Jail, envs Environments) *Agent {
	t.Helper()
	lim := sandbox.DefaultLimits()
	a := &Agent{Jail: j, Limits: lim, Environments: envs, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	m, err := workspace.NewManager(workspace.Config{SeedRoot: t.TempDir(), MaxOpen: 4}, j, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a.Workspaces = m
	return a
}

// TestEnvironmentWorkspace: a workspace task in its image (the image's
// tools and interpreter, the workspace at its working directory) is
// rewarded by its hidden check for the agent's work, right or wrong, with
// a plain and a writable root, under every jail.
func TestEnvironmentWorkspace(t *testing.T) {
	store := envStore(t)
	backends(t, func(t *testing.T, j sandbox.Jail) {
		a := wsAgent(t, j, store)
		const check = `python3 -c "import imgcheck, calc; assert calc.add(2, 3) == imgcheck.EXPECTED" && imgtool`
		for _, tc := range []struct {
			name     string
			fix      string
			writable bool
			success  bool
		}{
			{"right fix", "a + b", false, true},
			{"wrong fix", "a - b", false, false},
			{"right fix, writable root", "a + b", true, true},
			{"wrong fix, writable root", "a * b", true, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := map[string]any{
					"environment": "archive:ws.tar",
					"files":       map[string]any{"calc.py": "def add(a, b):\n    return 0\n"},
					"setup":       []any{`imgtool > setup.txt`},
					"actions": actions(
						map[string]any{"action": "bash", "command": "pwd; imgtool"},
						map[string]any{"action": "write_file", "path": "calc.py", "content": "def add(a, b):\n    return " + tc.fix + "\n"},
						map[string]any{"action": "finish"}),
					"test_command": check,
				}
				if tc.writable {
					c["writable_root"] = true
					c["setup"] = []any{`imgtool > setup.txt && echo 'EXTRA = 1' > /usr/lib/python3.11/setupmod.py`}
					c["test_command"] = `python3 -c "import setupmod" && ` + check
				}
				tr, err := a.Execute(context.Background(), wsTask(c))
				if err != nil {
					t.Fatal(err)
				}
				if tr.Success != tc.success {
					t.Fatalf("success %v, want %v (%s: %s; steps %v)", tr.Success, tc.success, tr.ErrorType, tr.ErrorMessage, stepTools(tr))
				}
				if !tc.success && tr.ErrorType != core.ErrWrongAnswer {
					t.Errorf("error type %q, want wrong_answer", tr.ErrorType)
				}
				// On a writable root a nested working directory is /workspace
				// (the agent could move its parent away).
				dir := "/usr/src/app"
				if tc.writable {
					dir = workspace.JailDir
				}
				if obs := tr.Steps[1].Observation; !strings.Contains(obs, "cwd "+dir+" ") || !strings.Contains(obs, "from-the-image") {
					t.Errorf("the agent's first step did not run in the image's working directory with its tool: %q", obs)
				}
				diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
				if !strings.Contains(diff, "+    return "+tc.fix) || strings.Contains(diff, "setup.txt") {
					t.Errorf("the patch is not the agent's change alone:\n%s", diff)
				}
				if id, _ := tr.Metadata[core.MetaEnvironmentImage].(string); !strings.HasPrefix(id, "sha256:") {
					t.Errorf("environment_image %q", id)
				}
			})
		}
	})
}

// TestWorkspaceSetupOnce: the k attempts of a task with setup start from
// one post-setup snapshot: the setup runs once (a counter it keeps outside
// the workspace would say otherwise), every attempt records its steps,
// marked from_snapshot on those that did not run it, and each patch is the
// attempt's own change, never the setup's nor another attempt's.
func TestWorkspaceSetupOnce(t *testing.T) {
	backends(t, func(t *testing.T, j sandbox.Jail) {
		a := wsAgent(t, j, nil)
		const k = 3
		for i := 0; i < k; i++ {
			tk := wsTask(map[string]any{
				"files": map[string]any{"calc.py": "def add(a, b):\n    return 0\n"},
				"setup": []any{"echo prepared > setup.txt && date +%s%N > made.txt"},
				"actions": actions(
					map[string]any{"action": "bash", "command": fmt.Sprintf("cat setup.txt && echo %d > attempt.txt", i)},
					map[string]any{"action": "finish"}),
				"test_command": "test -f setup.txt && test -f attempt.txt",
			})
			tk.TaskID, tk.Samples, tk.SampleIndex = "setup-once-"+j.Name(), k, i
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Success {
				t.Fatalf("attempt %d: %s: %s (steps %v)", i, tr.ErrorType, tr.ErrorMessage, stepTools(tr))
			}
			setup := tr.Steps[0]
			if p, _ := setup.ActionParams["purpose"].(string); p != purposeSetup {
				t.Fatalf("attempt %d: first step %v, want the setup's", i, setup.ActionParams)
			}
			if _, ok := setup.ActionParams["snapshot"].(string); !ok {
				t.Errorf("attempt %d: the setup step names no snapshot: %v", i, setup.ActionParams)
			}
			if from, _ := setup.ActionParams["from_snapshot"].(bool); from != (i > 0) {
				t.Errorf("attempt %d: from_snapshot %v", i, from)
			}
			diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
			if !strings.Contains(diff, fmt.Sprintf("+%d\n", i)) || strings.Contains(diff, "setup.txt") || strings.Contains(diff, "made.txt") {
				t.Errorf("attempt %d: the patch is not its own change alone:\n%s", i, diff)
			}
			for other := 0; other < i; other++ {
				if strings.Contains(tr.Steps[1].Observation, fmt.Sprintf("%d\n", other)) && other != i {
					t.Errorf("attempt %d sees attempt %d's write", i, other)
				}
			}
		}
	})
}

// TestWorkspaceResources: a workspace task's resources reach its steps'
// jails: 24 live processes end the step at the default process limit and
// pass when the task asks for 32.
func TestWorkspaceResources(t *testing.T) {
	a := newWorkspaceAgent(t, nil, t.TempDir())
	const spawn = "for i in $(seq 24); do sleep 1 & done; wait; echo spawned"
	for _, tc := range []struct {
		name      string
		resources map[string]any
		ok        bool
	}{
		{"default", nil, false},
		{"asks for 32", map[string]any{"max_procs": 32}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := map[string]any{
				"files":   map[string]any{"a.txt": "a\n"},
				"actions": actions(map[string]any{"action": "bash", "command": spawn}, map[string]any{"action": "finish"}),
			}
			if tc.resources != nil {
				c["resources"] = tc.resources
			}
			tr, err := a.Execute(context.Background(), wsTask(c))
			if err != nil {
				t.Fatal(err)
			}
			step := tr.Steps[0]
			if got := step.Success && strings.Contains(step.Observation, "spawned"); got != tc.ok {
				t.Errorf("step success %v, want %v: %s %s", got, tc.ok, step.ErrorMessage, step.Observation)
			}
		})
	}
}
