// Package agent is the tool-calling loop both runtimes share: ask the model,
// run the tool it calls, feed the observation back, until it answers, calls a
// finishing tool, or the step budget is spent.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
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

// Model is what the loop needs of a chat model; *llm.Client is one, and
// tests script one.
type Model interface {
	Chat(ctx context.Context, messages []llm.Message, tools []llm.Tool) (llm.Response, error)
}

// Loop is one task's conversation with the model.
type Loop struct {
	Model Model
	// MaxSteps bounds tool calls (the task's max_steps). The model gets a
	// few more turns than that for malformed calls and the final answer.
	MaxSteps int
}

// Outcome is how a loop ended.
type Outcome struct {
	// Answer is the model's last text answer (or the finish tool's answer,
	// which the Tools implementation keeps).
	Answer string
	// Reason: answered, finished (a done tool), or max_steps.
	Reason   core.ExitReason
	Steps    int
	LLMCalls int
	Usage    llm.Usage
	Messages []llm.Message
	// Transcript is the conversation as exchanged: the last request's
	// messages as sent, then the last reply. Tools are the tools as sent.
	Transcript []json.RawMessage
	Tools      json.RawMessage
	Calls      []core.ModelCall
}

// extraTurns allows for malformed calls and verification feedback beyond
// MaxSteps model turns, so a looping model still terminates.
const extraTurns = 3

// Run converses from the initial messages. An error means the model could
// not be reached (after the client's retries); the Outcome so far is
// returned with it.
func (l *Loop) Run(ctx context.Context, messages []llm.Message, tools Tools) (Outcome, error) {
	defs := tools.Definitions()
	out := Outcome{Messages: messages}
	for turn := 0; turn < l.MaxSteps+extraTurns; turn++ {
		if out.Steps >= l.MaxSteps {
			out.Reason = core.ExitMaxSteps
			return out, nil
		}
		resp, err := l.Model.Chat(ctx, out.Messages, defs)
		out.LLMCalls++
		if err != nil {
			return out, fmt.Errorf("llm: %w", err)
		}
		out.Usage = out.Usage.Add(resp.Usage)
		out.record(resp)
		msg := resp.Message
		out.Messages = append(out.Messages, msg)
		if len(msg.ToolCalls) == 0 {
			out.Answer = msg.Content
			fb := tools.Answer(ctx, msg.Content)
			if fb == "" {
				out.Reason = core.ExitAnswered
				return out, nil
			}
			out.Messages = append(out.Messages, llm.UserMessage(fb))
			continue
		}
		for _, call := range msg.ToolCalls {
			if out.Steps >= l.MaxSteps {
				out.Messages = append(out.Messages, llm.ToolResult(call, "not run: the step budget (max_steps) is spent"))
				continue
			}
			if err := llm.ValidateToolCall(call, defs); err != nil {
				out.Messages = append(out.Messages, llm.ToolResult(call, "error: "+err.Error()))
				continue
			}
			obs, done := tools.Call(ctx, call)
			out.Steps++
			out.Messages = append(out.Messages, llm.ToolResult(call, obs))
			if done {
				out.Reason = core.ExitFinished
				return out, nil
			}
		}
	}
	out.Reason = core.ExitMaxSteps
	return out, nil
}

// record keeps the exchange of one successful call.
func (o *Outcome) record(resp llm.Response) {
	x := resp.Exchange
	o.Transcript = append(append(make([]json.RawMessage, 0, len(x.Messages)+1), x.Messages...), x.Sent)
	o.Tools = x.Tools
	o.Calls = append(o.Calls, core.ModelCall{
		FinishReason: resp.FinishReason,
		Usage:        core.TokenUsage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens, TotalTokens: resp.Usage.TotalTokens},
		Reply:        x.Reply,
	})
}

// Record writes the loop's figures into a trajectory's metadata and, when
// the model could not be reached (err), a failed tool_call step: a timeout
// when ctx expired, else a network error.
func (o Outcome) Record(ctx context.Context, tr *core.Trajectory, err error, started time.Time) {
	tr.Metadata[core.MetaLLMCalls] = o.LLMCalls
	tr.Metadata[core.MetaPromptTokens] = o.Usage.PromptTokens
	tr.Metadata[core.MetaCompletionTokens] = o.Usage.CompletionTokens
	tr.Metadata[core.MetaTotalTokens] = o.Usage.TotalTokens
	tr.Metadata[core.MetaStopReason] = string(o.Reason)
	tr.Messages, tr.Tools, tr.ModelCalls = o.Transcript, o.Tools, o.Calls
	tr.ExitReason = o.Reason
	if err == nil {
		return
	}
	kind := core.ErrNetwork
	tr.ExitReason = core.ExitLLMError
	if ctx.Err() != nil {
		kind = core.ErrTimeout
		tr.ExitReason = core.ExitTimeout
	}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionToolCall, ActionParams: map[string]any{"tool": "llm"},
		ErrorType: kind, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(started)})
}
