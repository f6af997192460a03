package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// scriptedModel answers each call with the next reply, recording what it
// was sent.
type scriptedModel struct {
	replies []llm.Message
	err     error // returned once the replies are used up, if set
	cfg     llm.Config
	sent    [][]llm.Message
	reqs    []llm.Request
}

func (m *scriptedModel) Config() llm.Config {
	c := m.cfg
	if c.ToolMode == "" {
		c.ToolMode, c.API = llm.ToolModeNative, llm.APIChat
	}
	c.Model = "scripted"
	return c
}

func (m *scriptedModel) URL() string { return "http://model.test/v1/chat/completions" }

func (m *scriptedModel) Do(_ context.Context, req llm.Request) (llm.Response, error) {
	messages := req.Messages
	m.reqs = append(m.reqs, req)
	m.sent = append(m.sent, append([]llm.Message(nil), messages...))
	n := len(m.sent) - 1
	var raws []json.RawMessage
	for _, x := range messages {
		b, _ := json.Marshal(x)
		raws = append(raws, b)
	}
	if n >= len(m.replies) {
		if m.err != nil {
			// As the client does: what was sent, without a reply.
			return llm.Response{Exchange: llm.Exchange{Messages: raws}}, m.err
		}
		return llm.Response{Message: llm.Message{Role: llm.RoleAssistant, Content: "out of script"}}, nil
	}
	msg := m.replies[n]
	sent, _ := json.Marshal(msg)
	return llm.Response{Message: msg, FinishReason: "stop", Usage: llm.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5},
		Exchange: llm.Exchange{Messages: raws, Sent: sent, Reply: sent}}, nil
}

func call(id, name, args string) llm.Message {
	return llm.Message{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{{ID: id, Type: "function", Function: llm.FunctionCall{Name: name, Arguments: args}}}}
}

func answer(s string) llm.Message { return llm.Message{Role: llm.RoleAssistant, Content: s} }

// echoTools offers "echo" and "finish"; Answer gives feedback until the
// answer is "right".
type echoTools struct {
	calls    []string
	answers  []string
	feedback string
}

func (t *echoTools) Definitions() []llm.Tool {
	return []llm.Tool{
		llm.NewTool("echo", "Echo.", `{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
		llm.NewTool("finish", "Finish.", `{"type":"object","properties":{}}`),
	}
}

func (t *echoTools) Call(_ context.Context, c llm.ToolCall) (string, bool) {
	t.calls = append(t.calls, c.Function.Name+" "+c.Function.Arguments)
	return "echo: " + c.Function.Arguments, c.Function.Name == "finish"
}

func (t *echoTools) Answer(_ context.Context, a string) string {
	t.answers = append(t.answers, a)
	if a == "right" || t.feedback == "" {
		return ""
	}
	return t.feedback
}

func TestLoop(t *testing.T) {
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
		{name: "malformed arguments reach the tools, which answer", replies: []llm.Message{call("a", "echo", `{"text": hi}`), answer("ok")}, maxSteps: 3,
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
			tools := &echoTools{feedback: tc.feedback}
			l := Loop{model: m, maxSteps: tc.maxSteps}
			out, err := l.Run(context.Background(), []llm.Message{llm.SystemMessage("sys"), llm.UserMessage("task")}, tools)
			if err != nil {
				t.Fatal(err)
			}
			if out.Reason != tc.wantReason || out.Steps != tc.wantSteps || out.LLMCalls != tc.wantCalls || len(tools.calls) != tc.wantSteps {
				t.Errorf("reason=%s steps=%d calls=%d tool calls=%v; want %s %d %d", out.Reason, out.Steps, out.LLMCalls, tools.calls, tc.wantReason, tc.wantSteps, tc.wantCalls)
			}
			if tc.wantAnswer != "" && out.Answer != tc.wantAnswer {
				t.Errorf("answer = %q, want %q", out.Answer, tc.wantAnswer)
			}
			if tc.lastSent != "" {
				last := m.sent[len(m.sent)-1]
				if got := last[len(last)-1].Content; !strings.Contains(got, tc.lastSent) {
					t.Errorf("last message sent = %q, want it to contain %q", got, tc.lastSent)
				}
			}
			if out.Usage.TotalTokens != 5*out.LLMCalls || len(out.Calls) != out.LLMCalls {
				t.Errorf("usage %+v, %d recorded calls for %d model calls", out.Usage, len(out.Calls), out.LLMCalls)
			}
			// The transcript is the last request, then the last reply.
			if want := len(m.sent[len(m.sent)-1]) + 1; len(out.Transcript) != want {
				t.Errorf("transcript has %d messages, want %d", len(out.Transcript), want)
			}
		})
	}
}

func TestLoopModelError(t *testing.T) {
	m := &scriptedModel{replies: []llm.Message{call("a", "echo", `{"text":"x"}`)}, err: errors.New("connection refused")}
	tools := &echoTools{}
	out, err := (&Loop{model: m, maxSteps: 5}).Run(context.Background(), []llm.Message{llm.UserMessage("task")}, tools)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want the model's error", err)
	}
	if out.Steps != 1 || out.LLMCalls != 2 {
		t.Errorf("steps=%d calls=%d, want the outcome so far (1 step, 2 calls)", out.Steps, out.LLMCalls)
	}
	tr := core.NewTrajectory(core.TaskSpec{TaskID: "t", TaskType: core.TaskCode}, "")
	out.Record(context.Background(), tr, err, time.Now())
	if n := len(tr.Steps); n != 1 || tr.Steps[0].ErrorType != core.ErrNetwork || tr.Metadata[core.MetaLLMCalls] != 2 {
		t.Errorf("recorded steps %+v, metadata %v", tr.Steps, tr.Metadata)
	}
	// The request that got no answer: the user message, the reply calling
	// echo, its result.
	if len(tr.Messages) != 3 || !strings.Contains(string(tr.Messages[2]), `"role":"tool"`) {
		t.Errorf("recorded messages %s, want the 3 of the unanswered request", tr.Messages)
	}
	if tr.ExitReason != core.ExitLLMError {
		t.Errorf("exit reason %s", tr.ExitReason)
	}
}

func TestLoopTextMode(t *testing.T) {
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
	tools := &fixedTools{defs: defs}
	l := NewLoop(m, core.TaskSpec{MaxSteps: 5, Sampling: &core.Sampling{Temperature: &temp, Seed: &seed}})
	initial := []llm.Message{llm.SystemMessage("sys"), llm.UserMessage("task")}
	out, err := l.Run(context.Background(), initial, tools)
	if err != nil {
		t.Fatal(err)
	}
	if out.Reason != core.ExitAnswered || out.Answer != "2" || out.Steps != 3 {
		t.Fatalf("reason %s answer %q steps %d", out.Reason, out.Answer, out.Steps)
	}
	if initial[0].Content != "sys" {
		t.Error("the caller's system message was changed")
	}
	if want := []string{`run_python {"code":"print(1)\n"}`, `run_python {"code":"print(2)"}`, `run_python {"code":"print(3)"}`}; strings.Join(tools.calls, "|") != strings.Join(want, "|") {
		t.Errorf("tool calls %q, want %q", tools.calls, want)
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
	// The transcript's reply is the message the loop keeps, as sent next.
	if got := string(out.Transcript[len(out.Transcript)-1]); got != `{"role":"assistant","content":"2"}` {
		t.Errorf("transcript ends %s", got)
	}
	want := core.LLMRecord{Endpoint: m.URL(), Model: "scripted", Temperature: &temp, Seed: &seed, ToolMode: "text", API: "chat"}
	if got, _ := json.Marshal(out.LLM); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("llm record %s", got)
	}
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

// fixedTools offers defs; every call is echoed back.
type fixedTools struct {
	defs  []llm.Tool
	calls []string
}

func (t *fixedTools) Definitions() []llm.Tool { return t.defs }

func (t *fixedTools) Call(_ context.Context, c llm.ToolCall) (string, bool) {
	t.calls = append(t.calls, c.Function.Name+" "+c.Function.Arguments)
	var args struct{ Code string }
	_ = llm.ParseArguments(c, &args)
	return "ran: " + args.Code, c.Function.Name == "finish"
}

func (t *fixedTools) Answer(context.Context, string) string { return "" }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
