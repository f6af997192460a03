package export

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// A replayed workspace trajectory exports as the workspace agent's
// conversation: its prompts and tools, one call per agent step, without the
// platform's setup and test_command steps.
func TestWorkspaceRecord(t *testing.T) {
	t.Parallel()
	step := func(at core.ActionType, tool string, args map[string]any, purpose, obs string) core.ExecutionStep {
		p := map[string]any{"tool": tool, "arguments": args}
		if purpose != "" {
			p["purpose"] = purpose
		}
		return core.ExecutionStep{ActionType: at, ActionParams: p, Observation: obs, Success: true}
	}
	tr := &core.Trajectory{
		TaskID: "ws", TaskType: core.TaskCode, Description: "Fix add", Success: true,
		Steps: []core.ExecutionStep{
			step(core.ActionCodeExecution, "bash", map[string]any{"command": "git init -q"}, purposeSetup, "exit code 0"),
			step(core.ActionCodeExecution, "bash", map[string]any{"command": "cat calc.py"}, purposeRun, "return a - b"),
			step(core.ActionToolCall, "edit_file", map[string]any{"path": "calc.py", "old": "a - b", "new": "a + b"}, "", "replaced one occurrence in calc.py"),
			step(core.ActionToolCall, "finish", map[string]any{"answer": "fixed"}, "", "finished"),
			step(core.ActionCodeExecution, "bash", map[string]any{"command": "python3 -m unittest # grader"}, purposeVerify, "OK"),
		},
		Metadata: core.Metadata{core.MetaWorkspaceDiff: "--- a/calc.py\n", core.MetaVerified: true, core.MetaTestOutput: "OK", core.MetaAnswer: "fixed"},
	}
	line, err := Record(tr, FormatOpenAI, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateOpenAI(line); err != nil {
		t.Fatalf("invalid record: %v\n%s", err, line)
	}
	if strings.Contains(string(line), "grader") || strings.Contains(string(line), "git init") {
		t.Errorf("the record shows a platform step: %s", line)
	}
	var rec struct {
		Messages []struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			ToolCalls []struct {
				Function struct{ Name, Arguments string } `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []struct {
			Function struct{ Name string } `json:"function"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	var calls, tools []string
	for _, m := range rec.Messages {
		for _, c := range m.ToolCalls {
			calls = append(calls, c.Function.Name+c.Function.Arguments)
		}
	}
	for _, tl := range rec.Tools {
		tools = append(tools, tl.Function.Name)
	}
	if got, want := strings.Join(calls, " "), `bash{"command":"cat calc.py"} edit_file{"new":"a + b","old":"a - b","path":"calc.py"} finish{"answer":"fixed"}`; got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
	if got := strings.Join(tools, " "); got != "bash python read_file write_file edit_file finish" {
		t.Errorf("tools %s, want the workspace tools", got)
	}
	if rec.Messages[0].Content != prompt.WorkspaceSystem || rec.Messages[1].Content != prompt.WorkspaceUser(prompt.WorkspaceTask{Description: "Fix add", Checked: true}) {
		t.Errorf("prompts = %q, %q", rec.Messages[0].Content, rec.Messages[1].Content)
	}
}
