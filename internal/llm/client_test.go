package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testKey = "sk-test-SECRET-0123456789"

// fake is a local OpenAI-compatible server whose answers a test scripts.
type fake struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []fakeRequest
}

type fakeRequest struct {
	auth string
	path string
	body chatRequest
}

// bundle is what setup returns.
type bundle struct {
	client   *Client
	fake     *fake
	mu       sync.Mutex
	attempts []Attempt
	waits    []time.Duration
}

func (b *bundle) observed() []Attempt {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Attempt(nil), b.attempts...)
}

func (b *bundle) recordedWaits() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Duration(nil), b.waits...)
}

func (f *fake) recorded() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

// setup starts a fake server running handler (n is the 1-based request
// number) and a client for it. Backoff sleeps are recorded, not slept.
func setup(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, n int), mod func(*Config)) *bundle {
	t.Helper()
	f := &fake{}
	var count atomic.Int64
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chatRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{auth: r.Header.Get("Authorization"), path: r.URL.Path, body: req})
		f.mu.Unlock()
		handler(w, r, int(count.Add(1)))
	}))
	t.Cleanup(f.srv.Close)

	b := &bundle{fake: f}
	cfg := Config{
		BaseURL:        f.srv.URL + "/v1",
		Model:          "test-model",
		APIKey:         testKey,
		RequestTimeout: 10 * time.Second,
		BackoffBase:    time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
		Observer: ObserverFunc(func(a Attempt) {
			b.mu.Lock()
			b.attempts = append(b.attempts, a)
			b.mu.Unlock()
		}),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error {
		b.mu.Lock()
		b.waits = append(b.waits, d)
		b.mu.Unlock()
		return ctx.Err()
	}
	b.client = c
	return b
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// completion builds a response body with one choice whose message is msg
// (raw JSON).
func completion(msg, finish string) string {
	return fmt.Sprintf(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":%s,"finish_reason":%q}],
		"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`, msg, finish)
}

var okBody = completion(`{"role":"assistant","content":"55"}`, "stop")

var runPython = NewTool("run_python", "Run a Python program and return its output.",
	`{"type":"object","properties":{"code":{"type":"string"}},"required":["code"]}`)

func chat(t *testing.T, c *Client) (Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Chat(ctx, []Message{SystemMessage("You write Python."), UserMessage("10th fibonacci number")}, []Tool{runPython})
}

func TestChatAnswers(t *testing.T) {
	t.Parallel()
	type args struct {
		Code string `json:"code"`
	}
	tests := []struct {
		name        string
		body        string
		fromContent bool
		check       func(t *testing.T, r Response)
	}{
		{
			name: "plain answer",
			body: okBody,
			check: func(t *testing.T, r Response) {
				if r.Message.Content != "55" || r.Message.Role != RoleAssistant || r.FinishReason != "stop" {
					t.Errorf("got %+v", r)
				}
				if len(r.Message.ToolCalls) != 0 {
					t.Errorf("unexpected tool calls %+v", r.Message.ToolCalls)
				}
			},
		},
		{
			name: "tool call",
			body: completion(`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
				"function":{"name":"run_python","arguments":"{\"code\":\"print(55)\"}"}}]}`, "tool_calls"),
			check: func(t *testing.T, r Response) {
				if r.FinishReason != "tool_calls" || len(r.Message.ToolCalls) != 1 {
					t.Fatalf("got %+v", r)
				}
				tc := r.Message.ToolCalls[0]
				if tc.ID != "call_1" || tc.Type != "function" || tc.Function.Name != "run_python" {
					t.Errorf("tool call %+v", tc)
				}
				if err := ValidateToolCall(tc, []Tool{runPython}); err != nil {
					t.Errorf("ValidateToolCall: %v", err)
				}
				var a args
				if err := ParseArguments(tc, &a); err != nil || a.Code != "print(55)" {
					t.Errorf("ParseArguments = %v, %+v", err, a)
				}
			},
		},
		{
			name: "malformed arguments returned as is",
			body: completion(`{"role":"assistant","content":"","tool_calls":[{"id":"call_2","type":"function",
				"function":{"name":"run_python","arguments":"{\"code\": print(55)"}}]}`, "tool_calls"),
			check: func(t *testing.T, r Response) {
				tc := r.Message.ToolCalls[0]
				if tc.Function.Arguments != `{"code": print(55)` {
					t.Errorf("arguments changed: %q", tc.Function.Arguments)
				}
				var a args
				err := ParseArguments(tc, &a)
				var tce *ToolCallError
				if !errors.As(err, &tce) || tce.ID != "call_2" || tce.Tool != "run_python" {
					t.Fatalf("ParseArguments error = %v, want *ToolCallError", err)
				}
				if !strings.Contains(err.Error(), "not valid JSON") || !strings.Contains(err.Error(), "print(55)") {
					t.Errorf("error does not say what is wrong: %v", err)
				}
			},
		},
		{
			name: "unknown tool and missing id",
			body: completion(`{"role":"assistant","content":"","tool_calls":[{"function":{"name":"rm_rf","arguments":"{}"}}]}`, "tool_calls"),
			check: func(t *testing.T, r Response) {
				tc := r.Message.ToolCalls[0]
				if tc.ID == "" || tc.Type != "function" {
					t.Errorf("id/type not filled: %+v", tc)
				}
				err := ValidateToolCall(tc, []Tool{runPython})
				if err == nil || !strings.Contains(err.Error(), `"rm_rf"`) || !strings.Contains(err.Error(), "run_python") {
					t.Errorf("ValidateToolCall = %v, want unknown tool listing run_python", err)
				}
				if m := ToolResult(tc, err.Error()); m.ToolCallID != tc.ID || m.Role != RoleTool {
					t.Errorf("ToolResult = %+v", m)
				}
			},
		},
		{
			name: "arguments sent as an object",
			body: completion(`{"role":"assistant","content":"","tool_calls":[{"id":"c","type":"function",
				"function":{"name":"run_python","arguments":{"code":"print(1)"}}}]}`, "tool_calls"),
			check: func(t *testing.T, r Response) {
				var a args
				if err := ParseArguments(r.Message.ToolCalls[0], &a); err != nil || a.Code != "print(1)" {
					t.Errorf("ParseArguments = %v, %+v", err, a)
				}
			},
		},
		{
			name:        "tool call in content recovered when enabled",
			fromContent: true,
			body:        completion(`{"role":"assistant","content":"Sure:\n`+"```"+`json\n{\"name\": \"run_python\", \"arguments\": {\"code\": \"print(2)\"}}\n`+"```"+`"}`, "stop"),
			check: func(t *testing.T, r Response) {
				if !r.FromContent || len(r.Message.ToolCalls) != 1 {
					t.Fatalf("not recovered: %+v", r)
				}
				var a args
				if err := ParseArguments(r.Message.ToolCalls[0], &a); err != nil || a.Code != "print(2)" {
					t.Errorf("ParseArguments = %v, %+v", err, a)
				}
			},
		},
		{
			name: "tool call in content left alone by default",
			body: completion(`{"role":"assistant","content":"{\"name\": \"run_python\", \"arguments\": {\"code\": \"print(2)\"}}"}`, "stop"),
			check: func(t *testing.T, r Response) {
				if r.FromContent || len(r.Message.ToolCalls) != 0 {
					t.Errorf("recovered without being asked: %+v", r)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, tt.body)
			}, func(c *Config) { c.ToolCallsFromContent = tt.fromContent })
			r, err := chat(t, b.client)
			if err != nil {
				t.Fatalf("Chat: %v", err)
			}
			if r.Attempts != 1 || r.Usage != (Usage{11, 7, 18}) {
				t.Errorf("attempts %d usage %+v", r.Attempts, r.Usage)
			}
			tt.check(t, r)
		})
	}
}

func TestChatRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, okBody) },
		func(c *Config) { c.Temperature = new(0.0); c.MaxTokens = 256 })
	if _, err := chat(t, b.client); err != nil {
		t.Fatal(err)
	}
	reqs := b.fake.recorded()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.path != "/v1/chat/completions" {
		t.Errorf("path %q", r.path)
	}
	if r.auth != "Bearer "+testKey {
		t.Errorf("Authorization %q", r.auth)
	}
	if r.body.Model != "test-model" || len(r.body.Messages) != 2 || len(r.body.Tools) != 1 ||
		r.body.Tools[0].Function.Name != "run_python" || r.body.MaxTokens == nil || *r.body.MaxTokens != 256 || r.body.Stream {
		t.Errorf("body %+v", r.body)
	}
	if r.body.Temperature == nil || *r.body.Temperature != 0 {
		t.Errorf("temperature 0 not sent: %v", r.body.Temperature)
	}
}

func TestNoAuthorizationWithoutKey(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, okBody) },
		func(c *Config) { c.APIKey = "" })
	if _, err := chat(t, b.client); err != nil {
		t.Fatal(err)
	}
	if a := b.fake.recorded()[0].auth; a != "" {
		t.Errorf("Authorization %q sent without a key", a)
	}
}

// echoAuth answers status with a body quoting the Authorization header, as
// a careless proxy might.
func echoAuth(status int) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSON(w, status, fmt.Sprintf(`{"error":{"message":"bad request, got header %s"}}`, r.Header.Get("Authorization")))
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxRetries int
		mod        func(*Config)
		handler    func(w http.ResponseWriter, r *http.Request, n int)
		wantErr    string // substring; "" = success
		wantStatus int    // APIError status expected in the error
		requests   int
		waits      []time.Duration // exact waits, nil = don't check values
	}{
		{
			name: "500s then success",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= 2 {
					writeJSON(w, 500, `{"error":"boom"}`)
					return
				}
				writeJSON(w, 200, okBody)
			},
			requests: 3,
		},
		{
			name: "429 with Retry-After then success",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Retry-After", "7")
					writeJSON(w, 429, `{"error":"slow down"}`)
					return
				}
				writeJSON(w, 200, okBody)
			},
			requests: 2,
			waits:    []time.Duration{7 * time.Second},
		},
		{
			name: "Retry-After capped by MaxRetryAfter",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Retry-After", "3600")
					writeJSON(w, 503, `overloaded`)
					return
				}
				writeJSON(w, 200, okBody)
			},
			mod:      func(c *Config) { c.MaxRetryAfter = 2 * time.Second },
			requests: 2,
			waits:    []time.Duration{2 * time.Second},
		},
		{
			name:       "503 forever gives up after MaxRetries",
			maxRetries: 2,
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 503, `{"error":"overloaded"}`)
			},
			wantErr:    "after 3 attempts",
			wantStatus: 503,
			requests:   3,
		},
		{
			name:       "no retries when MaxRetries is negative",
			maxRetries: -1,
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 502, `bad gateway`)
			},
			wantErr:    "502",
			wantStatus: 502,
			requests:   1,
		},
		{
			name:       "400 not retried",
			handler:    echoAuth(400),
			wantErr:    "400 Bad Request",
			wantStatus: 400,
			requests:   1,
		},
		{
			name:       "401 not retried",
			handler:    echoAuth(401),
			wantErr:    "401",
			wantStatus: 401,
			requests:   1,
		},
		{
			name:       "500 echoing the key, retries exhausted",
			maxRetries: 1,
			handler:    echoAuth(500),
			wantErr:    "[redacted]",
			wantStatus: 500,
			requests:   2,
		},
		{
			name: "200 with an error object",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, `{"error":{"message":"model not loaded"}}`)
			},
			wantErr:    "model not loaded",
			wantStatus: 200,
			requests:   1,
		},
		{
			name: "200 that is not JSON",
			handler: func(w http.ResponseWriter, r *http.Request, n int) {
				writeJSON(w, 200, `<html>proxy login</html>`)
			},
			wantErr:  "proxy login",
			requests: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.handler, func(c *Config) {
				c.MaxRetries = tt.maxRetries
				if tt.mod != nil {
					tt.mod(c)
				}
			})
			r, err := chat(t, b.client)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Chat: %v", err)
				}
				if r.Message.Content != "55" || r.Attempts != tt.requests {
					t.Errorf("response %+v", r)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				var ae *APIError
				if tt.wantStatus != 0 && (!errors.As(err, &ae) || ae.Status != tt.wantStatus) {
					t.Errorf("error %v: want *APIError with status %d", err, tt.wantStatus)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Errorf("API key leaked in error: %v", err)
				}
			}
			if got := len(b.fake.recorded()); got != tt.requests {
				t.Errorf("server saw %d requests, want %d", got, tt.requests)
			}
			att := b.observed()
			if len(att) != tt.requests {
				t.Fatalf("observer saw %d attempts, want %d", len(att), tt.requests)
			}
			for i, a := range att {
				last := i == len(att)-1
				if a.N != i+1 || a.Retry == last {
					t.Errorf("attempt %d: %+v", i, a)
				}
				if !last && a.Err == nil {
					t.Errorf("attempt %d retried without an error", i)
				}
			}
			if tt.wantErr == "" && att[len(att)-1].Usage.TotalTokens != 18 {
				t.Errorf("usage not observed: %+v", att[len(att)-1])
			}
			waits := b.recordedWaits()
			if len(waits) != tt.requests-1 {
				t.Errorf("%d waits for %d requests", len(waits), tt.requests)
			}
			if tt.waits != nil && fmt.Sprint(waits) != fmt.Sprint(tt.waits) {
				t.Errorf("waits %v, want %v", waits, tt.waits)
			}
		})
	}
}

func TestErrorsNeverContainKey(t *testing.T) {
	t.Parallel()
	// The key is also kept out of a transport error and the Config's string.
	c, err := New(Config{BaseURL: "http://127.0.0.1:1/v1", Model: "m", APIKey: testKey, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = chat(t, c)
	if err == nil || strings.Contains(err.Error(), testKey) {
		t.Errorf("error %v", err)
	}
	for _, s := range []string{c.Config().String(), fmt.Sprint(c.Config()), fmt.Sprintf("%+v", c.Config()), fmt.Sprintf("%#v", c.Config())} {
		if strings.Contains(s, testKey) {
			t.Errorf("key in %q", s)
		}
	}
}

// slowHandler holds each request until the client gives up on it.
func slowHandler(started chan<- struct{}) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		if started != nil {
			select {
			case started <- struct{}{}:
			default:
			}
		}
		<-r.Context().Done()
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, slowHandler(nil), func(c *Config) {
		c.RequestTimeout = 50 * time.Millisecond
		c.MaxRetries = 1
	})
	_, err := chat(t, b.client)
	if !errors.Is(err, ErrRequestTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want ErrRequestTimeout", err)
	}
	if n := len(b.fake.recorded()); n != 2 {
		t.Errorf("%d requests, want 2 (timeouts are retried)", n)
	}
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	t.Run("in flight", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{}, 1)
		b := setup(t, slowHandler(started), nil)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		_, err := b.client.Chat(ctx, []Message{UserMessage("hi")}, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
		if n := len(b.fake.recorded()); n != 1 {
			t.Errorf("%d requests after cancel, want 1", n)
		}
	})
	t.Run("waiting for a slot", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{}, 1)
		b := setup(t, slowHandler(started), func(c *Config) { c.MaxConcurrent = 1 })
		ctx1, cancel1 := context.WithCancel(context.Background())
		defer cancel1()
		done1 := make(chan error, 1)
		go func() {
			_, err := b.client.Chat(ctx1, []Message{UserMessage("first")}, nil)
			done1 <- err
		}()
		<-started // the first call holds the only slot until cancel1
		ctx2, cancel2 := context.WithCancel(context.Background())
		cancel2()
		if _, err := b.client.Chat(ctx2, []Message{UserMessage("second")}, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("second call: %v, want context.Canceled", err)
		}
		cancel1()
		if err := <-done1; !errors.Is(err, context.Canceled) {
			t.Errorf("first call: %v", err)
		}
		if n := len(b.fake.recorded()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
		if n := len(b.observed()); n != 1 {
			t.Errorf("%d attempts observed, want 1 (the unsent one is not a request)", n)
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{}, 1)
		b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 500, `{}`)
			started <- struct{}{}
		}, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Hour, time.Hour })
		b.client.sleep = sleepCtx // really sleep: an hour unless cancelled
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		_, err := b.client.Chat(ctx, []Message{UserMessage("hi")}, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline shorter than the backoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Retry-After", "30")
			writeJSON(w, 429, `{"error":"rate limited"}`)
		}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := b.client.Chat(ctx, []Message{UserMessage("hi")}, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != 429 || !strings.Contains(err.Error(), "no time left") {
			t.Fatalf("error = %v, want the 429 without waiting", err)
		}
		if w := b.recordedWaits(); len(w) != 0 {
			t.Errorf("slept %v although the deadline was nearer", w)
		}
	})
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	const limit, callers = 3, 20
	var cur, peak atomic.Int64
	gate := make(chan struct{})
	var once sync.Once
	// Each request waits until `limit` requests have been in flight at once,
	// and a moment more so that a broken semaphore would let extra requests
	// in; from then on requests pass. So the peak must reach the limit, and
	// the semaphore must keep it from going past. (The pause only makes the
	// test sensitive; a slow machine cannot make a correct client fail.)
	b := setup(t, func(w http.ResponseWriter, r *http.Request, n int) {
		c := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		if c >= limit {
			once.Do(func() { time.AfterFunc(50*time.Millisecond, func() { close(gate) }) })
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		writeJSON(w, 200, okBody)
	}, func(c *Config) { c.MaxConcurrent = limit })

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := chat(t, b.client)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Chat: %v", err)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak concurrent requests %d, want exactly %d", p, limit)
	}
}

func TestChatURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{in: "http://vllm:8000/v1", want: "http://vllm:8000/v1/chat/completions"},
		{in: "http://vllm:8000/v1/", want: "http://vllm:8000/v1/chat/completions"},
		{in: "http://vllm:8000", want: "http://vllm:8000/v1/chat/completions"},
		{in: "http://vllm:8000/", want: "http://vllm:8000/v1/chat/completions"},
		{in: " http://ollama:11434/v1 ", want: "http://ollama:11434/v1/chat/completions"},
		{in: "https://openrouter.ai/api/v1", want: "https://openrouter.ai/api/v1/chat/completions"},
		{in: "http://h/v1/chat/completions", want: "http://h/v1/chat/completions"},
		{in: "http://h/v1/chat/completions/", want: "http://h/v1/chat/completions"},
		{in: "", err: "empty"},
		{in: "vllm:8000", err: "scheme"},
		{in: "ftp://h/v1", err: "scheme"},
		{in: "http:///v1", err: "no host"},
		{in: "http://user:pw@h/v1", err: "credentials"},
	}
	for _, tt := range tests {
		got, err := ChatURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ChatURL(%q) = %q, %v; want error with %q", tt.in, got, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("error leaks the password: %v", err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ChatURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{BaseURL: "http://h/v1"}); err == nil || !strings.Contains(err.Error(), "model") {
		t.Errorf("no model: %v", err)
	}
	c, err := New(Config{BaseURL: "http://h/v1", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	if cfg.RequestTimeout != DefaultRequestTimeout || cfg.MaxRetries != DefaultMaxRetries || cfg.MaxConcurrent != DefaultMaxConcurrent {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if _, err := c.Chat(context.Background(), nil, nil); err == nil {
		t.Error("Chat with no messages succeeded")
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"absent", nil, 0},
		{"seconds", map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{"fraction", map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{"zero", map[string]string{"Retry-After": "0"}, 0},
		{"negative", map[string]string{"Retry-After": "-4"}, 0},
		{"http date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"date in the past", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"huge", map[string]string{"Retry-After": "1e300"}, maxRetryAfterSeconds * time.Second},
		{"ms wins", map[string]string{"Retry-After": "3", "Retry-After-Ms": "250"}, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		h := http.Header{}
		for k, v := range tt.header {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != tt.want {
			t.Errorf("%s: retryAfter = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c, err := New(Config{BaseURL: "http://h/v1", Model: "m", BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for n, full := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		for range 50 {
			if d := c.backoff(n, 0); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, full/2, full)
			}
		}
	}
	if d := c.backoff(1, 5*time.Second); d != 5*time.Second {
		t.Errorf("Retry-After not honoured: %v", d)
	}
}

func TestUsageAdd(t *testing.T) {
	t.Parallel()
	if got := (Usage{1, 2, 3}).Add(Usage{10, 20, 30}); got != (Usage{11, 22, 33}) {
		t.Errorf("Add = %+v", got)
	}
}
