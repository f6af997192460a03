package export

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
)

// Records of trajectories that carry their exchange with a model
// (core.Trajectory.Messages and Tools): the export is what was sent and
// received, not a rendering of the steps.
//
//   - openai: the recorded messages, each element's bytes unchanged, and the
//     recorded tools unchanged. Messages after the model's last reply (a
//     request that got no answer) are left out.
//   - sharegpt: the same conversation in LLaMA-Factory's roles; the texts
//     are the recorded ones. An assistant message's text beside tool calls
//     has no place in a function_call and is left out there, and the
//     results of several calls of one message are one observation.
//
// Options.SystemPrompt, when set, replaces the recorded system prompt: the
// operator asked for it.

// wireMessage is the part of a recorded message the export reads.
type wireMessage struct {
	Role       string      `json:"role"`
	Content    textContent `json:"content"`
	ToolCallID string      `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// textContent is a message's content as text: a string, or the text
// parts of a content of parts (a WEB_VISION request's image parts are in
// the recorded bytes, not in text formats).
type textContent string

func (c *textContent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = textContent(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content is neither a string nor a list of parts: %w", err)
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	*c = textContent(strings.Join(texts, "\n"))
	return nil
}

// recordedMessages returns the recorded messages up to the model's last
// reply, decoded beside their bytes.
func recordedMessages(tr *core.Trajectory, opts Options) ([]json.RawMessage, []wireMessage, error) {
	raws := tr.Messages
	msgs := make([]wireMessage, len(raws))
	last := -1
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &msgs[i]); err != nil {
			return nil, nil, fmt.Errorf("recorded message %d: %w", i, err)
		}
		if msgs[i].Role == "assistant" {
			last = i
		}
	}
	if last < 0 {
		return nil, nil, errEmpty
	}
	raws, msgs = append([]json.RawMessage(nil), raws[:last+1]...), msgs[:last+1]
	if opts.SystemPrompt != "" && msgs[0].Role == "system" {
		b, err := marshal(struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		}{"system", opts.SystemPrompt})
		if err != nil {
			return nil, nil, err
		}
		raws[0], msgs[0].Content = b, textContent(opts.SystemPrompt)
	}
	return raws, msgs, nil
}

func recordedTools(tr *core.Trajectory) json.RawMessage {
	if len(tr.Tools) == 0 {
		return json.RawMessage("[]")
	}
	return tr.Tools
}

// recordedOpenAI is the OpenAI record of a recorded exchange.
func recordedOpenAI(tr *core.Trajectory, opts Options) ([]byte, error) {
	raws, _, err := recordedMessages(tr, opts)
	if err != nil {
		return nil, err
	}
	return marshal(struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}{raws, recordedTools(tr)})
}

// recordedShareGPT is the sharegpt record of a recorded exchange.
func recordedShareGPT(tr *core.Trajectory, opts Options) ([]byte, error) {
	_, msgs, err := recordedMessages(tr, opts)
	if err != nil {
		return nil, err
	}
	rec := shareGPTRecord{Conversations: make([]shareGPTMessage, 0, len(msgs))}
	for i, m := range msgs {
		switch {
		case m.Role == "system" && i == 0:
			rec.System = string(m.Content)
		case m.Role == "user":
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromHuman, Value: string(m.Content)})
		case m.Role == "assistant" && len(m.ToolCalls) == 0:
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromGPT, Value: string(m.Content)})
		case m.Role == "assistant":
			calls := make([]shareGPTCall, 0, len(m.ToolCalls))
			for _, c := range m.ToolCalls {
				var args map[string]any
				if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil {
					return nil, fmt.Errorf("recorded call %s: arguments: %w", c.Function.Name, err)
				}
				if args == nil {
					args = map[string]any{}
				}
				calls = append(calls, shareGPTCall{Name: c.Function.Name, Arguments: args})
			}
			var v string
			if len(calls) == 1 {
				v, err = marshalString(calls[0])
			} else {
				v, err = marshalString(calls)
			}
			if err != nil {
				return nil, err
			}
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromFunctionCall, Value: v})
		case m.Role == "tool":
			if n := len(rec.Conversations); n > 0 && rec.Conversations[n-1].From == fromObservation {
				rec.Conversations[n-1].Value += "\n\n" + string(m.Content)
				continue
			}
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromObservation, Value: string(m.Content)})
		default:
			return nil, fmt.Errorf("recorded message %d: role %q has no sharegpt equivalent", i, m.Role)
		}
	}
	var defs []struct {
		Function json.RawMessage `json:"function"`
	}
	if err := json.Unmarshal(recordedTools(tr), &defs); err != nil {
		return nil, fmt.Errorf("recorded tools: %w", err)
	}
	fns := make([]json.RawMessage, len(defs))
	for i, d := range defs {
		fns[i] = d.Function
	}
	t, err := marshalString(fns)
	if err != nil {
		return nil, err
	}
	rec.Tools = strings.TrimSpace(t)
	return marshal(rec)
}
