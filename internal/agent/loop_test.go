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
)

// scriptedModel answers each call with the next reply, recording what it
// was sent.
type scriptedModel struct {
	replies []llm.Message
	err     error // returned once the replies are used up, if set
	sent    [][]llm.Message
}

func (m *scriptedModel) Chat(_ context.Context, messages []llm.Message, tools []llm.Tool) (llm.Response, error) {
	m.sent = append(m.sent, append([]llm.Message(nil), messages...))
	n := len(m.sent) - 1
	if n >= len(m.replies) {
		if m.err != nil {
			return llm.Response{}, m.err
		}
		return llm.Response{Message: llm.Message{Role: llm.RoleAssistant, Content: "out of script"}}, nil
	}
	msg := m.replies[n]
	sent, _ := json.Marshal(msg)
	var raws []json.RawMessage
	for _, x := range messages {
		b, _ := json.Marshal(x)
		raws = append(raws, b)
	}
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
			wantReason: "max_steps", wantSteps: 0, wantCalls: 1 + extraTurns, wantAnswer: "d"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &scriptedModel{replies: tc.replies}
			tools := &echoTools{feedback: tc.feedback}
			l := Loop{Model: m, MaxSteps: tc.maxSteps}
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
	out, err := (&Loop{Model: m, MaxSteps: 5}).Run(context.Background(), []llm.Message{llm.UserMessage("task")}, tools)
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
	if len(tr.Messages) != 2 { // the user message, then the reply calling echo
		t.Errorf("recorded %d messages, want the last exchange that got a reply (1 sent + its reply)", len(tr.Messages))
	}
}
