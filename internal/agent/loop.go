// Package agent is the tool-calling loop both runtimes share: ask the model,
// run the tool it calls, feed the observation back, until it answers, calls a
// finishing tool, or the step budget is spent.
package agent

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

// Tools executes the tool calls of one task.
type Tools interface {
	// Definitions are the tools offered to the model.
	Definitions() []llm.Tool
	// Call runs one well-formed call (its name is one of Definitions) and
	// returns the observation for the model; done ends the loop (a finish
	// tool). Each Call is one step of the trajectory; the implementation
	// records it.
	Call(ctx context.Context, call llm.ToolCall) (observation string, done bool)
	// Answer is called when the model replies without a tool call. It
	// returns feedback to send back (e.g. "verification failed: ...") to
	// keep going, or "" to accept the answer and stop.
	Answer(ctx context.Context, answer string) (feedback string)
}

// ImageTools are Tools whose calls may leave an image for the model (a
// vision model's screenshot of the page after the step). After a reply's
// calls the loop sends the latest one in a user message of content parts:
// the note, then the image. Only the latest image is sent: an earlier
// image message keeps its note and loses its image, so a request carries
// at most one image (the trajectory references every screenshot as a file
// of its step; the transcript, the last request as sent, holds the one).
type ImageTools interface {
	Tools
	// TakeImage returns (and forgets) the image the last call left: a PNG
	// and a note saying what it is; ok false when there is none.
	TakeImage() (png []byte, note string, ok bool)
}

// Model is what the loop needs of a chat model; *llm.Client is one, and
// tests script one.
type Model interface {
	Do(ctx context.Context, req llm.Request) (llm.Response, error)
	// Config says how the model is reached (tool mode, API, model name).
	Config() llm.Config
	// URL is the endpoint requests go to.
	URL() string
}

// Loop is one task's conversation with the model. NewLoop makes it, for
// every kind of task: the only way to a loop, so no agent can leave out
// the task's sampling.
type Loop struct {
	model Model
	// maxSteps bounds tool calls (the task's max_steps). The model gets a
	// few more turns than that for malformed calls and the final answer.
	maxSteps int
	// params are the sampling settings every request of the loop carries
	// (see Params).
	params llm.Params
}

// NewLoop is the loop of one attempt of task with model m: the task's
// max_steps, and the sampling settings of Params (the task's `sampling`
// over the model's configuration, seed + sample_index) on every request.
func NewLoop(m Model, task core.TaskSpec) *Loop {
	return &Loop{model: m, maxSteps: task.MaxSteps, params: Params(m.Config(), task)}
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

// Outcome is how a loop ended.
type Outcome struct {
	// Answer is the model's last text answer (or the finish tool's answer,
	// which the Tools implementation keeps).
	Answer string
	// Reason: answered, finished (a done tool), max_steps or max_turns.
	Reason   core.ExitReason
	Steps    int
	LLMCalls int
	Usage    llm.Usage
	Messages []llm.Message
	// Transcript is the conversation as exchanged: the last request's
	// messages as sent, then its reply (none when the last request got
	// no answer). Tools are the tools as sent.
	Transcript []json.RawMessage
	Tools      json.RawMessage
	Calls      []core.ModelCall
	// LLM is what the requests were sent with; nil when none was sent.
	LLM *core.LLMRecord
}

// extraTurns allows for malformed calls and verification feedback beyond
// MaxSteps model turns, so a looping model still terminates.
const extraTurns = 3

// Run converses from the initial messages. An error means the model could
// not be reached or refused a request (after the client's retries); the
// Outcome so far is returned with it, its Transcript the request that got
// no answer.
//
// In text tool mode (llm.ToolModeText) the loop speaks plain text: the
// tools are described at the end of the system prompt (prompt.TextTools,
// from the same definitions), the calls are parsed from the reply
// (TextCalls), the reply is kept as the assistant message the model
// produced (its text, nothing added), and the results of one reply's calls
// go back as one user message (prompt.TextToolResult).
func (l *Loop) Run(ctx context.Context, messages []llm.Message, tools Tools) (Outcome, error) {
	defs := tools.Definitions()
	cfg := l.model.Config()
	text := cfg.ToolMode == llm.ToolModeText
	reqTools := defs
	if text {
		messages, reqTools = withTextTools(messages, defs), nil
	}
	out := Outcome{Messages: messages}
	for turn := 0; turn < l.maxSteps+extraTurns; turn++ {
		if out.Steps >= l.maxSteps {
			out.Reason = core.ExitMaxSteps
			return out, nil
		}
		if out.LLM == nil {
			out.LLM = l.record(cfg)
		}
		resp, err := l.model.Do(ctx, llm.Request{Messages: out.Messages, Tools: reqTools, Params: l.params})
		out.LLMCalls++
		if err != nil {
			// What was sent is the record, though no answer came.
			if x := resp.Exchange; x.Messages != nil {
				out.Transcript, out.Tools = x.Messages, x.Tools
			}
			return out, fmt.Errorf("model call %d: %w", out.LLMCalls, err)
		}
		out.Usage = out.Usage.Add(resp.Usage)
		msg, calls := resp.Message, resp.Message.ToolCalls
		if text {
			// The model produced text; that is the message, whatever a
			// server-side parser may have made of it.
			msg = llm.Message{Role: llm.RoleAssistant, Content: resp.Message.Content}
			calls = TextCalls(msg.Content, defs)
		}
		if err := out.record(resp, msg, cfg.Logprobs); err != nil {
			return out, err
		}
		out.Messages = append(out.Messages, msg)
		if len(calls) == 0 {
			out.Answer = msg.Content
			fb := tools.Answer(ctx, msg.Content)
			if fb == "" {
				out.Reason = core.ExitAnswered
				return out, nil
			}
			out.Messages = append(out.Messages, llm.UserMessage(fb))
			continue
		}
		var results []string // text mode: this reply's results, sent together
		reply := func(call llm.ToolCall, obs string) {
			if text {
				results = append(results, prompt.TextToolResult(call.Function.Name, obs))
				return
			}
			out.Messages = append(out.Messages, llm.ToolResult(call, obs))
		}
		done := false
		for _, call := range calls {
			if out.Steps >= l.maxSteps {
				reply(call, "not run: the step budget (max_steps) is spent")
				continue
			}
			if err := llm.ValidateToolCall(call, defs); err != nil {
				reply(call, "error: "+err.Error())
				continue
			}
			obs, finished := tools.Call(ctx, call)
			out.Steps++
			reply(call, obs)
			if finished {
				done = true
				break
			}
		}
		if len(results) > 0 {
			out.Messages = append(out.Messages, llm.UserMessage(strings.Join(results, "\n\n")))
		}
		if it, ok := tools.(ImageTools); ok {
			if png, note, ok := it.TakeImage(); ok {
				out.Messages = withImage(out.Messages, png, note)
			}
		}
		if done {
			out.Reason = core.ExitFinished
			return out, nil
		}
	}
	// The turns ran out: the step budget too when the last turn spent it.
	out.Reason = core.ExitMaxTurns
	if out.Steps >= l.maxSteps {
		out.Reason = core.ExitMaxSteps
	}
	return out, nil
}

// withImage appends a user message of note and the image, and takes the
// image out of the earlier such messages (their notes stay). The messages
// already sent are not changed: the earlier ones are copied.
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

// record is the trajectory's llm record of requests sent with cfg.
func (l *Loop) record(cfg llm.Config) *core.LLMRecord {
	p := l.params
	return &core.LLMRecord{
		Endpoint: l.model.URL(), Model: cfg.Model,
		Temperature: p.Temperature, TopP: p.TopP, MaxTokens: p.MaxTokens, Seed: p.Seed,
		ToolMode: cfg.ToolMode, API: cfg.API,
	}
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

// record keeps the exchange of one successful call; msg is the assistant
// message the loop keeps (and a next request would carry) for the reply;
// logprobs says whether logprobs and token ids were asked for.
func (o *Outcome) record(resp llm.Response, msg llm.Message, logprobs bool) error {
	x := resp.Exchange
	sent, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("llm: encode reply: %w", err)
	}
	o.Transcript = append(append(make([]json.RawMessage, 0, len(x.Messages)+1), x.Messages...), sent)
	o.Tools = x.Tools
	var tokens *core.TokenCoverage
	if logprobs {
		n, ok := llm.LogprobTokens(resp.Logprobs)
		tokens = &core.TokenCoverage{
			Logprobs:           core.CoverageOf(n, ok, resp.Usage.CompletionTokens),
			PromptTokenIDs:     core.CoverageOf(len(resp.PromptTokenIDs), resp.PromptTokenIDs != nil, resp.Usage.PromptTokens),
			CompletionTokenIDs: core.CoverageOf(len(resp.CompletionTokenIDs), resp.CompletionTokenIDs != nil, resp.Usage.CompletionTokens),
		}
	}
	o.Calls = append(o.Calls, core.ModelCall{
		ID: resp.ID, Model: resp.Model, SystemFingerprint: resp.SystemFingerprint,
		FinishReason:       resp.FinishReason,
		Usage:              core.TokenUsage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens, TotalTokens: resp.Usage.TotalTokens},
		Reply:              x.Reply,
		Prompt:             x.Prompt,
		Logprobs:           resp.Logprobs,
		PromptTokenIDs:     resp.PromptTokenIDs,
		CompletionTokenIDs: resp.CompletionTokenIDs,
		Tokens:             tokens,
	})
	return nil
}

// Record writes the loop's figures into a trajectory's metadata and, when
// the model call failed (err), a failed tool_call step classified by
// ErrorType, and the exit reason core.ExitFor gives it.
func (o Outcome) Record(ctx context.Context, tr *core.Trajectory, err error, started time.Time) {
	tr.Metadata[core.MetaLLMCalls] = o.LLMCalls
	tr.Metadata[core.MetaPromptTokens] = o.Usage.PromptTokens
	tr.Metadata[core.MetaCompletionTokens] = o.Usage.CompletionTokens
	tr.Metadata[core.MetaTotalTokens] = o.Usage.TotalTokens
	tr.Metadata[core.MetaStopReason] = string(o.Reason)
	tr.Messages, tr.Tools, tr.ModelCalls = o.Transcript, o.Tools, o.Calls
	tr.LLM = o.LLM
	tr.ExitReason = o.Reason
	if err == nil {
		return
	}
	kind := ErrorType(ctx, err)
	tr.ExitReason = core.ExitFor(kind)
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionToolCall, ActionParams: map[string]any{"tool": "llm"},
		ErrorType: kind, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(started)})
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
