package llm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawServer records each request's path and body and answers with body.
type rawServer struct {
	mu     sync.Mutex
	paths  []string
	bodies [][]byte
}

func startRaw(t *testing.T, body string) (*rawServer, string) {
	t.Helper()
	s := &rawServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.paths, s.bodies = append(s.paths, r.URL.Path), append(s.bodies, b)
		s.mu.Unlock()
		writeJSON(w, 200, body)
	}))
	t.Cleanup(srv.Close)
	return s, srv.URL + "/v1"
}

func (s *rawServer) last(t *testing.T) (string, map[string]json.RawMessage) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bodies) == 0 {
		t.Fatal("no request received")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(s.bodies[len(s.bodies)-1], &m); err != nil {
		t.Fatal(err)
	}
	return s.paths[len(s.paths)-1], m
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Model = "m"
	cfg.RequestTimeout = 10 * time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func do(t *testing.T, c *Client, req Request) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

var twoMessages = []Message{SystemMessage("You write Python."), UserMessage("10th fibonacci number")}

func TestModesRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode, api, err string
	}{
		{ToolModeNative, APICompletions, "LLM_TOOL_MODE=text"},
		{"", APICompletions, "LLM_TOOL_MODE=text"}, // native is the default
		{"json", APIChat, "LLM_TOOL_MODE"},
		{ToolModeText, "responses", "LLM_API"},
	}
	for _, tt := range tests {
		_, err := New(Config{BaseURL: "http://h/v1", Model: "m", ToolMode: tt.mode, API: tt.api})
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("mode %q api %q: err %v, want one naming %s", tt.mode, tt.api, err, tt.err)
		}
	}
	c, err := New(Config{BaseURL: "http://h/v1/chat/completions", Model: "m", ToolMode: ToolModeText, API: APICompletions})
	if err != nil {
		t.Fatal(err)
	}
	if c.URL() != "http://h/v1/completions" {
		t.Errorf("completions URL %q", c.URL())
	}
}

func TestCompletionsURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://vllm:8000/v1":                  "http://vllm:8000/v1/completions",
		"http://vllm:8000":                     "http://vllm:8000/v1/completions",
		"http://vllm:8000/v1/completions":      "http://vllm:8000/v1/completions",
		"http://vllm:8000/v1/chat/completions": "http://vllm:8000/v1/completions",
	} {
		if got, err := CompletionsURL(in); err != nil || got != want {
			t.Errorf("CompletionsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, _ := ChatURL("http://vllm:8000/v1/completions"); got != "http://vllm:8000/v1/chat/completions" {
		t.Errorf("ChatURL of a completions URL = %q", got)
	}
}

func TestParamsFor(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	s := func(v int64) *int64 { return &v }
	enc := func(p Params) string { b, _ := json.Marshal(p); return string(b) }
	tests := []struct {
		name           string
		cfg            Config
		samples, index int
		override       Params
		want           string
	}{
		{"one sample is greedy", Config{}, 1, 0, Params{}, `{"temperature":0}`},
		{"several samples sample", Config{}, 4, 2, Params{}, `{"temperature":1}`},
		{"configured temperature wins over the default", Config{Temperature: f(0.7)}, 4, 0, Params{}, `{"temperature":0.7}`},
		{"the task wins over the configuration", Config{Temperature: f(0.7), TopP: f(0.9), MaxTokens: 512, Seed: s(5)}, 1, 0,
			Params{Temperature: f(0.2), TopP: f(0.5), MaxTokens: i(64), Seed: s(100)}, `{"temperature":0.2,"top_p":0.5,"max_tokens":64,"seed":100}`},
		{"attempt k sends seed+k", Config{Seed: s(40)}, 4, 3, Params{}, `{"temperature":1,"seed":43}`},
		{"the task's seed plus k", Config{Seed: s(40)}, 4, 2, Params{Seed: s(7)}, `{"temperature":1,"seed":9}`},
		{"configuration fields", Config{TopP: f(0.95), MaxTokens: 2048}, 1, 0, Params{}, `{"temperature":0,"top_p":0.95,"max_tokens":2048}`},
	}
	for _, tt := range tests {
		if got := enc(tt.cfg.ParamsFor(tt.samples, tt.index, tt.override)); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// The override's seed is not changed in place.
	seed := s(7)
	Config{}.ParamsFor(2, 1, Params{Seed: seed})
	if *seed != 7 {
		t.Errorf("override seed changed to %d", *seed)
	}
}

func TestChatSendsParamsAndLogprobs(t *testing.T) {
	t.Parallel()
	body := `{"id":"x","prompt_token_ids":[1,2,3],"choices":[{"index":0,"message":{"role":"assistant","content":"55"},"finish_reason":"stop",
		"logprobs":{"content":[{"token":"55","logprob":-0.01,"top_logprobs":[]}]},"token_ids":[20,21]}],
		"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	srv, base := startRaw(t, body)
	c := newClient(t, Config{BaseURL: base, Logprobs: true})
	seed, temp, max := int64(9), 0.5, 77
	resp := do(t, c, Request{Messages: twoMessages, Tools: []Tool{runPython}, Params: Params{Temperature: &temp, MaxTokens: &max, Seed: &seed}})
	path, req := srv.last(t)
	if path != "/v1/chat/completions" {
		t.Errorf("path %s", path)
	}
	for k, want := range map[string]string{"temperature": "0.5", "max_tokens": "77", "seed": "9", "logprobs": "true", "return_token_ids": "true"} {
		if string(req[k]) != want {
			t.Errorf("request %s = %s, want %s", k, req[k], want)
		}
	}
	if _, ok := req["top_p"]; ok {
		t.Error("top_p sent though unset")
	}
	if _, ok := req["tools"]; !ok {
		t.Error("native mode sent no tools")
	}
	if string(resp.Logprobs) != `{"content":[{"token":"55","logprob":-0.01,"top_logprobs":[]}]}` {
		t.Errorf("logprobs %s", resp.Logprobs)
	}
	if !slices.Equal(resp.PromptTokenIDs, []int{1, 2, 3}) || !slices.Equal(resp.CompletionTokenIDs, []int{20, 21}) {
		t.Errorf("token ids %v %v", resp.PromptTokenIDs, resp.CompletionTokenIDs)
	}
	if resp.FinishReason != "stop" || resp.Usage.TotalTokens != 5 {
		t.Errorf("finish %q usage %+v", resp.FinishReason, resp.Usage)
	}

	// Without Logprobs neither extension is asked for.
	c = newClient(t, Config{BaseURL: base})
	do(t, c, Request{Messages: twoMessages})
	if _, req = srv.last(t); req["logprobs"] != nil || req["return_token_ids"] != nil {
		t.Errorf("logprobs asked for without Logprobs: %s %s", req["logprobs"], req["return_token_ids"])
	}
}

func TestTextModeSendsNoTools(t *testing.T) {
	t.Parallel()
	srv, base := startRaw(t, okBody)
	c := newClient(t, Config{BaseURL: base, ToolMode: ToolModeText})
	resp := do(t, c, Request{Messages: twoMessages, Tools: []Tool{runPython}})
	if _, req := srv.last(t); req["tools"] != nil {
		t.Errorf("text mode sent tools: %s", req["tools"])
	}
	if resp.Exchange.Tools != nil {
		t.Errorf("exchange records tools %s", resp.Exchange.Tools)
	}
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	choice := `{"index":0,"text":" ` + "```python\\nprint(55)\\n```" + `","logprobs":{"tokens":[" x"],"token_logprobs":[-0.5]},"finish_reason":"stop","token_ids":[7,8],"prompt_token_ids":[1,2]}`
	srv, base := startRaw(t, `{"id":"cmpl","object":"text_completion","choices":[`+choice+`],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`)
	c := newClient(t, Config{BaseURL: base, ToolMode: ToolModeText, API: APICompletions, Logprobs: true})
	temp := 0.0
	resp := do(t, c, Request{Messages: twoMessages, Tools: []Tool{runPython}, Params: Params{Temperature: &temp}})
	path, req := srv.last(t)
	if path != "/v1/completions" {
		t.Errorf("path %s", path)
	}
	var prompt string
	_ = json.Unmarshal(req["prompt"], &prompt)
	want := "System: You write Python.\n\nUser: 10th fibonacci number\n\nAssistant:"
	if prompt != want || resp.Exchange.Prompt != want {
		t.Errorf("prompt %q (recorded %q), want %q", prompt, resp.Exchange.Prompt, want)
	}
	if req["messages"] != nil || req["tools"] != nil {
		t.Error("a completions request carries messages or tools")
	}
	if string(req["logprobs"]) != "1" || string(req["return_token_ids"]) != "true" || string(req["temperature"]) != "0" {
		t.Errorf("logprobs %s return_token_ids %s temperature %s", req["logprobs"], req["return_token_ids"], req["temperature"])
	}
	var stop []string
	_ = json.Unmarshal(req["stop"], &stop)
	if strings.Join(stop, "|") != strings.Join(PromptStop, "|") {
		t.Errorf("stop %q", stop)
	}
	if resp.Message.Role != RoleAssistant || resp.Message.Content != " ```python\nprint(55)\n```" || len(resp.Message.ToolCalls) != 0 {
		t.Errorf("message %+v", resp.Message)
	}
	if string(resp.Exchange.Reply) != choice {
		t.Errorf("reply %s, want the choice as sent %s", resp.Exchange.Reply, choice)
	}
	if len(resp.Exchange.Messages) != 2 || string(resp.Exchange.Messages[1]) != `{"role":"user","content":"10th fibonacci number"}` {
		t.Errorf("exchange messages %s", resp.Exchange.Messages)
	}
	if !slices.Equal(resp.PromptTokenIDs, []int{1, 2}) || !slices.Equal(resp.CompletionTokenIDs, []int{7, 8}) || string(resp.Logprobs) != `{"tokens":[" x"],"token_logprobs":[-0.5]}` {
		t.Errorf("token ids %v %v logprobs %s", resp.PromptTokenIDs, resp.CompletionTokenIDs, resp.Logprobs)
	}
}

// Each completions prompt starts with the previous prompt and its
// completion: the model's own text is never re-rendered.
func TestRenderPromptExtendsThePreviousPrompt(t *testing.T) {
	t.Parallel()
	msgs := []Message{SystemMessage("sys"), UserMessage("task")}
	p1 := RenderPrompt(msgs)
	completion := " ```python\nprint(1)\n```"
	msgs = append(msgs, Message{Role: RoleAssistant, Content: completion}, UserMessage("Result of run_python:\n1"))
	p2 := RenderPrompt(msgs)
	if !strings.HasPrefix(p2, p1+completion) {
		t.Errorf("second prompt %q does not start with the first %q and its completion", p2, p1)
	}
	if !strings.HasSuffix(p2, "\n\nUser: Result of run_python:\n1\n\nAssistant:") {
		t.Errorf("second prompt ends %q", p2)
	}
}
