package testsupport

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// FakeLLM is a local OpenAI-compatible chat server standing in for the
// external model API. Reply decides each answer from the request.
type FakeLLM struct {
	URL string // base URL, ending in /v1

	mu       sync.Mutex
	requests []FakeLLMRequest
	reply    func(req FakeLLMRequest, n int) (status int, body any)
}

// FakeLLMRequest is the part of a chat request tests look at.
type FakeLLMRequest struct {
	// Body is the request body as received.
	Body     []byte `json:"-"`
	Model    string `json:"model"`
	Messages []struct {
		Role       string `json:"role"`
		Content    string `json:"content"`
		ToolCallID string `json:"tool_call_id"`
		ToolCalls  []struct {
			ID       string `json:"id"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// LastContent is the content of the last message of the request.
func (r FakeLLMRequest) LastContent() string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Content
}

// StartFakeLLM serves reply on 127.0.0.1; n counts requests from 0.
func StartFakeLLM(t testing.TB, reply func(req FakeLLMRequest, n int) (status int, body any)) *FakeLLM {
	t.Helper()
	f := &FakeLLM{reply: reply}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req FakeLLMRequest
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Body = b
		f.mu.Lock()
		n := len(f.requests)
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		status, body := f.reply(req, n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
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

// ErrorReply is an error body for a non-200 status.
func ErrorReply(msg string) map[string]any {
	return map[string]any{"error": map[string]any{"message": fmt.Sprint(msg)}}
}
