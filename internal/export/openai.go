package export

import "github.com/agentdataplatform/adp/internal/llm"

// The OpenAI chat fine-tuning shape, as written.
type openAIRecord struct {
	Messages []openAIMessage `json:"messages"`
	Tools    []openAITool    `json:"tools"`
}

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

type openAITool = llm.Tool

// openAI renders c as one OpenAI record: system, user, then per model
// action an assistant message with one tool call and the tool message
// answering it, then the final assistant message.
func (c conversation) openAI() ([]byte, error) {
	rec := openAIRecord{
		Messages: make([]openAIMessage, 0, 3+2*len(c.calls)),
		Tools:    make([]openAITool, 0, len(c.tools)),
	}
	rec.Messages = append(rec.Messages,
		openAIMessage{Role: "system", Content: c.system},
		openAIMessage{Role: "user", Content: c.user})
	for _, cl := range c.calls {
		args, err := marshalString(cl.args)
		if err != nil {
			return nil, err
		}
		rec.Messages = append(rec.Messages,
			openAIMessage{Role: "assistant", ToolCalls: []openAIToolCall{{
				ID: cl.id, Type: "function", Function: openAIFunction{Name: cl.name, Arguments: args},
			}}},
			openAIMessage{Role: "tool", ToolCallID: cl.id, Content: cl.observation})
	}
	rec.Messages = append(rec.Messages, openAIMessage{Role: "assistant", Content: c.final})
	for _, d := range c.tools {
		rec.Tools = append(rec.Tools, d)
	}
	return marshal(rec)
}
