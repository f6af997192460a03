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

// MaxTopLogprobs bounds Config.TopLogprobs: OpenAI's limit, and more than
// a trainer needs (each alternative costs tens of bytes per token).
const MaxTopLogprobs = 20

// DefaultTopLogprobs is the number of alternatives asked for when
// Config.TopLogprobs is nil: 1, the least with which every server
// (llama.cpp included) returns the sampled token's logprob.
const DefaultTopLogprobs = 1

// Tool modes (Config.ToolMode, LLM_TOOL_MODE).
const (
	// ToolModeNative offers the tools in the request's tools field and reads
	// the calls from the reply's tool_calls.
	ToolModeNative = "native"
	// ToolModeText sends no tools field: the agent describes the tools in
	// its system prompt and parses the calls from the reply's text.
	ToolModeText = "text"
)

// APIs (Config.API, LLM_API).
const (
	// APIChat posts messages to /chat/completions.
	APIChat = "chat"
	// APICompletions renders the messages as one prompt (RenderPrompt) and
	// posts it to /completions, for models without a chat template. It has
	// no tool calls, so it needs ToolModeText.
	APICompletions = "completions"
)

// Sampling defaults applied when neither the task nor the configuration
// sets a temperature: greedy for a single attempt, so a rerun asks for the
// same thing; 1, the model's own distribution, when a task is sampled
// several times, so the attempts differ.
const (
	DefaultTemperature        = 0.0
	DefaultSampledTemperature = 1.0
)

// Paths appended to the base URL.
const (
	chatPath        = "/chat/completions"
	completionsPath = "/completions"
)

// Config configures a Client. Only BaseURL and Model are required.
type Config struct {
	// BaseURL is the API root up to and including the version prefix, as the
	// OpenAI SDKs expect it: "http://vllm:8000/v1", "http://ollama:11434/v1",
	// "https://api.openai.com/v1". The client appends "/chat/completions"
	// ("/completions" with APICompletions).
	// Forgiving forms: a trailing slash is ignored; a URL that already ends in
	// "/chat/completions" or "/completions" has that replaced by the API's; a bare host with no path at all
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

	// Temperature, TopP, MaxTokens and Seed are the sampling defaults
	// (LLM_TEMPERATURE, LLM_TOP_P, LLM_MAX_TOKENS, LLM_SEED). Chat sends
	// them as they are (nil or 0: not sent); agents resolve them per
	// attempt with ParamsFor, which a task's sampling overrides.
	Temperature *float64
	TopP        *float64
	// MaxTokens is sent as max_tokens when > 0.
	MaxTokens int
	Seed      *int64

	// Logprobs asks the server for the sampled tokens' logprobs and, in
	// vLLM's extension, the prompt and completion token ids
	// (return_token_ids): chat requests carry "logprobs": true and
	// "top_logprobs": TopLogprobs, completions requests "logprobs":
	// TopLogprobs, both "return_token_ids": true. For vLLM-compatible
	// servers; OpenAI's own API rejects return_token_ids, and llama.cpp
	// ignores it (no token ids come back).
	Logprobs bool
	// TopLogprobs is how many most likely alternatives per generated token
	// a Logprobs request asks for, 0..MaxTopLogprobs (LLM_TOP_LOGPROBS).
	// Default (nil) DefaultTopLogprobs. What comes back differs by server:
	// vLLM and OpenAI give the sampled token's logprob with any value, 0
	// included; llama.cpp gives nothing at all for 0 (it only copies the
	// sampled token's probability when it lists alternatives) and, when
	// the number is not sent, 20 alternatives per token (megabytes per
	// attempt).
	TopLogprobs *int

	// ToolMode is ToolModeNative (default) or ToolModeText. In text mode
	// the client never sends a tools field.
	ToolMode string
	// API is APIChat (default) or APICompletions.
	API string

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
	top := DefaultTopLogprobs
	if c.TopLogprobs != nil {
		top = *c.TopLogprobs
	}
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("model", c.Model),
		slog.Bool("api_key_set", c.APIKey != ""),
		slog.Duration("request_timeout", c.RequestTimeout),
		slog.Int("max_retries", c.MaxRetries),
		slog.Int("max_concurrent", c.MaxConcurrent),
		slog.String("tool_mode", c.ToolMode),
		slog.String("api", c.API),
		slog.Bool("logprobs", c.Logprobs),
		slog.Int("top_logprobs", top),
	)
}

// String is the same redacted view, for fmt's %v and %+v.
func (c Config) String() string { return c.LogValue().String() }

// GoString keeps the key out of %#v too.
func (c Config) GoString() string { return "llm.Config" + c.String() }

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.ToolMode == "" {
		c.ToolMode = ToolModeNative
	}
	if c.API == "" {
		c.API = APIChat
	}
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
	if c.TopLogprobs == nil {
		c.TopLogprobs = new(DefaultTopLogprobs)
	}
	return c
}

// checkModes rejects unknown tool modes and APIs, the pair the
// completions endpoint cannot serve, and a number of alternatives out of
// range.
func (c Config) checkModes() error {
	if n := *c.TopLogprobs; n < 0 || n > MaxTopLogprobs {
		return fmt.Errorf("llm: top logprobs %d: want 0..%d (LLM_TOP_LOGPROBS)", n, MaxTopLogprobs)
	}
	switch c.ToolMode {
	case ToolModeNative, ToolModeText:
	default:
		return fmt.Errorf("llm: tool mode %q: want %s or %s (LLM_TOOL_MODE)", c.ToolMode, ToolModeNative, ToolModeText)
	}
	switch c.API {
	case APIChat:
	case APICompletions:
		if c.ToolMode != ToolModeText {
			return fmt.Errorf("llm: the %s API has no tool calls: set LLM_TOOL_MODE=%s with LLM_API=%s (tools described in the prompt, calls parsed from the text)",
				APICompletions, ToolModeText, APICompletions)
		}
	default:
		return fmt.Errorf("llm: API %q: want %s or %s (LLM_API)", c.API, APIChat, APICompletions)
	}
	return nil
}

// ParamsFor resolves the sampling settings of attempt index (0-based) of a
// task sampled samples times: each field of override (the task's
// sampling) wins over the configuration's; the temperature defaults to
// DefaultTemperature for one sample and DefaultSampledTemperature for
// more; a seed, when there is one, is sent as seed + index so that every
// attempt asks for something different and a rerun of an attempt asks for
// the same thing.
func (c Config) ParamsFor(samples, index int, override Params) Params {
	p := Params{Temperature: c.Temperature, TopP: c.TopP, Seed: c.Seed}
	if c.MaxTokens > 0 {
		p.MaxTokens = new(c.MaxTokens)
	}
	if override.Temperature != nil {
		p.Temperature = override.Temperature
	}
	if override.TopP != nil {
		p.TopP = override.TopP
	}
	if override.MaxTokens != nil {
		p.MaxTokens = override.MaxTokens
	}
	if override.Seed != nil {
		p.Seed = override.Seed
	}
	if p.Temperature == nil {
		t := DefaultTemperature
		if samples > 1 {
			t = DefaultSampledTemperature
		}
		p.Temperature = &t
	}
	if p.Seed != nil {
		p.Seed = new(*p.Seed + int64(index))
	}
	return p
}

// ChatURL returns the chat completions endpoint for a base URL, following the
// rules documented on Config.BaseURL.
func ChatURL(base string) (string, error) { return endpointURL(base, chatPath) }

// CompletionsURL returns the completions endpoint for a base URL: as
// ChatURL, with "/completions" in place of "/chat/completions".
func CompletionsURL(base string) (string, error) { return endpointURL(base, completionsPath) }

// endpointURL appends path to base following the rules documented on
// Config.BaseURL; a base already ending in either endpoint's path has it
// replaced.
func endpointURL(base, path string) (string, error) {
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
		p = "/v1" + path
	case strings.HasSuffix(p, chatPath):
		p = strings.TrimSuffix(p, chatPath) + path
	case strings.HasSuffix(p, completionsPath):
		p = strings.TrimSuffix(p, completionsPath) + path
	default:
		p += path
	}
	u.Path = p
	u.RawPath = ""
	return u.String(), nil
}
