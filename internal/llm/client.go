package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what the client reads and quotes.
const (
	// maxResponseBytes bounds a response body; a completion is far smaller.
	maxResponseBytes = 16 << 20
	// maxErrorSnippetBytes is how much of an error body goes into an error.
	maxErrorSnippetBytes = 512
	// maxRetryAfterSeconds clamps absurd Retry-After values before they are
	// converted to a Duration (MaxRetryAfter caps the actual wait).
	maxRetryAfterSeconds = 24 * 3600
)

// Errors of one attempt carry no "llm: " prefix; Do adds it once to what
// it returns.

// errNotSent means ctx ended while the attempt waited for a slot.
var errNotSent = errors.New("request not sent")

// ErrRequestTimeout is wrapped by the error of an attempt that exceeded
// Config.RequestTimeout (the error also wraps context.DeadlineExceeded).
var ErrRequestTimeout = errors.New("request timed out")

// ErrContextExceeded is wrapped by the error of a request the server
// refused because the conversation (with max_tokens) does not fit the
// model's context: an *APIError with ContextExceeded set. Retrying the same
// request cannot help.
var ErrContextExceeded = errors.New("the request exceeds the model's context")

// APIError is a non-2xx answer from the server, or a 2xx carrying an error
// object and no choice. Body is a redacted snippet of the response body.
type APIError struct {
	Status int
	Body   string
	// ContextExceeded is true when the answer says the request does not
	// fit the model's context (see contextExceeded); errors.Is(err,
	// ErrContextExceeded) then holds.
	ContextExceeded bool
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Is makes errors.Is(err, ErrContextExceeded) true for a context overflow.
func (e *APIError) Is(target error) bool { return target == ErrContextExceeded && e.ContextExceeded }

// Refused reports whether the server answered and refused the request
// itself (a 4xx other than 408 and 429): the request, not the connection,
// is at fault, and sending it again gets the same answer.
func (e *APIError) Refused() bool {
	return e.Status >= 400 && e.Status < 500 && !e.Retryable()
}

// contextMarkers are what servers say when a request does not fit the
// model's context, lower-cased: llama.cpp's error type and message,
// OpenAI's error code, OpenAI's and vLLM's message, TGI's validation error.
var contextMarkers = []string{
	"exceed_context_size_error",
	"exceeds the available context size",
	"context_length_exceeded",
	"maximum context length",
	"`max_new_tokens` must be <=",
}

// contextExceeded reports whether an error answer (status, whole body) is
// a context overflow. Only the error's own words are read (its message,
// type and code, at the top level or in an "error" object or string), not
// any echo of the request.
func contextExceeded(status int, body []byte) bool {
	if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge && status != http.StatusUnprocessableEntity {
		return false
	}
	type words struct {
		Message, Type json.RawMessage
		Code          json.RawMessage
	}
	var top struct {
		words
		Error json.RawMessage
	}
	if json.Unmarshal(body, &top) != nil {
		return false
	}
	var inner words
	_ = json.Unmarshal(top.Error, &inner) // an object; a string is read below
	var said []byte
	for _, w := range []json.RawMessage{top.Message, top.Type, top.Code, top.Error, inner.Message, inner.Type, inner.Code} {
		var s string
		if json.Unmarshal(w, &s) == nil {
			said = append(append(said, strings.ToLower(s)...), '\n')
		}
	}
	for _, m := range contextMarkers {
		if bytes.Contains(said, []byte(m)) {
			return true
		}
	}
	return false
}

// Retryable reports whether the status is worth another attempt: 408, 429
// and 5xx.
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Client sends chat completions. It is safe for concurrent use; share one per
// process so MaxConcurrent bounds the process.
type Client struct {
	cfg  Config
	url  string
	http *http.Client
	sem  chan struct{}
	// sleep waits between attempts; tests replace it to record the waits.
	sleep func(ctx context.Context, d time.Duration) error
}

// New checks cfg, applies defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.checkModes(); err != nil {
		return nil, err
	}
	u, err := ChatURL(cfg.BaseURL)
	if cfg.API == APICompletions {
		u, err = CompletionsURL(cfg.BaseURL)
	}
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("llm: model is empty (set LLM_MODEL to a model the server serves)")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.MaxConcurrent
		hc = &http.Client{Transport: tr}
	}
	return &Client{
		cfg:   cfg,
		url:   u,
		http:  hc,
		sem:   make(chan struct{}, cfg.MaxConcurrent),
		sleep: sleepCtx,
	}, nil
}

// Config returns the configuration in effect, defaults applied.
func (c *Client) Config() Config { return c.cfg }

// URL returns the endpoint the client posts to: chat completions, or
// completions with APICompletions.
func (c *Client) URL() string { return c.url }

type chatRequest struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools,omitempty"`
	Params
	Stream   bool `json:"stream"`
	Logprobs bool `json:"logprobs,omitempty"`
	// TopLogprobs is sent with Logprobs, 0 included.
	TopLogprobs    *int `json:"top_logprobs,omitempty"`
	ReturnTokenIDs bool `json:"return_token_ids,omitempty"`
}

type completionRequest struct {
	Model  string `json:"model"`
	Prompt string `json:"prompt"`
	Params
	Stop   []string `json:"stop"`
	Stream bool     `json:"stream"`
	// Logprobs is the number of most likely tokens to list per position
	// (Config.TopLogprobs), sent with Config.Logprobs, 0 included.
	Logprobs       *int `json:"logprobs,omitempty"`
	ReturnTokenIDs bool `json:"return_token_ids,omitempty"`
}

// response is a chat completion or a completion.
type response struct {
	Choices []struct {
		Message        json.RawMessage `json:"message"`
		Text           *string         `json:"text"`
		FinishReason   string          `json:"finish_reason"`
		Logprobs       json.RawMessage `json:"logprobs"`
		TokenIDs       []int           `json:"token_ids"`
		PromptTokenIDs []int           `json:"prompt_token_ids"`
	} `json:"choices"`
	PromptTokenIDs    []int           `json:"prompt_token_ids"`
	Usage             Usage           `json:"usage"`
	Error             json.RawMessage `json:"error"`
	ID                string          `json:"id"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
}

// Params are the configuration's sampling settings as Chat sends them.
func (c *Client) Params() Params {
	p := Params{Temperature: c.cfg.Temperature, TopP: c.cfg.TopP, Seed: c.cfg.Seed}
	if c.cfg.MaxTokens > 0 {
		p.MaxTokens = new(c.cfg.MaxTokens)
	}
	return p
}

// Chat sends messages (and the tools the model may call, possibly none)
// with the configuration's sampling settings; see Do.
func (c *Client) Chat(ctx context.Context, messages []Message, tools []Tool) (Response, error) {
	return c.Do(ctx, Request{Messages: messages, Tools: tools, Params: c.Params()})
}

// Do sends req and returns the first choice. Retryable failures are retried
// as documented on Config; the returned error wraps the last attempt's
// error (an *APIError, ErrRequestTimeout, or a transport error) or ctx's
// error when ctx ended. With APICompletions the messages are rendered as
// one prompt (RenderPrompt) and the reply's text becomes the content of an
// assistant message; in ToolModeText req.Tools are not sent.
//
// When the request was encoded but got no answer (err != nil), the
// Response still carries its Exchange without a reply: what was sent, for
// the record of a refused or failed call.
func (c *Client) Do(ctx context.Context, req Request) (Response, error) {
	if len(req.Messages) == 0 {
		return Response{}, errors.New("llm: no messages to send")
	}
	tools := req.Tools
	if c.cfg.ToolMode == ToolModeText {
		tools = nil
	}
	body, prompt, err := c.encode(req.Messages, tools, req.Params)
	if err != nil {
		return Response{}, fmt.Errorf("llm: %w", err)
	}
	sent, err := sentParts(body, req.Messages, c.cfg.API)
	if err != nil {
		return Response{}, fmt.Errorf("llm: %w", err)
	}
	unanswered := Response{Exchange: Exchange{Messages: sent.Messages, Tools: sent.Tools, Prompt: prompt}}
	for n := 1; ; n++ {
		a := Attempt{N: n}
		resp, retryAfter, err := c.attempt(ctx, body, &a)
		if err == nil {
			resp.Attempts = n
			c.finish(&resp, tools)
			resp.Exchange.Messages, resp.Exchange.Tools, resp.Exchange.Prompt = sent.Messages, sent.Tools, prompt
			if resp.Exchange.Sent, err = json.Marshal(resp.Message); err != nil {
				return unanswered, fmt.Errorf("llm: encode reply: %w", err)
			}
			a.Usage = resp.Usage
			c.observe(a)
			return resp, nil
		}
		a.Err = err
		if ctx.Err() != nil {
			if err != errNotSent { // no request, nothing to count
				c.observe(a)
			}
			return unanswered, fmt.Errorf("llm: stopped after %d attempt(s): %w", n, ctx.Err())
		}
		if !retryable(err) {
			c.observe(a)
			return unanswered, fmt.Errorf("llm: %w", err)
		}
		if n > c.cfg.MaxRetries {
			c.observe(a)
			return unanswered, fmt.Errorf("llm: gave up after %d attempts: %w", n, err)
		}
		wait := c.backoff(n, retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would only end in ctx's deadline; report the real cause.
			c.observe(a)
			return unanswered, fmt.Errorf("llm: gave up after %d attempt(s), no time left to retry: %w", n, err)
		}
		a.Retry, a.Wait = true, wait
		c.observe(a)
		if err := c.sleep(ctx, wait); err != nil {
			return unanswered, fmt.Errorf("llm: stopped after %d attempt(s): %w", n, err)
		}
	}
}

// encode builds the request body for the configured API; prompt is the
// rendered prompt of a completions request.
func (c *Client) encode(messages []Message, tools []Tool, p Params) (body []byte, prompt string, err error) {
	if c.cfg.API == APICompletions {
		prompt = RenderPrompt(messages)
		cr := completionRequest{Model: c.cfg.Model, Prompt: prompt, Params: p, Stop: PromptStop, ReturnTokenIDs: c.cfg.Logprobs}
		if c.cfg.Logprobs {
			cr.Logprobs = c.cfg.TopLogprobs
		}
		body, err = json.Marshal(cr)
	} else {
		cr := chatRequest{
			Model: c.cfg.Model, Messages: messages, Tools: tools, Params: p,
			Logprobs: c.cfg.Logprobs, ReturnTokenIDs: c.cfg.Logprobs,
		}
		if c.cfg.Logprobs {
			cr.TopLogprobs = c.cfg.TopLogprobs
		}
		body, err = json.Marshal(cr)
	}
	if err != nil {
		return nil, "", fmt.Errorf("encode request: %w", err)
	}
	return body, prompt, nil
}

// sentParts returns the messages and tools of a request as they went over
// the wire: re-read from the body of a chat request; for a completions
// request, whose body has the prompt instead, the messages it was rendered
// from in the same encoding.
func sentParts(body []byte, messages []Message, api string) (sent struct {
	Messages []json.RawMessage `json:"messages"`
	Tools    json.RawMessage   `json:"tools"`
}, err error) {
	if api == APICompletions {
		for _, m := range messages {
			b, err := json.Marshal(m)
			if err != nil {
				return sent, fmt.Errorf("encode message: %w", err)
			}
			sent.Messages = append(sent.Messages, b)
		}
		return sent, nil
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		return sent, fmt.Errorf("re-read request: %w", err)
	}
	return sent, nil
}

// attempt makes one HTTP request. It returns the Retry-After the server
// asked for (0 when none).
func (c *Client) attempt(ctx context.Context, body []byte, a *Attempt) (Response, time.Duration, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Response{}, 0, errNotSent
	}
	defer func() { <-c.sem }()

	start := time.Now()
	defer func() { a.Duration = time.Since(start) }()
	actx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrRequestTimeout)
	defer cancel()

	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Response{}, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return Response{}, 0, c.transportError(actx, err)
	}
	defer res.Body.Close()
	a.Status = res.StatusCode
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
	if err != nil {
		return Response{}, 0, c.transportError(actx, err)
	}
	if len(raw) > maxResponseBytes {
		return Response{}, 0, fmt.Errorf("response body larger than %d bytes", maxResponseBytes)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return Response{}, retryAfter(res.Header, time.Now()),
			&APIError{Status: res.StatusCode, Body: c.snippet(raw), ContextExceeded: contextExceeded(res.StatusCode, raw)}
	}
	var cr response
	if err := json.Unmarshal(raw, &cr); err != nil {
		return Response{}, 0, fmt.Errorf("decode response (status %d): %v: %s", res.StatusCode, err, c.snippet(raw))
	}
	if len(cr.Choices) == 0 {
		if len(cr.Error) > 0 && !bytes.Equal(cr.Error, []byte("null")) {
			return Response{}, 0, &APIError{Status: res.StatusCode, Body: c.snippet(cr.Error)}
		}
		return Response{}, 0, fmt.Errorf("response has no choices: %s", c.snippet(raw))
	}
	ch := cr.Choices[0]
	resp := Response{FinishReason: ch.FinishReason, Usage: cr.Usage, CompletionTokenIDs: ch.TokenIDs, PromptTokenIDs: ch.PromptTokenIDs,
		ID: cr.ID, Model: cr.Model, SystemFingerprint: cr.SystemFingerprint}
	if resp.PromptTokenIDs == nil {
		resp.PromptTokenIDs = cr.PromptTokenIDs
	}
	if len(ch.Logprobs) > 0 && !bytes.Equal(ch.Logprobs, []byte("null")) {
		resp.Logprobs = ch.Logprobs
	}
	if c.cfg.API == APICompletions {
		if ch.Text == nil {
			return Response{}, 0, fmt.Errorf("completion choice has no text: %s", c.snippet(raw))
		}
		var rawChoices struct {
			Choices []json.RawMessage `json:"choices"`
		}
		_ = json.Unmarshal(raw, &rawChoices) // decoded above; cannot fail now
		resp.Message = Message{Role: RoleAssistant, Content: *ch.Text}
		resp.Exchange.Reply = rawChoices.Choices[0]
		return resp, 0, nil
	}
	if len(ch.Message) > 0 && !bytes.Equal(ch.Message, []byte("null")) {
		if err := json.Unmarshal(ch.Message, &resp.Message); err != nil {
			return Response{}, 0, fmt.Errorf("decode response message (status %d): %v: %s", res.StatusCode, err, c.snippet(raw))
		}
		resp.Exchange.Reply = ch.Message
	}
	return resp, 0, nil
}

// finish fills missing tool call ids and types and, when configured,
// recovers tool calls written in the content.
func (c *Client) finish(r *Response, tools []Tool) {
	if r.Message.Role == "" {
		r.Message.Role = RoleAssistant
	}
	if len(r.Message.ToolCalls) == 0 && c.cfg.ToolCallsFromContent && len(tools) > 0 {
		if calls := ExtractToolCalls(r.Message.Content, tools); len(calls) > 0 {
			r.Message.ToolCalls = calls
			r.FromContent = true
		}
	}
	for i := range r.Message.ToolCalls {
		tc := &r.Message.ToolCalls[i]
		if tc.ID == "" {
			tc.ID = newCallID()
		}
		if tc.Type == "" {
			tc.Type = "function"
		}
	}
}

func (c *Client) observe(a Attempt) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.ObserveAttempt(a)
	}
}

// transportError names a per-attempt timeout as such and redacts the rest.
func (c *Client) transportError(actx context.Context, err error) error {
	if actx.Err() != nil && errors.Is(context.Cause(actx), ErrRequestTimeout) {
		// net/http reports the cause (or DeadlineExceeded, depending on where
		// the attempt was); say it plainly and wrap both.
		return fmt.Errorf("%w after %s (%w)", ErrRequestTimeout, c.cfg.RequestTimeout, context.DeadlineExceeded)
	}
	return &redactedError{msg: c.redact(err.Error()), err: err}
}

// snippet returns the start of a body, valid UTF-8, key redacted.
func (c *Client) snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	cut := len(b) > maxErrorSnippetBytes
	if cut {
		b = b[:maxErrorSnippetBytes]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := c.redact(strings.ToValidUTF8(string(b), "?"))
	if cut {
		s += "…"
	}
	return s
}

// redact removes the API key from s.
func (c *Client) redact(s string) string {
	if c.cfg.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
}

// redactedError carries a redacted message while keeping the cause for
// errors.Is (timeouts, connection refused).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// retryable reports whether an attempt's error deserves another attempt:
// retryable statuses, timeouts and transport errors; not malformed answers
// or client errors.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var re *redactedError
	return errors.As(err, &re) || errors.Is(err, ErrRequestTimeout)
}

// backoff returns the wait before attempt n+1: the server's Retry-After when
// it gave one (capped by MaxRetryAfter), else BackoffBase·2^(n-1) capped by
// BackoffMax, jittered to [d/2, d].
func (c *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.cfg.MaxRetryAfter)
	}
	d := c.cfg.BackoffBase
	for i := 1; i < n && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryAfter parses Retry-After (seconds or an HTTP date) or OpenAI's
// retry-after-ms. It returns 0 when absent or unparsable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(min(ms, maxRetryAfterSeconds*1000) * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, maxRetryAfterSeconds) * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newCallID makes an id for a tool call the model sent without one, so the
// tool result can reference it.
func newCallID() string {
	return fmt.Sprintf("call_%016x", rand.Uint64())
}
