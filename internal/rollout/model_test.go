package rollout

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// runModel runs an attempt of env with model m and max_steps maxSteps.
func runModel(t *testing.T, m Model, env Environment, task core.TaskSpec) *core.Trajectory {
	t.Helper()
	r := &Runner{Model: m, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	tr, err := r.Run(context.Background(), attempt(env, task))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestModelPolicy(t *testing.T) {
	tests := []struct {
		name       string
		replies    []llm.Message
		maxSteps   int
		feedback   string
		wantReason core.ExitReason
		wantSteps  int
		wantCalls  int    // model calls
		wantAnswer string // the last text answer
		// lastSent: what the model was told last (the last message of the
		// last request), "" to skip.
		lastSent string
	}{
		{name: "answer at once", replies: []llm.Message{answer("42")}, maxSteps: 3,
			wantReason: "answered", wantSteps: 0, wantCalls: 1, wantAnswer: "42"},
		{name: "tool call then answer", replies: []llm.Message{call("a", "echo", `{"text":"hi"}`), answer("done")}, maxSteps: 3,
			wantReason: "answered", wantSteps: 1, wantCalls: 2, wantAnswer: "done", lastSent: `echo: {"text":"hi"}`},
		{name: "malformed arguments reach the environment, which answers", replies: []llm.Message{call("a", "echo", `{"text": hi}`), answer("ok")}, maxSteps: 3,
			wantReason: "answered", wantSteps: 1, wantCalls: 2, wantAnswer: "ok", lastSent: `echo: {"text": hi}`},
		{name: "a call without a name is fed back, not run", replies: []llm.Message{call("a", "", `{}`), answer("ok")}, maxSteps: 3,
			wantReason: "answered", wantSteps: 0, wantCalls: 2, wantAnswer: "ok", lastSent: "no function name"},
		{name: "unknown tool is fed back", replies: []llm.Message{call("a", "rm", `{}`), answer("ok")}, maxSteps: 3,
			wantReason: "answered", wantSteps: 0, wantCalls: 2, wantAnswer: "ok", lastSent: "error: "},
		{name: "finish tool ends the loop", replies: []llm.Message{call("a", "echo", `{"text":"x"}`), call("b", "finish", `{}`), answer("never asked")}, maxSteps: 5,
			wantReason: "finished", wantSteps: 2, wantCalls: 2},
		{name: "feedback keeps the loop going", replies: []llm.Message{answer("wrong"), answer("right")}, maxSteps: 3, feedback: "Verification failed",
			wantReason: "answered", wantSteps: 0, wantCalls: 2, wantAnswer: "right", lastSent: "Verification failed"},
		{name: "budget spent", replies: []llm.Message{call("a", "echo", `{"text":"1"}`), call("b", "echo", `{"text":"2"}`), call("c", "echo", `{"text":"3"}`)}, maxSteps: 2,
			wantReason: "max_steps", wantSteps: 2, wantCalls: 2},
		{name: "calls past the budget in one message are not run", replies: []llm.Message{{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{
			{ID: "a", Type: "function", Function: llm.FunctionCall{Name: "echo", Arguments: `{"text":"1"}`}},
			{ID: "b", Type: "function", Function: llm.FunctionCall{Name: "echo", Arguments: `{"text":"2"}`}}}}}, maxSteps: 1,
			wantReason: "max_steps", wantSteps: 1, wantCalls: 1},
		{name: "endless feedback terminates", replies: []llm.Message{answer("a"), answer("b"), answer("c"), answer("d"), answer("e"), answer("f")}, maxSteps: 1, feedback: "no",
			wantReason: "max_turns", wantSteps: 0, wantCalls: 1 + extraTurns, wantAnswer: "d"},
		{name: "malformed calls use up the turns, not the steps", replies: []llm.Message{call("a", "rm", `{}`), call("b", "rm", `{}`), call("c", "rm", `{}`), call("d", "rm", `{}`), call("e", "rm", `{}`)}, maxSteps: 2,
			wantReason: "max_turns", wantSteps: 0, wantCalls: 2 + extraTurns},
		{name: "the last turn spends the step budget", replies: []llm.Message{call("a", "rm", `{}`), call("b", "rm", `{}`), call("c", "rm", `{}`), call("d", "echo", `{"text":"1"}`)}, maxSteps: 1,
			wantReason: "max_steps", wantSteps: 1, wantCalls: 1 + extraTurns},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &scriptedModel{replies: tc.replies}
			env := &testEnv{feedback: tc.feedback, succeed: true}
			tr := runModel(t, m, env, core.TaskSpec{MaxSteps: tc.maxSteps})
			calls := tr.Metadata[core.MetaLLMCalls]
			if tr.ExitReason != tc.wantReason || tr.Metadata[core.MetaStopReason] != string(tc.wantReason) || len(tr.Steps) != tc.wantSteps || calls != tc.wantCalls || len(env.calls) != tc.wantSteps {
				t.Errorf("exit=%s stop=%v steps=%d calls=%v env calls=%v; want %s %d %d", tr.ExitReason, tr.Metadata[core.MetaStopReason], len(tr.Steps), calls, env.calls, tc.wantReason, tc.wantSteps, tc.wantCalls)
			}
			if tc.wantAnswer != "" && (len(env.answers) == 0 || env.answers[len(env.answers)-1] != tc.wantAnswer) {
				t.Errorf("answers = %q, want the last %q", env.answers, tc.wantAnswer)
			}
			if tc.lastSent != "" {
				last := m.sent[len(m.sent)-1]
				if got := last[len(last)-1].Content; !strings.Contains(got, tc.lastSent) {
					t.Errorf("last message sent = %q, want it to contain %q", got, tc.lastSent)
				}
			}
			if tr.Metadata[core.MetaTotalTokens] != 5*tc.wantCalls || len(tr.ModelCalls) != tc.wantCalls {
				t.Errorf("tokens %v, %d recorded calls for %d model calls", tr.Metadata[core.MetaTotalTokens], len(tr.ModelCalls), tc.wantCalls)
			}
			// The transcript is the last request, then the last reply.
			if want := len(m.sent[len(m.sent)-1]) + 1; len(tr.Messages) != want {
				t.Errorf("transcript has %d messages, want %d", len(tr.Messages), want)
			}
			if !env.closed {
				t.Error("the environment was not closed")
			}
		})
	}
}

func TestModelPolicyError(t *testing.T) {
	m := &scriptedModel{replies: []llm.Message{call("a", "echo", `{"text":"x"}`)}, err: errDown}
	env := &testEnv{succeed: true}
	tr := runModel(t, m, env, core.TaskSpec{MaxSteps: 5})
	if len(env.calls) != 1 || tr.Metadata[core.MetaLLMCalls] != 2 {
		t.Errorf("env calls %v, model calls %v: want the attempt so far (1 step, 2 calls)", env.calls, tr.Metadata[core.MetaLLMCalls])
	}
	if n := len(tr.Steps); n != 2 || tr.Steps[1].ErrorType != core.ErrNetwork || tr.Steps[1].ActionParams["tool"] != "llm" ||
		!strings.Contains(tr.Steps[1].ErrorMessage, "connection refused") {
		t.Errorf("recorded steps %+v", tr.Steps)
	}
	// The request that got no answer: system, user, the reply calling
	// echo, its result.
	if len(tr.Messages) != 4 || !strings.Contains(string(tr.Messages[3]), `"role":"tool"`) {
		t.Errorf("recorded messages %s, want the 4 of the unanswered request", tr.Messages)
	}
	// The model's failure ends the attempt: the check does not run.
	if tr.ExitReason != core.ExitLLMError || tr.Success || tr.ErrorType != core.ErrNetwork || tr.Reward == nil || *tr.Reward != 0 {
		t.Errorf("exit %s success %v error %s reward %v", tr.ExitReason, tr.Success, tr.ErrorType, tr.Reward)
	}
}

func TestModelPolicyTextMode(t *testing.T) {
	finish := llm.NewTool("finish", "Finish.", `{"type":"object","properties":{"answer":{"type":"string"}}}`)
	defs := []llm.Tool{prompt.RunPython, finish}
	fence := "Here it is:\n```python\nprint(1)\n```\nThat prints 1."
	temp, seed := 1.0, int64(12)
	m := &scriptedModel{cfg: llm.Config{ToolMode: llm.ToolModeText, API: llm.APIChat}, replies: []llm.Message{
		// A server-side parser's tool_calls are not what the model said: text mode ignores them.
		{Role: llm.RoleAssistant, Content: fence, ToolCalls: []llm.ToolCall{{ID: "x", Type: "function", Function: llm.FunctionCall{Name: "finish", Arguments: "{}"}}}},
		answer(`[{"tool": "run_python", "arguments": {"code": "print(2)"}}, {"tool": "run_python", "arguments": {"code": "print(3)"}}]`),
		answer("2"),
	}}
	env := &testEnv{defs: defs, succeed: true}
	tr := runModel(t, m, env, core.TaskSpec{MaxSteps: 5, Sampling: &core.Sampling{Temperature: &temp, Seed: &seed}})
	if tr.ExitReason != core.ExitAnswered || strings.Join(env.answers, "") != "2" || len(tr.Steps) != 3 {
		t.Fatalf("exit %s answers %q steps %d", tr.ExitReason, env.answers, len(tr.Steps))
	}
	if want := []string{`run_python {"code":"print(1)\n"}`, `run_python {"code":"print(2)"}`, `run_python {"code":"print(3)"}`}; strings.Join(env.calls, "|") != strings.Join(want, "|") {
		t.Errorf("tool calls %q, want %q", env.calls, want)
	}
	for i, r := range m.reqs {
		if r.Tools != nil {
			t.Errorf("request %d offered tools natively in text mode", i)
		}
		if *r.Params.Seed != 12 || *r.Params.Temperature != 1 {
			t.Errorf("request %d params %+v", i, r.Params)
		}
	}
	last := m.sent[len(m.sent)-1]
	if want := "sys\n\n" + prompt.TextTools(defs); last[0].Content != want {
		t.Errorf("system prompt %q, want %q", last[0].Content, want)
	}
	// system, user, reply 1, its result, reply 2, its results.
	if len(last) != 6 {
		t.Fatalf("last request has %d messages", len(last))
	}
	if last[2].Content != fence || len(last[2].ToolCalls) != 0 || last[2].Role != llm.RoleAssistant {
		t.Errorf("assistant message %+v, want the model's text only", last[2])
	}
	if last[3].Role != llm.RoleUser || last[3].Content != prompt.TextToolResult("run_python", "ran: print(1)\n") {
		t.Errorf("result message %+v", last[3])
	}
	if last[5].Content != prompt.TextToolResult("run_python", "ran: print(2)")+"\n\n"+prompt.TextToolResult("run_python", "ran: print(3)") {
		t.Errorf("results of two calls %q", last[5].Content)
	}
	// The transcript's reply is the message the policy keeps, as sent next.
	if got := string(tr.Messages[len(tr.Messages)-1]); got != `{"role":"assistant","content":"2"}` {
		t.Errorf("transcript ends %s", got)
	}
	want := core.LLMRecord{Endpoint: m.URL(), Model: "scripted", Temperature: &temp, Seed: &seed, ToolMode: "text", API: "chat"}
	if got, _ := json.Marshal(tr.LLM); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("llm record %s", got)
	}
}

// TestModelPolicyImages: the start's image goes with the first user
// message (text, note, image); after a reply's calls the latest image goes
// in a user message of its own (note, image), and earlier images are
// taken out of the conversation, their notes kept: one image a request.
func TestModelPolicyImages(t *testing.T) {
	png := []byte("\x89PNG")
	m := &scriptedModel{replies: []llm.Message{
		{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{
			{ID: "a", Type: "function", Function: llm.FunctionCall{Name: "echo", Arguments: `{"text":"1"}`}},
			{ID: "b", Type: "function", Function: llm.FunctionCall{Name: "echo", Arguments: `{"text":"2"}`}}}},
		call("c", "echo", `{"text":"3"}`),
		answer("right"),
	}}
	env := &imageEnv{testEnv: testEnv{succeed: true, image: png}}
	runModel(t, m, env, core.TaskSpec{MaxSteps: 5})
	images := func(ms []llm.Message) (n int) {
		for _, x := range ms {
			for _, p := range x.Parts {
				if p.Type != "text" {
					n++
				}
			}
		}
		return n
	}
	first := m.sent[0]
	if u := first[1]; len(u.Parts) != 3 || u.Parts[0].Text != "task" || u.Parts[1].Text != "start shot" || images(first) != 1 {
		t.Errorf("first user message %+v, want the text, the note, the image", u)
	}
	for i, sent := range m.sent {
		if n := images(sent); n != 1 {
			t.Errorf("request %d carries %d images, want 1", i, n)
		}
	}
	// Request 2: system, user (its note kept), reply, two results, one
	// image message after both.
	second := m.sent[1]
	if len(second) != 6 || second[3].Role != llm.RoleTool || second[4].Role != llm.RoleTool || len(second[5].Parts) != 2 || second[5].Parts[0].Text != "shot" {
		t.Errorf("second request %+v", second)
	}
	if u := second[1]; len(u.Parts) != 2 || u.Parts[1].Text != "start shot" {
		t.Errorf("the start message in the second request %+v, want its texts without the image", u)
	}
}

// imageEnv starts with an image.
type imageEnv struct{ testEnv }

func (e *imageEnv) Start(ctx context.Context, o StartOptions) (Start, error) {
	st, err := e.testEnv.Start(ctx, o)
	st.Observation.Image, st.Observation.ImageNote = e.image, "start shot"
	return st, err
}

func TestTextCalls(t *testing.T) {
	web := []llm.Tool{llm.NewTool("goto", "Go.", `{"type":"object","properties":{"url":{"type":"string"}}}`)}
	code := []llm.Tool{prompt.RunPython}
	tests := []struct {
		name    string
		content string
		tools   []llm.Tool
		want    string // name and arguments of each call, "|"-joined
	}{
		{"fenced python", "```python\nprint(1)\n```", code, `run_python {"code":"print(1)\n"}`},
		{"untagged fence", "```\nx = 1\n```", code, `run_python {"code":"x = 1\n"}`},
		{"first block only", "```py\na\n```\n```python\nb\n```", code, `run_python {"code":"a\n"}`},
		{"json call wins", "```python\nignored\n```\n{\"tool\": \"run_python\", \"arguments\": {\"code\": \"print(3)\"}}", code, `run_python {"code":"print(3)"}`},
		{"plain answer", "The answer is 55.", code, ""},
		{"a fence is no call without run_python", "```python\nprint(1)\n```", web, ""},
		{"json call of a web tool", `{"tool": "goto", "arguments": {"url": "http://x"}}`, web, `goto {"url":"http://x"}`},
		{"unknown tool is an answer", `{"tool": "rm", "arguments": {}}`, web, ""},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range TextCalls(tt.content, tt.tools) {
			got = append(got, c.Function.Name+" "+c.Function.Arguments)
		}
		if strings.Join(got, "|") != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
