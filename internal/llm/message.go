package llm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Message roles.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one chat message, in the OpenAI wire shape.
type Message struct {
	Role string `json:"role"`
	// Content is always sent as a string ("" for an assistant message that
	// only calls tools): some chat templates fail on a null content.
	Content string `json:"content"`
	// ToolCalls are the calls an assistant message makes.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID links a tool message to the call it answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Name is the tool's name on a tool message (some servers want it).
	Name string `json:"name,omitempty"`
	// Parts, when not nil, are sent as the content instead of Content (an
	// array of OpenAI content parts: text and images, for vision models);
	// Content then holds their text, for logs and completions prompts.
	Parts []ContentPart `json:"-"`
}

// ContentPart is one part of a message's content: {"type":"text","text":…}
// or {"type":"image_url","image_url":{"url":…}}.
type ContentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image part's image: a URL, here always a data: URL.
type ImageURL struct {
	URL string `json:"url"`
}

// TextPart and ImagePart make content parts.
func TextPart(text string) ContentPart { return ContentPart{Type: "text", Text: text} }

// ImagePart is an image part of data (a data: URL of mime type).
func ImagePart(mime string, data []byte) ContentPart {
	return ContentPart{Type: "image_url", ImageURL: &ImageURL{URL: "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data)}}
}

// UserParts is a user message of content parts.
func UserParts(parts ...ContentPart) Message {
	var text []string
	for _, p := range parts {
		if p.Type == "text" {
			text = append(text, p.Text)
		}
	}
	return Message{Role: RoleUser, Content: strings.Join(text, "\n"), Parts: parts}
}

// messageWire is Message on the wire, content as any JSON.
type messageWire struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	Name       string          `json:"name,omitempty"`
}

// MarshalJSON sends Parts, when there are any, as the content array.
func (m Message) MarshalJSON() ([]byte, error) {
	var content any = m.Content
	if m.Parts != nil {
		content = m.Parts
	}
	c, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	return json.Marshal(messageWire{Role: m.Role, Content: c, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name})
}

// UnmarshalJSON reads a content string, or an array of parts (Parts, and
// their text joined in Content); null is "".
func (m *Message) UnmarshalJSON(b []byte) error {
	var w messageWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message{Role: w.Role, ToolCalls: w.ToolCalls, ToolCallID: w.ToolCallID, Name: w.Name}
	raw := bytes.TrimSpace(w.Content)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
	case raw[0] == '[':
		var parts []ContentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return err
		}
		*m = UserParts(parts...)
		m.Role, m.ToolCalls, m.ToolCallID, m.Name = w.Role, w.ToolCalls, w.ToolCallID, w.Name
	default:
		return json.Unmarshal(raw, &m.Content)
	}
	return nil
}

// ToolCall is one function call requested by the model.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"` // "function"
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments as the model
// wrote them: normally a JSON object encoded as a string, but possibly
// invalid JSON. Use ParseArguments to decode it.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// UnmarshalJSON accepts arguments as a JSON string (the OpenAI shape) or as a
// raw JSON value (some servers send the object itself); either way Arguments
// ends up holding the JSON text.
func (f *FunctionCall) UnmarshalJSON(b []byte) error {
	var w struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	f.Name = w.Name
	f.Arguments = ""
	raw := bytes.TrimSpace(w.Arguments)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		f.Arguments = s
	default:
		f.Arguments = string(raw)
	}
	return nil
}

// Tool is a function the model may call.
type Tool struct {
	Type     string      `json:"type"` // "function"
	Function FunctionDef `json:"function"`
}

// FunctionDef describes a callable function; Parameters is a JSON schema.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// NewTool builds a function tool. parameters is a JSON schema object.
func NewTool(name, description, parameters string) Tool {
	var p json.RawMessage
	if parameters != "" {
		p = json.RawMessage(parameters)
	}
	return Tool{Type: "function", Function: FunctionDef{Name: name, Description: description, Parameters: p}}
}

// Usage is the token accounting of one response.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Add returns the sum of two usages, for totals across an agent loop.
func (u Usage) Add(o Usage) Usage {
	return Usage{
		PromptTokens:     u.PromptTokens + o.PromptTokens,
		CompletionTokens: u.CompletionTokens + o.CompletionTokens,
		TotalTokens:      u.TotalTokens + o.TotalTokens,
	}
}

// Params are the sampling settings of one request; a nil field is not
// sent (the server's default applies). Config.ParamsFor resolves them for
// an attempt of a task.
type Params struct {
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	MaxTokens   *int     `json:"max_tokens,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
}

// Request is one model call: the conversation so far, the tools the model
// may call (not sent in ToolModeText) and the sampling settings, sent
// exactly as given.
type Request struct {
	Messages []Message
	Tools    []Tool
	Params   Params
}

// Response is the first choice of a chat completion (or of a completion,
// its text as the content of an assistant message).
type Response struct {
	Message      Message
	FinishReason string // "stop", "tool_calls", "length", ...
	Usage        Usage
	// Logprobs is the choice's logprobs object as the server sent it; nil
	// when it sent none (Config.Logprobs asks for it).
	Logprobs json.RawMessage
	// PromptTokenIDs and CompletionTokenIDs are the token ids the server
	// returned (vLLM's return_token_ids: the response's or the choice's
	// prompt_token_ids, the choice's token_ids); nil when it returned none.
	PromptTokenIDs     []int
	CompletionTokenIDs []int
	// ID, Model and SystemFingerprint are the response's own "id",
	// "model" (the model that served it, which may differ from the one
	// asked for) and "system_fingerprint"; "" when the server sent none.
	ID                string
	Model             string
	SystemFingerprint string
	// Attempts is how many HTTP attempts the call took (1 without retries).
	Attempts int
	// FromContent is true when Message.ToolCalls were recovered from the
	// content (Config.ToolCallsFromContent) rather than sent as tool_calls.
	FromContent bool
	// Exchange is the call as it went over the wire.
	Exchange Exchange
}

// Exchange is one model call exactly as it went over the wire, for the
// record of what a model saw and said.
type Exchange struct {
	// Messages are the request's messages, each the bytes the client sent
	// (with APICompletions: the messages Prompt was rendered from, in the
	// same encoding).
	Messages []json.RawMessage
	// Tools is the request's tools array as sent; nil when none was.
	Tools json.RawMessage
	// Prompt is the prompt string sent to /completions; "" with APIChat.
	Prompt string
	// Reply is the response's choices[0].message (chat) or choices[0]
	// (completions) as the server sent it.
	Reply json.RawMessage
	// Sent is Message (the reply, ids filled in) in the client's encoding:
	// the bytes a next request carries for it.
	Sent json.RawMessage
}

// SystemMessage, UserMessage and ToolResult build the messages an agent loop
// sends; the assistant message to echo back is Response.Message.
func SystemMessage(content string) Message { return Message{Role: RoleSystem, Content: content} }

// UserMessage builds a user message.
func UserMessage(content string) Message { return Message{Role: RoleUser, Content: content} }

// ToolResult builds the tool message answering tc, e.g. the observation of a
// run or the error of a malformed call.
func ToolResult(tc ToolCall, content string) Message {
	return Message{Role: RoleTool, ToolCallID: tc.ID, Name: tc.Function.Name, Content: content}
}

// LogprobTokens counts the tokens a choice's logprobs object covers: the
// entries of "content" (chat; llama.cpp's completions too) or of
// "token_logprobs" (completions). ok is false when logprobs holds neither.
func LogprobTokens(logprobs json.RawMessage) (n int, ok bool) {
	var lp struct {
		Content       []json.RawMessage `json:"content"`
		TokenLogprobs []json.RawMessage `json:"token_logprobs"`
	}
	if len(logprobs) == 0 || json.Unmarshal(logprobs, &lp) != nil {
		return 0, false
	}
	switch {
	case lp.Content != nil:
		return len(lp.Content), true
	case lp.TokenLogprobs != nil:
		return len(lp.TokenLogprobs), true
	}
	return 0, false
}
