package codeagent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// A tiny repository with a failing test: add subtracts.
var calcRepo = map[string]any{
	"calc.py":      "def add(a, b):\n    return a - b\n",
	"test_calc.py": "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nif __name__ == '__main__':\n    unittest.main()\n",
}

const calcTest = "python3 -m unittest -q test_calc"

// hiddenTest is a hidden test file of calc's.
const hiddenTest = "from calc import add\nassert add(2, 3) == 5\nprint('ok')\n"

func newWorkspaceAgent(t *testing.T, client *llm.Client, seedRoot string) *Agent {
	t.Helper()
	a := newAgent(t, client, nil)
	m, err := workspace.NewManager(workspace.Config{SeedRoot: seedRoot, MaxOpen: 2}, a.Jail, a.Limits)
	if err != nil {
		t.Fatal(err)
	}
	a.Workspaces = m
	return a
}

func wsTask(constraints map[string]any) core.TaskSpec {
	tk := task("Fix add in calc.py so that the tests pass.", constraints)
	tk.MaxSteps = 8
	return tk
}

func actions(as ...map[string]any) []any {
	out := make([]any, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

// tools returns the tool of each step, with its purpose when it has one.
func stepTools(tr *core.Trajectory) []string {
	var out []string
	for _, s := range tr.Steps {
		name, _ := s.ActionParams["tool"].(string)
		if p, ok := s.ActionParams["purpose"].(string); ok && p != purposeRun {
			name += ":" + p
		}
		out = append(out, name)
	}
	return out
}

func TestWorkspaceReplay(t *testing.T) {
	a := newWorkspaceAgent(t, nil, t.TempDir())
	for _, tc := range []struct {
		name     string
		newText  string
		success  bool
		reward   float64
		errType  core.ErrorType
		diffLine string
	}{
		{"the fix", "a + b", true, 1, core.ErrNone, "+    return a + b"},
		{"a wrong fix", "a * b", false, 0, core.ErrWrongAnswer, "+    return a * b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := a.Execute(context.Background(), wsTask(map[string]any{
				"files": calcRepo, "test_command": calcTest,
				"actions": actions(
					map[string]any{"action": "bash", "command": "ls && cd /tmp"},
					map[string]any{"action": "read_file", "path": "calc.py"},
					map[string]any{"action": "edit_file", "path": "calc.py", "old": "a - b", "new": tc.newText},
					map[string]any{"action": "bash", "command": "pwd"},
					map[string]any{"action": "finish", "answer": "edited add"},
				),
			}))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || tr.ErrorType != tc.errType || tr.Reward == nil || *tr.Reward != tc.reward {
				t.Fatalf("success=%v error=%s (%s) reward=%v; want %v %s %v", tr.Success, tr.ErrorType, tr.ErrorMessage, fmtReward(tr.Reward), tc.success, tc.errType, tc.reward)
			}
			if got, want := strings.Join(stepTools(tr), " "), "bash read_file edit_file bash finish bash:verify"; got != want {
				t.Errorf("steps %q, want %q", got, want)
			}
			ls, read, edit, pwd, verify := tr.Steps[0], tr.Steps[1], tr.Steps[2], tr.Steps[3], tr.Steps[5]
			if ls.ActionType != core.ActionCodeExecution || !strings.Contains(ls.Observation, "test_calc.py") || !ls.Success {
				t.Errorf("bash step = %+v", ls)
			}
			if read.ActionType != core.ActionToolCall || !strings.Contains(read.Observation, "return a - b") {
				t.Errorf("read_file step = %+v", read)
			}
			if args, _ := edit.ActionParams["arguments"].(map[string]any); edit.ActionType != core.ActionToolCall || !edit.Success || args["new"] != tc.newText {
				t.Errorf("edit_file step = %+v", edit)
			}
			// The shell persists: the working directory carried over.
			if !strings.Contains(pwd.Observation, "/tmp") {
				t.Errorf("the second bash step did not start where the first ended: %q", pwd.Observation)
			}
			if verify.ActionType != core.ActionCodeExecution || verify.Success != tc.success {
				t.Errorf("verify step = %+v", verify)
			}
			if out, _ := tr.Metadata[core.MetaTestOutput].(string); out != verify.Observation || out == "" {
				t.Errorf("test_output = %q, want the verify step's observation %q", out, verify.Observation)
			}
			diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
			if !strings.Contains(diff, "-    return a - b") || !strings.Contains(diff, tc.diffLine) || strings.Contains(diff, "test_calc") {
				t.Errorf("workspace_diff = %q, want the change of calc.py only", diff)
			}
			if tr.ExitReason != core.ExitFinished || tr.FinalResult != "edited add" || tr.Metadata[core.MetaSource] != string(rollout.SourceScripted) || tr.Metadata[core.MetaVerified] != tc.success {
				t.Errorf("exit=%s final=%q metadata=%v", tr.ExitReason, tr.FinalResult, tr.Metadata)
			}
		})
	}
}

// TestWorkspaceOutcomes: setup, missing seeds, no verifier, max_steps, and
// checks the agent tries to get around.
// hiddenUnittest is a hidden check of calc.add written with unittest.
const hiddenUnittest = "import unittest\nfrom calc import add\n\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\nunittest.main()\n"

func TestWorkspaceOutcomes(t *testing.T) {
	a := newWorkspaceAgent(t, nil, t.TempDir())
	fix := map[string]any{"action": "edit_file", "path": "calc.py", "old": "a - b", "new": "a + b"}
	for _, tc := range []struct {
		name        string
		constraints map[string]any
		maxSteps    int // < 0: the task's timeout is -maxSteps seconds instead
		success     bool
		errType     core.ErrorType
		exit        core.ExitReason
		reward      any // "absent" or a float
		tools       string
	}{
		{"setup fails", map[string]any{"files": calcRepo, "setup": []any{"true", "exit 3"}, "test_command": calcTest, "actions": actions(fix)},
			0, false, core.ErrSetup, core.ExitInvalidTask, "absent", "bash:setup bash:setup"},
		{"setup runs first", map[string]any{"files": calcRepo, "setup": "echo prepared > setup.txt", "test_command": "test -f setup.txt && " + calcTest, "actions": actions(fix)},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "bash:setup edit_file bash:verify"},
		{"missing workspace seed", map[string]any{"workspace": "no-such-repo.tar.gz", "test_command": "true", "actions": actions(fix)},
			0, false, core.ErrSystem, core.ExitInvalidTask, "absent", ""},
		{"no actions and no model", map[string]any{"files": calcRepo, "test_command": calcTest},
			0, false, core.ErrNoModel, core.ExitNoSource, "absent", ""},
		{"no test_command: no reward", map[string]any{"files": calcRepo, "actions": actions(fix)},
			0, true, core.ErrNone, core.ExitReplayed, "absent", "edit_file"},
		{"max_steps cuts the replay, the test still runs", map[string]any{"files": calcRepo, "test_command": calcTest,
			"actions": actions(map[string]any{"action": "bash", "command": "true"}, fix)},
			1, false, core.ErrWrongAnswer, core.ExitMaxSteps, 0.0, "bash bash:verify"},
		{"an edit that does not apply is an observation", map[string]any{"files": calcRepo, "test_command": calcTest,
			"actions": actions(map[string]any{"action": "edit_file", "path": "calc.py", "old": "no such text", "new": "x"})},
			0, false, core.ErrWrongAnswer, core.ExitReplayed, 0.0, "edit_file bash:verify"},
		{"the agent's PATH does not reach the test", map[string]any{"files": calcRepo, "test_command": calcTest, "actions": actions(
			map[string]any{"action": "bash", "command": "mkdir -p bin && printf '#!/bin/sh\\nexit 0\\n' > bin/python3 && chmod +x bin/python3 && export PATH=$PWD/bin:$PATH && cd bin"})},
			0, false, core.ErrWrongAnswer, core.ExitReplayed, 0.0, "bash bash:verify"},
		{"a step's timeout is an observation", map[string]any{"files": calcRepo, "test_command": calcTest, "actions": actions(
			map[string]any{"action": "bash", "command": "sleep 30", "timeout": 1}, fix)},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "bash edit_file bash:verify"},
		{"the task's timeout ends the attempt", map[string]any{"files": calcRepo, "test_command": calcTest, "actions": actions(
			map[string]any{"action": "bash", "command": "sleep 30"}, fix)},
			-2, false, core.ErrTimeout, core.ExitTimeout, 0.0, "bash"},
		// The shell's saved state is the agent's to write: sourced before
		// a command in its workspace, it could end the check with exit 0.
		{"the agent's saved shell state does not reach the test", map[string]any{"files": calcRepo, "test_command": calcTest, "actions": actions(
			map[string]any{"action": "bash", "command": "trap - EXIT; for f in env env.next; do printf 'exit 0\\n' > /adp-state/$f; done; printf /workspace > /adp-state/cwd.next"},
			map[string]any{"action": "bash", "command": "echo unreachable"})},
			0, false, core.ErrWrongAnswer, core.ExitReplayed, 0.0, "bash bash bash:verify"},
		// The test sees the agent's files as it left them: new, removed,
		// executable.
		{"new, removed and executable files reach the test", map[string]any{"files": calcRepo, "test_command": "test -x run.sh && ./run.sh && ! test -e test_calc.py", "actions": actions(
			map[string]any{"action": "write_file", "path": "run.sh", "content": "#!/bin/sh\necho ran\n"},
			map[string]any{"action": "bash", "command": "chmod +x run.sh && rm test_calc.py"})},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "write_file bash bash:verify"},
		// A binary file the agent made is checked like any other file.
		{"a binary change is checked", map[string]any{"files": calcRepo, "test_command": "test \"$(od -An -tx1 blob.bin | tr -d ' ')\" = 0001", "actions": actions(
			map[string]any{"action": "bash", "command": "printf '\\000\\001' > blob.bin"})},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "bash bash:verify"},
		// setup runs in a fresh shell too: its exports do not carry into
		// the agent's.
		{"setup's exports stay in setup", map[string]any{"files": calcRepo, "setup": "export FROM_SETUP=1", "test_command": "test -f seen && ! grep -q 1 seen", "actions": actions(
			map[string]any{"action": "bash", "command": "echo \"$FROM_SETUP\" > seen"})},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "bash:setup bash bash:verify"},
		// Hidden test files: read-only at /tests for the check alone; the
		// agent's steps never see them.
		{"test_files are the check's alone", map[string]any{"files": calcRepo, "test_files": map[string]any{"test_hidden.py": hiddenTest},
			"test_command": "python3 /tests/test_hidden.py", "actions": actions(
				map[string]any{"action": "bash", "command": "test ! -e /tests && test ! -e test_hidden.py"}, fix)},
			0, true, core.ErrNone, core.ExitReplayed, 1.0, "bash edit_file bash:verify"},
		{"a check ended early by the module under test fails", map[string]any{"files": calcRepo, "test_files": map[string]any{"test_hidden.py": hiddenTest},
			"test_command": "python3 /tests/test_hidden.py", "actions": actions(
				map[string]any{"action": "bash", "command": "printf 'import os\nos._exit(0)\n' >> calc.py"})},
			0, false, core.ErrWrongAnswer, core.ExitReplayed, 0.0, "bash bash:verify"},
		// The check's own code patched by the module under test: not a
		// wrong answer but tampering, said so in the exit reason.
		{"a check whose unittest the module patched is tampered", map[string]any{"files": calcRepo, "test_files": map[string]any{"test_hidden.py": hiddenUnittest},
			"test_command": "python3 /tests/test_hidden.py", "actions": actions(
				map[string]any{"action": "bash", "command": "printf 'import unittest\\nunittest.TestCase.assertEqual = lambda *a, **k: None\\n' >> calc.py"})},
			0, false, core.ErrWrongAnswer, core.ExitTampered, 0.0, "bash bash:verify"},
		{"a diff that cannot be taken whole is no success", map[string]any{"files": calcRepo, "test_command": "true", "actions": actions(
			map[string]any{"action": "python", "code": "import os\nfor i in range(2100):\n    os.mkdir('d'); os.chdir('d')\n"})},
			0, false, core.ErrSystem, core.ExitReplayed, 0.0, "python"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := wsTask(tc.constraints)
			switch {
			case tc.maxSteps > 0:
				tk.MaxSteps = tc.maxSteps
			case tc.maxSteps < 0: // a timeout in seconds
				tk.Timeout = -tc.maxSteps
			}
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || tr.ErrorType != tc.errType || tr.ExitReason != tc.exit || fmtReward(tr.Reward) != tc.reward {
				t.Errorf("success=%v error=%s (%s) exit=%s reward=%v; want %v %s %s %v",
					tr.Success, tr.ErrorType, tr.ErrorMessage, tr.ExitReason, fmtReward(tr.Reward), tc.success, tc.errType, tc.exit, tc.reward)
			}
			if got := strings.Join(stepTools(tr), " "); got != tc.tools {
				t.Errorf("steps %q, want %q", got, tc.tools)
			}
			if _, ok := tr.Metadata[core.MetaVerified]; ok && tc.reward == "absent" {
				t.Errorf("verified = %v on a task whose check did not run", tr.Metadata[core.MetaVerified])
			}
		})
	}
}

// TestWorkspaceHarborReward: a check's reward file sets the trajectory's
// reward (its scalar) and verifier_rewards; success is reaching 1.
func TestWorkspaceHarborReward(t *testing.T) {
	a := newWorkspaceAgent(t, nil, t.TempDir())
	for _, tc := range []struct {
		name    string
		script  string
		success bool
		reward  any
		rewards map[string]float64
	}{
		{"all tests", `echo '{"reward": 1, "tests": 2}' > /logs/verifier/reward.json`, true, 1.0, map[string]float64{"reward": 1, "tests": 2}},
		{"partial credit", `echo '{"a": 1, "b": 0}' > /logs/verifier/reward.json`, false, 0.5, map[string]float64{"a": 1, "b": 0}},
		{"reward.txt 0.25", "echo 0.25 > /logs/verifier/reward.txt", false, 0.25, map[string]float64{"reward": 0.25}},
		{"a reward written before a failing exit counts for nothing", "echo 1 > /logs/verifier/reward.txt; exit 1", false, 0.0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := a.Execute(context.Background(), wsTask(map[string]any{"files": calcRepo,
				"test_files": map[string]any{"test.sh": "#!/bin/bash\n" + tc.script + "\n"}, "test_command": "bash /tests/test.sh",
				"actions": actions(map[string]any{"action": "bash", "command": "true"})}))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || fmtReward(tr.Reward) != tc.reward {
				t.Errorf("success=%v reward=%v (%s); want %v %v", tr.Success, fmtReward(tr.Reward), tr.ErrorMessage, tc.success, tc.reward)
			}
			got, _ := tr.Metadata[core.MetaVerifierRewards].(map[string]float64)
			if tc.rewards == nil && tr.Metadata[core.MetaVerifierRewards] != nil || tc.rewards != nil && !reflect.DeepEqual(got, tc.rewards) {
				t.Errorf("verifier_rewards = %v, want %v", tr.Metadata[core.MetaVerifierRewards], tc.rewards)
			}
		})
	}
}

// TestWorkspaceLLM: a model drives bash, write_file and edit_file through
// the loop to a passing test_command; the trajectory holds the diff and the
// exchange exactly as the server received it, and the model never sees the
// test command.
func TestWorkspaceLLM(t *testing.T) {
	const testCmd = calcTest + " # hidden-grader"
	client, fake := newLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
		switch n {
		case 0:
			return 200, testsupport.ToolCallReply("c0", "bash", map[string]any{"command": "cat calc.py; export GREETING=hi"})
		case 1:
			return 200, testsupport.RawToolCallReply("c1", "edit_file", `{"path": "calc.py"}`) // missing arguments
		case 2:
			return 200, testsupport.ToolCallReply("c2", "write_file", map[string]any{"path": "NOTES.md", "content": "add was wrong\n"})
		case 3:
			return 200, testsupport.ToolCallReply("c3", "edit_file", map[string]any{"path": "calc.py", "old": "a - b", "new": "a + b"})
		case 4:
			return 200, testsupport.ToolCallReply("c4", "bash", map[string]any{"command": "echo $GREETING; " + "python3 -m unittest -q test_calc 2>&1 | tail -1"})
		default:
			return 200, testsupport.ToolCallReply("c5", "finish", map[string]any{"answer": "fixed add"})
		}
	})
	a := newWorkspaceAgent(t, client, t.TempDir())
	tr, err := a.Execute(context.Background(), wsTask(map[string]any{"files": calcRepo, "test_command": testCmd}))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.Reward == nil || *tr.Reward != 1 || tr.ExitReason != core.ExitFinished || tr.Metadata[core.MetaSource] != string(rollout.SourceLLM) {
		t.Fatalf("success=%v reward=%v exit=%s error=%s (%s)", tr.Success, fmtReward(tr.Reward), tr.ExitReason, tr.ErrorType, tr.ErrorMessage)
	}
	if got, want := strings.Join(stepTools(tr), " "), "bash write_file edit_file bash finish bash:verify"; got != want {
		t.Errorf("steps %q, want %q (the malformed call is not a step)", got, want)
	}
	if obs := tr.Steps[3].Observation; !strings.Contains(obs, "hi") || !strings.Contains(obs, "OK") {
		t.Errorf("the second bash call = %q, want the exported variable and the passing tests", obs)
	}
	diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
	if !strings.Contains(diff, "+    return a + b") || !strings.Contains(diff, "+add was wrong") || !strings.Contains(diff, "NOTES.md") {
		t.Errorf("workspace_diff = %q, want the edit and the new file", diff)
	}
	reqs := fake.Requests()
	if len(reqs) != 6 {
		t.Fatalf("%d model calls, want 6", len(reqs))
	}
	if got := reqs[2].LastContent(); !strings.Contains(got, "missing") {
		t.Errorf("the malformed call's error was not fed back: %q", got)
	}
	if got := reqs[1].LastContent(); !strings.Contains(got, "return a - b") {
		t.Errorf("the bash observation was not fed back: %q", got)
	}
	var names []string
	for _, tool := range reqs[0].Tools {
		names = append(names, tool.Function.Name)
	}
	if got := strings.Join(names, " "); got != "bash python read_file write_file edit_file finish" {
		t.Errorf("tools offered: %s", got)
	}
	for i, req := range reqs {
		if strings.Contains(string(req.Body), "hidden-grader") {
			t.Errorf("request %d shows the model the test command", i)
		}
	}
	var sent struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &sent); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tr.Tools, sent.Tools) || len(tr.Messages) != len(sent.Messages)+1 {
		t.Fatalf("recorded %d messages and tools %s; the server received %d and %s", len(tr.Messages), tr.Tools, len(sent.Messages), sent.Tools)
	}
	for i, m := range sent.Messages {
		if !bytes.Equal(tr.Messages[i], m) {
			t.Errorf("recorded message %d\n%s\nthe server received\n%s", i, tr.Messages[i], m)
		}
	}
	var system struct{ Content string }
	_ = json.Unmarshal(sent.Messages[0], &system)
	if system.Content != prompt.WorkspaceSystem {
		t.Errorf("system prompt sent: %q", system.Content)
	}
}

// TestWorkspaceCap: a step that fills the workspace past its cap ends the
// attempt with output_limit; the test does not run.
func TestWorkspaceCap(t *testing.T) {
	a := newAgent(t, nil, nil)
	m, err := workspace.NewManager(workspace.Config{MaxBytes: 1 << 20, MaxOpen: 1}, a.Jail, a.Limits)
	if err != nil {
		t.Fatal(err)
	}
	a.Workspaces = m
	tr, err := a.Execute(context.Background(), wsTask(map[string]any{"files": calcRepo, "test_command": "true", "actions": actions(
		map[string]any{"action": "bash", "command": "head -c 3000000 /dev/zero > big; echo done"},
		map[string]any{"action": "bash", "command": "echo never"})}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ErrorType != core.ErrOutputLimit || tr.ExitReason != core.ExitAborted || fmtReward(tr.Reward) != 0.0 {
		t.Errorf("success=%v error=%s (%s) exit=%s reward=%v; want output_limit, aborted, 0", tr.Success, tr.ErrorType, tr.ErrorMessage, tr.ExitReason, fmtReward(tr.Reward))
	}
	if got := strings.Join(stepTools(tr), " "); got != "bash" {
		t.Errorf("steps %q, want the one bash step that hit the cap", got)
	}
}

// TestWorkspaceDiffRecord: the diff is the agent's change against the
// state setup left (not setup's change), and a patch that is not UTF-8 is
// recorded byte for byte in base64.
func TestWorkspaceDiffRecord(t *testing.T) {
	a := newWorkspaceAgent(t, nil, t.TempDir())
	fixed := map[string]any{"calc.py": "def add(a, b):\n    return a + b\n"}
	tr, err := a.Execute(context.Background(), wsTask(map[string]any{
		"files": fixed, "setup": "sed -i 's/a + b/a - b/' calc.py", "test_command": "python3 -c 'from calc import add; assert add(2, 3) == 5'",
		"actions": actions(map[string]any{"action": "edit_file", "path": "calc.py", "old": "a - b", "new": "a + b"}),
	}))
	if err != nil {
		t.Fatal(err)
	}
	diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
	if !tr.Success || !strings.Contains(diff, "-    return a - b\n+    return a + b\n") {
		t.Errorf("success=%v (%s), workspace_diff = %q: want the agent's fix against the state after setup", tr.Success, tr.ErrorMessage, diff)
	}

	tr, err = a.Execute(context.Background(), wsTask(map[string]any{
		"files": fixed, "test_command": "true",
		"actions": actions(map[string]any{"action": "bash", "command": "printf 'caf\\351\\n' > \"$(printf 'n\\377me')\""}),
	}))
	if err != nil {
		t.Fatal(err)
	}
	b64, _ := tr.Metadata[core.MetaWorkspaceDiffBase64].(string)
	patch, err := base64.StdEncoding.DecodeString(b64)
	if _, text := tr.Metadata[core.MetaWorkspaceDiff]; text || err != nil || !bytes.Contains(patch, []byte("n\xffme")) || !bytes.Contains(patch, []byte("+caf\xe9\n")) {
		t.Errorf("workspace_diff present %v, workspace_diff_base64 %q (%v): want the patch's bytes", text, patch, err)
	}
	if !tr.Success {
		t.Errorf("success=false (%s)", tr.ErrorMessage)
	}
}
