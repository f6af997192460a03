package export

import "encoding/json"

// The OpenAI chat fine-tuning shape of a message, as a rendered
// conversation writes it.
type openAIMessage struct {
	Role string `json:"role"`
	// Content is always a string ("" on an assistant message that only
	// calls tools): some chat templates fail on a null content.
	Content    string           `json:"content"`
	ToolCalls  []openAIToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
}

type openAIToolCall struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Function openAIFunction `json:"function"`
}

type openAIFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"` // a JSON object, encoded as a string
}

// openAI renders c as one OpenAI record: its messages and tools, their
// bytes unchanged.
func (c *conversation) openAI() ([]byte, error) {
	return marshal(struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}{raws(c.messages), c.tools})
}
