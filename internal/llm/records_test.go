package llm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTopLogprobs: a Logprobs request asks for TopLogprobs alternatives
// (default 1: llama.cpp answers 0 with nothing and an absent number with
// 20), in each API's field; without Logprobs neither field is sent; a
// number out of range is refused.
func TestTopLogprobs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		api      string
		top      *int
		logprobs bool
		want     map[string]string // field → value sent; "" means absent
	}{
		{"chat default", APIChat, nil, true, map[string]string{"logprobs": "true", "top_logprobs": "1"}},
		{"chat zero is sent", APIChat, new(0), true, map[string]string{"logprobs": "true", "top_logprobs": "0"}},
		{"chat five", APIChat, new(5), true, map[string]string{"logprobs": "true", "top_logprobs": "5"}},
		{"chat without logprobs", APIChat, new(5), false, map[string]string{"logprobs": "", "top_logprobs": ""}},
		{"completions default", APICompletions, nil, true, map[string]string{"logprobs": "1", "top_logprobs": ""}},
		{"completions zero is sent", APICompletions, new(0), true, map[string]string{"logprobs": "0", "top_logprobs": ""}},
		{"completions without logprobs", APICompletions, new(3), false, map[string]string{"logprobs": "", "top_logprobs": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := okBody
			if tt.api == APICompletions {
				body = `{"choices":[{"index":0,"text":"55","finish_reason":"stop"}]}`
			}
			srv, base := startRaw(t, body)
			cfg := Config{BaseURL: base, API: tt.api, Logprobs: tt.logprobs, TopLogprobs: tt.top}
			if tt.api == APICompletions {
				cfg.ToolMode = ToolModeText
			}
			do(t, newClient(t, cfg), Request{Messages: twoMessages})
			_, req := srv.last(t)
			for k, want := range tt.want {
				if got := string(req[k]); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	for _, n := range []int{-1, MaxTopLogprobs + 1} {
		if _, err := New(Config{BaseURL: "http://127.0.0.1:9/v1", Model: "m", TopLogprobs: new(n)}); err == nil || !strings.Contains(err.Error(), "LLM_TOP_LOGPROBS") {
			t.Errorf("top logprobs %d: err %v, want a refusal naming LLM_TOP_LOGPROBS", n, err)
		}
	}
}

// TestServedModelRecorded: the response's own id, model and
// system_fingerprint come back with the reply.
func TestServedModelRecorded(t *testing.T) {
	t.Parallel()
	_, base := startRaw(t, `{"id":"chatcmpl-abc","object":"chat.completion","created":1,"model":"qwen2.5-7b-instruct-q4_k_m.gguf","system_fingerprint":"b6100-1a2b3c",
		"choices":[{"index":0,"message":{"role":"assistant","content":"55"},"finish_reason":"stop"}]}`)
	resp := do(t, newClient(t, Config{BaseURL: base}), Request{Messages: twoMessages})
	if resp.ID != "chatcmpl-abc" || resp.Model != "qwen2.5-7b-instruct-q4_k_m.gguf" || resp.SystemFingerprint != "b6100-1a2b3c" {
		t.Errorf("id %q model %q fingerprint %q", resp.ID, resp.Model, resp.SystemFingerprint)
	}
}

// TestRefusals: what a server's error answer becomes. A context overflow
// (each server's own words) wraps ErrContextExceeded and is not retried; a
// 4xx is a refusal, not retried; 5xx and 429 are retried. The error has
// one "llm: " prefix, and the response carries what was sent.
func TestRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		status          int
		body            string
		attempts        int
		contextExceeded bool
		refused         bool
	}{
		{"llama.cpp context overflow", 400, `{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4133,"n_ctx":4096}}`, 1, true, true},
		{"OpenAI context overflow", 400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, 1, true, true},
		{"vLLM context overflow", 400, `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}`, 1, true, true},
		{"TGI context overflow", 422, "{\"error\":\"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`\",\"error_type\":\"validation\"}", 1, true, true},
		{"an echo of the request is not read", 400, `{"error":{"message":"invalid message","param":"messages[1]: the maximum context length of my essay"}}`, 1, false, true},
		{"other bad request", 400, `{"error":{"message":"tools[0] is invalid","type":"invalid_request_error"}}`, 1, false, true},
		{"unknown model", 404, `{"error":{"message":"model not found"}}`, 1, false, true},
		{"overloaded", 503, `{"error":{"message":"the context is loading"}}`, 3, false, false},
		{"rate limited", 429, `{"error":{"message":"maximum context length is busy"}}`, 3, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, _ *http.Request, _ int) { writeJSON(w, tt.status, tt.body) },
				func(c *Config) { c.MaxRetries = 2 })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := b.client.Do(ctx, Request{Messages: twoMessages, Tools: []Tool{runPython}})
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(b.fake.recorded()); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || errors.Is(err, ErrContextExceeded) != tt.contextExceeded || ae.Refused() != tt.refused {
				t.Errorf("err %v: APIError %+v, context exceeded %v, want status %d, %v, refused %v",
					err, ae, errors.Is(err, ErrContextExceeded), tt.status, tt.contextExceeded, tt.refused)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "llm: ") || strings.Count(msg, "llm: ") != 1 {
				t.Errorf("error %q, want exactly one llm: prefix", msg)
			}
			if len(resp.Exchange.Messages) != 2 || string(resp.Exchange.Messages[1]) != `{"role":"user","content":"10th fibonacci number"}` ||
				!strings.Contains(string(resp.Exchange.Tools), "run_python") || resp.Exchange.Reply != nil {
				t.Errorf("exchange %+v, want what was sent and no reply", resp.Exchange)
			}
		})
	}
}

// TestLogprobTokens counts the tokens a logprobs object covers, in each
// server's shape.
func TestLogprobTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		n         int
		ok        bool
	}{
		{"chat", `{"content":[{"token":"a","logprob":-1},{"token":"b","logprob":-2}]}`, 2, true},
		{"chat, empty", `{"content":[]}`, 0, true},
		{"completions", `{"tokens":["a","b","c"],"token_logprobs":[-1,-2,-3]}`, 3, true},
		{"content null", `{"content":null,"refusal":null}`, 0, false},
		{"none", ``, 0, false},
		{"not an object", `[1,2]`, 0, false},
	}
	for _, tt := range tests {
		n, ok := LogprobTokens(json.RawMessage(tt.raw))
		if n != tt.n || ok != tt.ok {
			t.Errorf("%s: %d %v, want %d %v", tt.name, n, ok, tt.n, tt.ok)
		}
	}
}
