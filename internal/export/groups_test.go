package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

const groupTools = `[{"type":"function","function":{"name":"run_python","description":"Run a Python program","parameters":{"type":"object","properties":{"code":{"type":"string"}},"required":["code"]}}}]`

// modelAttempt is attempt k of task "fib" as a model made it: its recorded
// exchange (one run_python call, then an answer of `answer`), with reward.
func modelAttempt(k, samples int, answer string, reward float64) *core.Trajectory {
	tr := &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "fib", TaskType: core.TaskCode, Description: "Print fib(10)",
		Success: reward == 1, SampleIndex: k, Samples: samples, ExitReason: core.ExitAnswered, CreatedAt: t0,
		Metadata: core.Metadata{"source": "llm"}, Tools: json.RawMessage(groupTools),
	}
	if !tr.Success {
		tr.ErrorType = core.ErrWrongAnswer
	}
	tr.Reward = &reward
	temp, seed := 1.0, int64(7+k)
	tr.LLM = &core.LLMRecord{Endpoint: "http://llm.test/v1/chat/completions", Model: "m", Temperature: &temp, Seed: &seed, ToolMode: "native", API: "chat"}
	for i := range 2 {
		tr.ModelCalls = append(tr.ModelCalls, core.ModelCall{
			ID: fmt.Sprintf("chatcmpl-%d-%d", k, i), Model: "m-served", FinishReason: "stop",
			Usage: core.TokenUsage{PromptTokens: 10, CompletionTokens: 3, TotalTokens: 13},
			Reply: json.RawMessage(fmt.Sprintf(`{"role":"assistant","content":"reply %d of attempt %d"}`, i, k)),
		})
	}
	msgs := []string{
		`{"role":"system","content":"You write Python."}`,
		`{"role":"user","content":"Print fib(10)"}`,
		fmt.Sprintf(`{"role":"assistant","content":"","tool_calls":[{"id":"call_%d","type":"function","function":{"name":"run_python","arguments":"{\"code\":\"print(%s)\"}"}}]}`, k, answer),
		fmt.Sprintf(`{"role":"tool","tool_call_id":"call_%d","content":"%s"}`, k, answer),
		fmt.Sprintf(`{"role":"assistant","content":"The answer is %s."}`, answer),
	}
	for _, m := range msgs {
		tr.Messages = append(tr.Messages, json.RawMessage(m))
	}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionCodeExecution, ActionParams: map[string]any{"code": "print(" + answer + ")", "purpose": "run"}, Observation: answer, Success: true})
	return tr
}

// groupsDir writes, through trajectory.Writer (the runtimes' file names):
// task fib, 4 model attempts with rewards 0, 1, 1, 0 (attempt 2's answer
// longer than attempt 1's); task web_search, 2 attempts rendered from
// steps (no recorded exchange), one an empty failure; task one, 1 attempt.
func groupsDir(t *testing.T) string {
	t.Helper()
	w, err := trajectory.NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	trs := []*core.Trajectory{
		modelAttempt(0, 4, "54", 0), modelAttempt(1, 4, "55", 1), modelAttempt(2, 4, "55.0", 1), modelAttempt(3, 4, "5", 0),
	}
	web := webTrajectory()
	web.SampleIndex, web.Samples, web.ExitReason = 0, 2, core.ExitReplayed
	empty := llmFailureTrajectory() // failed before any model action
	empty.TaskID, empty.TaskType, empty.SampleIndex, empty.Samples = web.TaskID, core.TaskWeb, 1, 2
	one := codeTrajectory()
	one.TaskID, one.Samples = "one", 1
	trs = append(trs, web, empty, one)
	for _, tr := range trs {
		if err := w.Write(tr); err != nil {
			t.Fatal(err)
		}
	}
	return w.Dir()
}

func TestGroupsExport(t *testing.T) {
	t.Parallel()
	dir := groupsDir(t)
	var out bytes.Buffer
	sum, err := Write(&out, dir, FormatGroups, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != 7 || sum.Written != 3 || sum.Empty != 1 || len(sum.Invalid) != 0 {
		t.Errorf("summary %+v; want 7 files, 3 lines, 1 empty, 0 invalid", sum)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want one per task:\n%s", len(lines), out.String())
	}
	var fib Group
	if err := json.Unmarshal([]byte(lines[0]), &fib); err != nil {
		t.Fatal(err)
	}
	if fib.TaskID != "fib" || fib.TaskType != core.TaskCode || len(fib.Attempts) != 4 {
		t.Fatalf("first line %s; want task fib with 4 attempts", lines[0])
	}
	// The prompt is the recorded messages before the first model turn, bytes
	// unchanged; the tools are the recorded ones.
	if got := string(fib.Prompt[0]) + string(fib.Prompt[1]); len(fib.Prompt) != 2 || got != `{"role":"system","content":"You write Python."}{"role":"user","content":"Print fib(10)"}` {
		t.Errorf("prompt = %s", fib.Prompt)
	}
	if string(fib.Tools) != groupTools {
		t.Errorf("tools = %s, want the recorded bytes", fib.Tools)
	}
	src := modelAttempt(2, 4, "55.0", 1)
	for i, a := range fib.Attempts {
		want := []float64{0, 1, 1, 0}[i]
		if a.SampleIndex != i || a.Reward == nil || *a.Reward != want || a.ExitReason != core.ExitAnswered || !a.Recorded || a.Prompt != nil || a.Tools != nil {
			t.Errorf("attempt %d: %+v; want sample %d, reward %v, answered, recorded, the group's prompt", i, a, i, want)
		}
		if len(a.Completion) != 3 {
			t.Errorf("attempt %d: completion of %d messages, want 3", i, len(a.Completion))
		}
		// Each attempt carries its own llm record and model calls.
		if a.LLM == nil || a.LLM.Seed == nil || *a.LLM.Seed != int64(7+i) || a.LLM.Model != "m" {
			t.Errorf("attempt %d: llm %+v, want its own record (seed %d)", i, a.LLM, 7+i)
		}
		if len(a.ModelCalls) != 2 || a.ModelCalls[1].ID != fmt.Sprintf("chatcmpl-%d-1", i) || a.ModelCalls[1].Model != "m-served" ||
			string(a.ModelCalls[1].Reply) != fmt.Sprintf(`{"role":"assistant","content":"reply 1 of attempt %d"}`, i) {
			t.Errorf("attempt %d: model calls %+v, want its 2 recorded calls", i, a.ModelCalls)
		}
	}
	for j, m := range fib.Attempts[2].Completion {
		if !bytes.Equal(m, src.Messages[2+j]) {
			t.Errorf("attempt 2 completion[%d] = %s, want the recorded %s", j, m, src.Messages[2+j])
		}
	}
	// Rendered attempts are marked so; the empty failure is left out.
	var ws Group
	if err := json.Unmarshal([]byte(lines[2]), &ws); err != nil {
		t.Fatal(err)
	}
	if ws.TaskID != "web_search" || len(ws.Attempts) != 1 || ws.Attempts[0].Recorded || ws.Attempts[0].Reward != nil || ws.Attempts[0].ExitReason != core.ExitReplayed ||
		ws.Attempts[0].LLM != nil || ws.Attempts[0].ModelCalls != nil {
		t.Errorf("web_search line %s; want its one rendered attempt, reward null", lines[2])
	}

	// --min-attempts 2 leaves out the tasks of one attempt.
	out.Reset()
	sum, err = Write(&out, dir, FormatGroups, Options{MinAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Written != 1 || sum.TooFewAttempts != 2 || !strings.HasPrefix(out.String(), `{"task_id":"fib"`) {
		t.Errorf("--min-attempts 2: summary %+v, output %s; want only fib", sum, out.String())
	}
	// --only-success keeps the successful attempts of each group.
	out.Reset()
	if _, err := Write(&out, dir, FormatGroups, Options{OnlySuccess: true, MinAttempts: 2}); err != nil {
		t.Fatal(err)
	}
	var ok Group
	if err := json.Unmarshal(out.Bytes(), &ok); err != nil || len(ok.Attempts) != 2 || ok.Attempts[0].SampleIndex != 1 || ok.Attempts[1].SampleIndex != 2 {
		t.Errorf("--only-success groups: %s (%v); want fib with attempts 1 and 2", out.String(), err)
	}
}

func TestBestOf(t *testing.T) {
	t.Parallel()
	dir := groupsDir(t)
	for _, f := range Formats {
		var out bytes.Buffer
		sum, err := Write(&out, dir, f, Options{BestOf: true})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 || sum.Written != 3 || sum.NotBest != 3 || sum.Empty != 1 {
			t.Fatalf("%s --best-of: %d lines, summary %+v; want 3 lines, 3 not best, 1 empty", f, len(lines), sum)
		}
		// fib: attempts 1 and 2 have reward 1; 1 is shorter ("55" vs "55.0").
		want, err := Record(modelAttempt(1, 4, "55", 1), f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if lines[0] != string(want) {
			t.Errorf("%s --best-of fib = %s\nwant attempt 1's record %s", f, lines[0], want)
		}
		// --only-success still applies.
		out.Reset()
		sum, err = Write(&out, dir, f, Options{BestOf: true, OnlySuccess: true})
		if err != nil || sum.Written != 3 || sum.Filtered != 3 || !strings.Contains(out.String(), "55") {
			t.Errorf("%s --best-of --only-success: %+v, %v", f, sum, err)
		}
	}
	if _, err := Write(&bytes.Buffer{}, dir, FormatGroups, Options{BestOf: true}); err == nil {
		t.Error("--best-of with groups accepted")
	}
	if _, err := Write(&bytes.Buffer{}, dir, FormatOpenAI, Options{MinAttempts: 2}); err == nil {
		t.Error("--min-attempts with openai accepted")
	}
}

// A file whose content is not the attempt its name says is not exported
// under that name.
func TestGroupsRejectMisnamedFile(t *testing.T) {
	t.Parallel()
	w, _ := trajectory.NewWriter(t.TempDir())
	tr := modelAttempt(1, 2, "55", 1)
	if err := w.Write(tr); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(tr)
	if err := writeFile(w.Path("fib", 3), data); err != nil {
		t.Fatal(err)
	}
	sum, err := Write(&bytes.Buffer{}, w.Dir(), FormatGroups, Options{})
	if err != nil || len(sum.Invalid) != 1 || !strings.Contains(sum.Invalid[0].Err, "not what its name says") || sum.Written != 1 {
		t.Errorf("summary %+v, %v; want the misnamed file invalid", sum, err)
	}
}

func writeFile(path string, data []byte) error { return trajectory.WriteFileAtomic(path, data, 0o644) }
