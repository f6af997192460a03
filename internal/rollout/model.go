package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// Model is what the model policy needs of a chat model; *llm.Client is
// one, and tests script one.
type Model interface {
	Do(ctx context.Context, req llm.Request) (llm.Response, error)
	// Config says how the model is reached (tool mode, API, model name).
	Config() llm.Config
	// URL is the endpoint requests go to.
	URL() string
}

// Exchange is a model policy's record of its conversation, exactly as
// exchanged.
type Exchange struct {
	LLMCalls int
	Usage    llm.Usage
	// Transcript is the last request's messages as sent, then its reply
	// (none when the last request got no answer). Tools are the tools as
	// sent.
	Transcript []json.RawMessage
	Tools      json.RawMessage
	Calls      []core.ModelCall
	// LLM is what the requests were sent with; nil when none was sent.
	LLM *core.LLMRecord
	// Answer is the model's last text answer.
	Answer string
}

// ModelPolicy lets a model choose the actions: it asks the model, hands
// out the calls of its reply one by one, feeds each observation back, and
// asks again when the reply's calls are spent, until the model answers (and
// the environment accepts the answer), or the step budget is spent.
//
// NewModelPolicy is the only way to one, so no caller can leave out the
// task's sampling.
//
// In text tool mode (llm.ToolModeText) it speaks plain text: the tools are
// described at the end of the system prompt (prompt.TextTools, from the
// same definitions), the calls are parsed from the reply (TextCalls), the
// reply is kept as the assistant message the model produced (its text,
// nothing added), and the results of one reply's calls go back as one user
// message (prompt.TextToolResult).
type ModelPolicy struct {
	model Model
	cfg   llm.Config
	text  bool
	// maxSteps bounds the actions handed out (the task's max_steps). The
	// model gets a few more turns than that for malformed calls and the
	// final answer.
	maxSteps int
	// params are the sampling settings every request carries (Params).
	params llm.Params

	defs, reqTools []llm.Tool
	messages       []llm.Message
	x              Exchange
	steps, turns   int
	// pending are the calls of the last reply not yet handed out; current
	// is the call whose observation Next is given, answered that an
	// answer's.
	pending  []llm.ToolCall
	current  *llm.ToolCall
	answered bool
	// results are, in text mode, the reply's results so far; image and
	// note the latest image an observation of the reply's calls carried.
	results []string
	image   []byte
	note    string
	end     PolicyEnd
}

// NewModelPolicy is the policy of one attempt of task with model m: the
// task's max_steps, and the sampling settings of Params (the task's
// `sampling` over the model's configuration, seed + sample_index) on every
// request.
func NewModelPolicy(m Model, task core.TaskSpec) *ModelPolicy {
	cfg := m.Config()
	return &ModelPolicy{model: m, cfg: cfg, text: cfg.ToolMode == llm.ToolModeText, maxSteps: task.MaxSteps, params: Params(cfg, task)}
}

// Params resolves the sampling settings of task's attempt: the task's
// `sampling` over the runtime's LLM_* defaults (llm.Config.ParamsFor).
func Params(cfg llm.Config, task core.TaskSpec) llm.Params {
	var o llm.Params
	if sp := task.Sampling; sp != nil {
		o = llm.Params{Temperature: sp.Temperature, TopP: sp.TopP, MaxTokens: sp.MaxTokens, Seed: sp.Seed}
	}
	return cfg.ParamsFor(max(task.Samples, 1), task.SampleIndex, o)
}

// extraTurns allows for malformed calls and verification feedback beyond
// MaxSteps model turns, so a looping model still terminates.
const extraTurns = 3

// Source is SourceLLM.
func (p *ModelPolicy) Source() Source { return SourceLLM }

// Reset starts the conversation: the instructions as the system message,
// the start's observation as the user message (with its image, when it has
// one: the text, the note, then the image).
func (p *ModelPolicy) Reset(space ActionSpace, start Observation) {
	p.defs, p.reqTools = space.Tools, space.Tools
	user := llm.UserMessage(start.Text)
	if start.Image != nil {
		user = llm.UserParts(llm.TextPart(start.Text), llm.TextPart(start.ImageNote), llm.ImagePart("image/png", start.Image))
	}
	p.messages = []llm.Message{llm.SystemMessage(space.Instructions), user}
	if p.text {
		p.messages, p.reqTools = withTextTools(p.messages, p.defs), nil
	}
}

// Next feeds obs back (the result of the call handed out last, or the
// feedback on an answer) and returns the next call, asking the model when
// the last reply's calls are spent.
func (p *ModelPolicy) Next(ctx context.Context, obs Observation) (Action, bool) {
	switch {
	case p.current != nil:
		p.reply(*p.current, obs.Text)
		if obs.Image != nil {
			p.image, p.note = obs.Image, obs.ImageNote
		}
		p.current = nil
	case p.answered:
		// The environment did not accept the answer: its feedback.
		p.messages = append(p.messages, llm.UserMessage(obs.Text))
		p.answered = false
	}
	for {
		if a, ok := p.nextCall(); ok {
			return a, true
		}
		p.endReply()
		if p.steps >= p.maxSteps {
			p.end.Stop = core.ExitMaxSteps
			return Action{}, false
		}
		if p.turns >= p.maxSteps+extraTurns {
			p.end.Stop = core.ExitMaxTurns
			return Action{}, false
		}
		msg, calls, err := p.ask(ctx)
		if err != nil {
			p.fail(ctx, err)
			return Action{}, false
		}
		if len(calls) == 0 {
			p.x.Answer, p.answered = msg.Content, true
			return Action{Answer: &p.x.Answer}, true
		}
		p.pending = calls
	}
}

// nextCall hands out the next well-formed call of the reply within the step
// budget; the others are answered in place.
func (p *ModelPolicy) nextCall() (Action, bool) {
	for len(p.pending) > 0 {
		call := p.pending[0]
		p.pending = p.pending[1:]
		if p.steps >= p.maxSteps {
			p.reply(call, "not run: the step budget (max_steps) is spent")
			continue
		}
		if err := llm.ValidateToolCall(call, p.defs); err != nil {
			p.reply(call, "error: "+err.Error())
			continue
		}
		p.steps++
		p.current = &call
		return Action{Call: p.current}, true
	}
	return Action{}, false
}

// reply sends a call's result back: a tool message, or in text mode a
// part of the reply's one user message.
func (p *ModelPolicy) reply(call llm.ToolCall, obs string) {
	if p.text {
		p.results = append(p.results, prompt.TextToolResult(call.Function.Name, obs))
		return
	}
	p.messages = append(p.messages, llm.ToolResult(call, obs))
}

// endReply sends what a reply's calls left: the text-mode results, then the
// latest image.
func (p *ModelPolicy) endReply() {
	if len(p.results) > 0 {
		p.messages = append(p.messages, llm.UserMessage(strings.Join(p.results, "\n\n")))
		p.results = nil
	}
	if p.image != nil {
		p.messages = withImage(p.messages, p.image, p.note)
		p.image, p.note = nil, ""
	}
}

// ask sends the conversation and records the exchange; it returns the
// reply as kept and its calls.
func (p *ModelPolicy) ask(ctx context.Context) (llm.Message, []llm.ToolCall, error) {
	if p.x.LLM == nil {
		p.x.LLM = p.record()
	}
	p.turns++
	resp, err := p.model.Do(ctx, llm.Request{Messages: p.messages, Tools: p.reqTools, Params: p.params})
	p.x.LLMCalls++
	if err != nil {
		// What was sent is the record, though no answer came.
		if x := resp.Exchange; x.Messages != nil {
			p.x.Transcript, p.x.Tools = x.Messages, x.Tools
		}
		return llm.Message{}, nil, fmt.Errorf("model call %d: %w", p.x.LLMCalls, err)
	}
	p.x.Usage = p.x.Usage.Add(resp.Usage)
	msg, calls := resp.Message, resp.Message.ToolCalls
	if p.text {
		// The model produced text; that is the message, whatever a
		// server-side parser may have made of it.
		msg = llm.Message{Role: llm.RoleAssistant, Content: resp.Message.Content}
		calls = TextCalls(msg.Content, p.defs)
	}
	if err := p.x.add(resp, msg, p.cfg.Logprobs); err != nil {
		return msg, nil, err
	}
	p.messages = append(p.messages, msg)
	return msg, calls, nil
}

// fail ends the policy on a failed model call: a failed tool_call step
// classified by ErrorType.
func (p *ModelPolicy) fail(ctx context.Context, err error) {
	kind := ErrorType(ctx, err)
	p.end.Failure = &Failure{Type: kind, Message: err.Error()}
	p.end.Steps = []core.ExecutionStep{{ActionType: core.ActionToolCall, ActionParams: map[string]any{"tool": "llm"},
		ErrorType: kind, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(time.Now())}}
}

// End is how the conversation ended, with its exchange.
func (p *ModelPolicy) End() PolicyEnd {
	e := p.end
	x := p.x
	e.Model = &x
	return e
}

// record is the trajectory's llm record of the requests.
func (p *ModelPolicy) record() *core.LLMRecord {
	pp := p.params
	return &core.LLMRecord{
		Endpoint: p.model.URL(), Model: p.cfg.Model,
		Temperature: pp.Temperature, TopP: pp.TopP, MaxTokens: pp.MaxTokens, Seed: pp.Seed,
		ToolMode: p.cfg.ToolMode, API: p.cfg.API,
	}
}

// withImage appends a user message of note and the image, and takes the
// image out of the earlier such messages (their notes stay), so a request
// carries at most one image (the trajectory references every screenshot as
// a file of its step). The messages already sent are not changed: the
// earlier ones are copied.
func withImage(messages []llm.Message, png []byte, note string) []llm.Message {
	out := make([]llm.Message, 0, len(messages)+1)
	for _, m := range messages {
		if m.Parts != nil {
			var kept []llm.ContentPart
			for _, p := range m.Parts {
				if p.Type == "text" {
					kept = append(kept, p)
				}
			}
			m = llm.UserParts(kept...)
		}
		out = append(out, m)
	}
	return append(out, llm.UserParts(llm.TextPart(note), llm.ImagePart("image/png", png)))
}

// withTextTools returns messages with the text description of tools added
// to the system prompt (a system message is put first when there is none).
// messages itself is not changed.
func withTextTools(messages []llm.Message, tools []llm.Tool) []llm.Message {
	desc := prompt.TextTools(tools)
	out := append([]llm.Message(nil), messages...)
	if len(out) > 0 && out[0].Role == llm.RoleSystem {
		out[0].Content += "\n\n" + desc
		return out
	}
	return append([]llm.Message{llm.SystemMessage(desc)}, out...)
}

// add keeps the exchange of one successful call; msg is the assistant
// message kept (and a next request would carry) for the reply; logprobs
// says whether logprobs and token ids were asked for.
func (x *Exchange) add(resp llm.Response, msg llm.Message, logprobs bool) error {
	ex := resp.Exchange
	sent, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("llm: encode reply: %w", err)
	}
	x.Transcript = append(append(make([]json.RawMessage, 0, len(ex.Messages)+1), ex.Messages...), sent)
	x.Tools = ex.Tools
	var tokens *core.TokenCoverage
	if logprobs {
		n, ok := llm.LogprobTokens(resp.Logprobs)
		tokens = &core.TokenCoverage{
			Logprobs:           core.CoverageOf(n, ok, resp.Usage.CompletionTokens),
			PromptTokenIDs:     core.CoverageOf(len(resp.PromptTokenIDs), resp.PromptTokenIDs != nil, resp.Usage.PromptTokens),
			CompletionTokenIDs: core.CoverageOf(len(resp.CompletionTokenIDs), resp.CompletionTokenIDs != nil, resp.Usage.CompletionTokens),
		}
	}
	x.Calls = append(x.Calls, core.ModelCall{
		ID: resp.ID, Model: resp.Model, SystemFingerprint: resp.SystemFingerprint,
		FinishReason:       resp.FinishReason,
		Usage:              core.TokenUsage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens, TotalTokens: resp.Usage.TotalTokens},
		Reply:              ex.Reply,
		Prompt:             ex.Prompt,
		Logprobs:           resp.Logprobs,
		PromptTokenIDs:     resp.PromptTokenIDs,
		CompletionTokenIDs: resp.CompletionTokenIDs,
		Tokens:             tokens,
	})
	return nil
}

// ErrorType classifies a failed model call: a timeout when ctx expired; a
// context overflow, or another refusal, when the server answered with one;
// else a network error (the server could not be reached, or kept failing).
func ErrorType(ctx context.Context, err error) core.ErrorType {
	var ae *llm.APIError
	switch {
	case ctx.Err() != nil:
		return core.ErrTimeout
	case errors.Is(err, llm.ErrContextExceeded):
		return core.ErrContextExceeded
	case errors.As(err, &ae) && ae.Refused():
		return core.ErrLLMRefused
	}
	return core.ErrNetwork
}
