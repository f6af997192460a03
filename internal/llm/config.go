package llm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultRequestTimeout = 60 * time.Second
	DefaultMaxRetries     = 3
	DefaultMaxConcurrent  = 4
	DefaultBackoffBase    = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultMaxRetryAfter  = 60 * time.Second
)

// chatPath is appended to the base URL.
const chatPath = "/chat/completions"

// Config configures a Client. Only BaseURL and Model are required.
type Config struct {
	// BaseURL is the API root up to and including the version prefix, as the
	// OpenAI SDKs expect it: "http://vllm:8000/v1", "http://ollama:11434/v1",
	// "https://api.openai.com/v1". The client appends "/chat/completions".
	// Forgiving forms: a trailing slash is ignored; a URL that already ends in
	// "/chat/completions" is used as is; a bare host with no path at all
	// ("http://vllm:8000", as VLLM_URL is often written) gets "/v1" added,
	// because vLLM, Ollama and OpenAI all serve the API there. Any other path
	// ("https://openrouter.ai/api/v1") is kept untouched.
	BaseURL string
	// Model is the model name sent with every request ("Qwen/Qwen2.5-7B-Instruct").
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer <key>". It never
	// appears in errors (server bodies that echo it are redacted) or in the
	// slog value of the Config.
	APIKey string

	// RequestTimeout bounds one HTTP attempt, from sending the request to
	// reading the whole body. Default 60s. The caller's ctx bounds the whole
	// call across retries. Too low cuts off long generations on a busy GPU;
	// too high lets a wedged server hold an agent step for that long.
	RequestTimeout time.Duration
	// MaxRetries is how many times a failed attempt is retried (so at most
	// MaxRetries+1 attempts). Default 3; set a negative value for no retries.
	MaxRetries int
	// MaxConcurrent bounds in-flight HTTP requests through this Client (a
	// semaphore; a call backing off between attempts does not hold a slot).
	// Default 4. Share one Client per process so the bound is per process.
	MaxConcurrent int
	// BackoffBase is the first retry delay; it doubles per retry, up to
	// BackoffMax, and each delay is jittered to between half and all of its
	// value so that replicas failing together do not retry together.
	// Defaults 500ms and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// MaxRetryAfter caps how long a server's Retry-After header can make a
	// call wait before its next attempt. Default 60s.
	MaxRetryAfter time.Duration

	// Temperature is sent when non-nil (Go 1.26: Temperature: new(0.2));
	// nil leaves the server's default.
	Temperature *float64
	// MaxTokens is sent as max_tokens when > 0.
	MaxTokens int

	// ToolCallsFromContent makes Chat recover a tool call that the model
	// wrote as JSON in its content instead of in tool_calls, as small models
	// often do (see ExtractToolCalls for the accepted shapes). Only calls
	// naming one of the offered tools are recovered; Response.FromContent
	// says when it happened. Default false: the content is returned as is.
	ToolCallsFromContent bool

	// HTTPClient sends the requests. Default: a client with its own
	// keep-alive transport sized for MaxConcurrent. Its Timeout should be 0:
	// RequestTimeout applies per attempt.
	HTTPClient *http.Client
	// Observer, when set, is told about every attempt.
	Observer Observer
}

// LogValue implements slog.LogValuer: the Config without its API key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("model", c.Model),
		slog.Bool("api_key_set", c.APIKey != ""),
		slog.Duration("request_timeout", c.RequestTimeout),
		slog.Int("max_retries", c.MaxRetries),
		slog.Int("max_concurrent", c.MaxConcurrent),
	)
}

// String is the same redacted view, for fmt's %v and %+v.
func (c Config) String() string { return c.LogValue().String() }

// GoString keeps the key out of %#v too.
func (c Config) GoString() string { return "llm.Config" + c.String() }

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	} else if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return c
}

// ChatURL returns the chat completions endpoint for a base URL, following the
// rules documented on Config.BaseURL.
func ChatURL(base string) (string, error) {
	base = strings.TrimSpace(base)
	if base == "" {
		return "", errors.New("llm: base URL is empty (set LLM_BASE_URL, e.g. http://vllm:8000/v1)")
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("llm: base URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("llm: base URL %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("llm: base URL %q has no host", base)
	}
	if u.User != nil {
		return "", fmt.Errorf("llm: base URL must not carry credentials; use the API key setting")
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
		p = "/v1" + chatPath
	case strings.HasSuffix(p, chatPath):
	default:
		p += chatPath
	}
	u.Path = p
	u.RawPath = ""
	return u.String(), nil
}
