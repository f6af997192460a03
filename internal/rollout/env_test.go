package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// testEnv is an environment of the tests: it offers defs; a call is a step
// echoing its arguments ("ran: <code>" when they have one), done at
// "finish"; an answer is accepted when it is "right" or there is no
// feedback; typed actions are steps of their source. Evaluate verifies
// succeed.
type testEnv struct {
	defs     []llm.Tool
	feedback string
	succeed  bool
	flagged  bool
	image    []byte // left by every call, when set
	calls    []string
	answers  []string
	used     []string // the source of each typed or answer action, then "evaluate"
	closed   bool
}

func echoDefs() []llm.Tool {
	return []llm.Tool{
		llm.NewTool("echo", "Echo.", `{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
		llm.NewTool("finish", "Finish.", `{"type":"object","properties":{}}`),
	}
}

func (e *testEnv) Start(context.Context, StartOptions) (Start, error) {
	if e.defs == nil {
		e.defs = echoDefs()
	}
	return Start{Result: Result{Observation: Observation{Text: "task"}}, Space: ActionSpace{Instructions: "sys", Tools: e.defs}}, nil
}

func (e *testEnv) Step(_ context.Context, a Action) (Result, error) {
	var res Result
	switch {
	case a.Answer != nil:
		e.used = append(e.used, string(a.Source))
		e.answers = append(e.answers, *a.Answer)
		if *a.Answer == "right" || e.feedback == "" {
			res.Done = true
		} else {
			res.Observation.Text = e.feedback
		}
	case a.Call != nil:
		c := *a.Call
		e.calls = append(e.calls, c.Function.Name+" "+c.Function.Arguments)
		var args struct{ Code string }
		res.Observation.Text = "echo: " + c.Function.Arguments
		if llm.ParseArguments(c, &args) == nil && args.Code != "" {
			res.Observation.Text = "ran: " + args.Code
		}
		res.Observation.Image, res.Observation.ImageNote = e.image, "shot"
		res.Done = c.Function.Name == "finish"
		res.Steps = []core.ExecutionStep{{ActionType: core.ActionToolCall, ActionParams: map[string]any{"tool": c.Function.Name}, Success: true}}
	default:
		e.used = append(e.used, string(a.Source))
		res.Steps = []core.ExecutionStep{{ActionType: core.ActionCodeExecution, ActionParams: map[string]any{"code": a.Input}, Success: true}}
	}
	return res, nil
}

func (e *testEnv) Evaluate(context.Context, *Failure) (Evaluation, error) {
	e.used = append(e.used, "evaluate")
	ok := e.succeed
	ev := Evaluation{Checked: true, Verified: &ok, Total: 1, Message: "no"}
	if ok {
		ev.Passed = 1
	}
	if e.flagged {
		ev.Metadata = core.Metadata{core.MetaFlags: []string{"eq_ignores_argument: an __eq__ ignores its argument"}}
	}
	return ev, nil
}

func (e *testEnv) Close() error { e.closed = true; return nil }

// cacheEnv is a testEnv the template cache keeps: it replays and stores
// entries of kind.
type cacheEnv struct {
	testEnv
	kind     string
	replayed string
}

func (e *cacheEnv) CacheKey() string { return "template_cache:fake" }

func (e *cacheEnv) Replay(en templatecache.Entry) ([]Action, bool) {
	if en.Kind != e.kind {
		return nil, false
	}
	e.replayed = en.Program
	return []Action{{Input: en.Program}}, true
}

func (e *cacheEnv) Entry() (templatecache.Entry, bool) {
	return templatecache.Entry{Kind: e.kind, Program: "print(1)", Actions: []byte(`[{"action":"finish"}]`)}, true
}

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

var errDown = errors.New("connection refused")

func call(id, name, args string) llm.Message {
	return llm.Message{Role: llm.RoleAssistant, ToolCalls: []llm.ToolCall{{ID: id, Type: "function", Function: llm.FunctionCall{Name: name, Arguments: args}}}}
}

func answer(s string) llm.Message { return llm.Message{Role: llm.RoleAssistant, Content: s} }

// attempt is an attempt of a task with maxSteps against env, a minute long.
func attempt(env Environment, task core.TaskSpec) Attempt {
	if task.TaskID == "" {
		task.TaskID, task.TaskType = "t", core.TaskCode
	}
	return Attempt{Task: task, Env: env, Rules: NoActions(Failure{Type: core.ErrSystem, Message: "no rule"}),
		Budget: NewBudget(core.TaskSpec{Timeout: 60}, time.Now(), 0)}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
