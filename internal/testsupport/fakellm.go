package testsupport

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// FakeLLM is a local OpenAI-compatible server standing in for the external
// model API: /v1/chat/completions and /v1/completions. Reply decides each
// answer from the request: a body of type []byte is sent byte for byte
// (to test that what a server sent is recorded as sent), any other is
// JSON-encoded.
type FakeLLM struct {
	URL string // base URL, ending in /v1

	mu       sync.Mutex
	requests []FakeLLMRequest
	reply    func(req FakeLLMRequest, n int) (status int, body any)
}

// FakeLLMRequest is the part of a chat request tests look at.
type FakeLLMRequest struct {
	// Body is the request body as received.
	Body []byte `json:"-"`
	// Path is the request's path: /v1/chat/completions or /v1/completions.
	Path string `json:"-"`
	// Header is the request's HTTP header (Authorization carries the key).
	Header http.Header `json:"-"`
	Model  string      `json:"model"`
	// Prompt is a completions request's prompt.
	Prompt      string   `json:"prompt"`
	Temperature *float64 `json:"temperature"`
	TopP        *float64 `json:"top_p"`
	MaxTokens   *int     `json:"max_tokens"`
	Seed        *int64   `json:"seed"`
	// ReturnTokenIDs is vLLM's extension asking for token ids.
	ReturnTokenIDs bool `json:"return_token_ids"`
	// Logprobs is true (chat) or a number of alternatives (completions);
	// TopLogprobs is chat's number of alternatives.
	Logprobs    json.RawMessage  `json:"logprobs"`
	TopLogprobs *int             `json:"top_logprobs"`
	Messages    []FakeLLMMessage `json:"messages"`
	Tools       []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// Completions reports whether the request went to /v1/completions.
func (r FakeLLMRequest) Completions() bool { return r.Path == "/v1/completions" }

// RawMessages are the elements of the request's messages array, each the
// bytes received, and its tools array as received (nil when absent).
func (r FakeLLMRequest) RawMessages() (messages []json.RawMessage, tools json.RawMessage) {
	var b struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}
	_ = json.Unmarshal(r.Body, &b) // the server decoded Body already
	return b.Messages, b.Tools
}

// HasField reports whether the request body has the top-level field name.
func (r FakeLLMRequest) HasField(name string) bool {
	var b map[string]json.RawMessage
	_ = json.Unmarshal(r.Body, &b)
	_, ok := b[name]
	return ok
}

// LastContent is the content of the last message of the request.
func (r FakeLLMRequest) LastContent() string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Content
}

// FakeLLMMessage is a message of a request. A content of parts has its
// text parts joined in Content and its images' URLs in Images.
type FakeLLMMessage struct {
	Role       string `json:"role"`
	Content    string `json:"content"`
	Images     []string
	ToolCallID string `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// UnmarshalJSON reads a content string or an array of content parts.
func (m *FakeLLMMessage) UnmarshalJSON(b []byte) error {
	type plain FakeLLMMessage
	var w struct {
		plain
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = FakeLLMMessage(w.plain)
	if len(w.Content) == 0 || w.Content[0] != '[' {
		if len(w.Content) == 0 || string(w.Content) == "null" {
			return nil
		}
		return json.Unmarshal(w.Content, &m.Content)
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal(w.Content, &parts); err != nil {
		return err
	}
	var text []string
	for _, p := range parts {
		switch p.Type {
		case "text":
			text = append(text, p.Text)
		case "image_url":
			m.Images = append(m.Images, p.ImageURL.URL)
		}
	}
	m.Content = strings.Join(text, "\n")
	return nil
}

// StartFakeLLM serves reply on 127.0.0.1; n counts requests from 0.
func StartFakeLLM(t testing.TB, reply func(req FakeLLMRequest, n int) (status int, body any)) *FakeLLM {
	t.Helper()
	f := &FakeLLM{reply: reply}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" && r.URL.Path != "/v1/completions" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req FakeLLMRequest
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body, req.Path, req.Header = b, r.URL.Path, r.Header.Clone()
		f.mu.Lock()
		n := len(f.requests)
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		status, body := f.reply(req, n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if raw, ok := body.([]byte); ok {
			_, _ = w.Write(raw)
			return
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL + "/v1"
	return f
}

// Requests returns the requests received so far.
func (f *FakeLLM) Requests() []FakeLLMRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FakeLLMRequest(nil), f.requests...)
}

// ToolCallReply is a chat completion whose message calls one tool.
func ToolCallReply(id, name string, args any) map[string]any {
	a, _ := json.Marshal(args)
	return chatReply(map[string]any{
		"role": "assistant", "content": "",
		"tool_calls": []any{map[string]any{"id": id, "type": "function", "function": map[string]any{"name": name, "arguments": string(a)}}},
	}, "tool_calls")
}

// RawToolCallReply is ToolCallReply with the arguments text as given
// (possibly malformed JSON).
func RawToolCallReply(id, name, args string) map[string]any {
	return chatReply(map[string]any{
		"role": "assistant", "content": "",
		"tool_calls": []any{map[string]any{"id": id, "type": "function", "function": map[string]any{"name": name, "arguments": args}}},
	}, "tool_calls")
}

// AnswerReply is a chat completion answering in text.
func AnswerReply(content string) map[string]any {
	return chatReply(map[string]any{"role": "assistant", "content": content}, "stop")
}

func chatReply(msg map[string]any, finish string) map[string]any {
	return map[string]any{
		"id": "chatcmpl-test", "object": "chat.completion", "model": "fake",
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]any{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
	}
}

// CompletionReply is a /v1/completions answer whose choice has text.
func CompletionReply(text string) map[string]any {
	return map[string]any{
		"id": "cmpl-test", "object": "text_completion", "model": "fake",
		"choices": []any{map[string]any{"index": 0, "text": text, "finish_reason": "stop", "logprobs": nil}},
		"usage":   map[string]any{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
	}
}

// WithTokens adds vLLM's logprobs and token ids (return_token_ids) to a
// reply's first choice, as vLLM places them: the prompt's ids on the
// response (chat) or the choice (completions), the completion's on the
// choice.
func WithTokens(reply map[string]any, logprobs any, promptIDs, completionIDs []int) map[string]any {
	ch := reply["choices"].([]any)[0].(map[string]any)
	ch["logprobs"], ch["token_ids"] = logprobs, completionIDs
	if _, completion := ch["text"]; completion {
		ch["prompt_token_ids"] = promptIDs
	} else {
		reply["prompt_token_ids"] = promptIDs
	}
	return reply
}

// ErrorReply is an error body for a non-200 status.
func ErrorReply(msg string) map[string]any {
	return map[string]any{"error": map[string]any{"message": fmt.Sprint(msg)}}
}

// Context overflow answers (HTTP 400) of real servers, verbatim.
const (
	// LlamaContextExceeded is llama.cpp's llama-server's.
	LlamaContextExceeded = `{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4133,"n_ctx":4096}}`
	// OpenAIContextExceeded is OpenAI's.
	OpenAIContextExceeded = `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`
	// VLLMContextExceeded is vLLM's.
	VLLMContextExceeded = `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (3976 in the messages, 1024 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}`
)
