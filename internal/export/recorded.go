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
//   - openai: the recorded messages, each element's bytes unchanged (but
//     for insignificant space), and the recorded tools unchanged. Messages
//     after the model's last reply (a request that got no answer) are left
//     out.
//   - sharegpt: the same conversation in LLaMA-Factory's roles; the texts
//     are the recorded ones (see conversation.shareGPT).
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

// recordedConversation is the conversation of tr's recorded exchange: its
// messages up to the model's last reply (a request that got no answer is
// left out), each decoded once beside its bytes, and its tools.
func recordedConversation(tr *core.Trajectory, opts Options) (*conversation, error) {
	c := &conversation{recorded: true}
	last := -1
	for i, raw := range tr.Messages {
		var w wireMessage
		if err := json.Unmarshal(raw, &w); err != nil {
			return nil, fmt.Errorf("recorded message %d: %w", i, err)
		}
		b, err := compact(raw)
		if err != nil {
			return nil, fmt.Errorf("recorded message %d: %w", i, err)
		}
		m := message{raw: b, role: w.Role, content: string(w.Content), toolCallID: w.ToolCallID}
		for _, tc := range w.ToolCalls {
			call := toolCall{id: tc.ID, name: tc.Function.Name}
			call.argsErr = json.Unmarshal([]byte(tc.Function.Arguments), &call.args)
			m.calls = append(m.calls, call)
		}
		c.messages = append(c.messages, m)
		if m.role == "assistant" {
			last = i
		}
	}
	if last < 0 {
		return nil, errEmpty
	}
	c.messages = c.messages[:last+1]
	if opts.SystemPrompt != "" && c.messages[0].role == "system" {
		b, err := marshal(openAIMessage{Role: "system", Content: opts.SystemPrompt})
		if err != nil {
			return nil, err
		}
		c.messages[0] = message{raw: b, role: "system", content: opts.SystemPrompt}
	}
	tools := tr.Tools
	if len(tools) == 0 {
		tools = json.RawMessage("[]")
	}
	var err error
	if c.tools, err = compact(tools); err != nil {
		return nil, fmt.Errorf("recorded tools: %w", err)
	}
	var defs []struct {
		Function json.RawMessage `json:"function"`
	}
	if err := json.Unmarshal(c.tools, &defs); err != nil {
		return nil, fmt.Errorf("recorded tools: %w", err)
	}
	c.functions = make([]json.RawMessage, len(defs))
	for i, d := range defs {
		c.functions[i] = d.Function
	}
	return c, nil
}
