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

// errNotSent means ctx ended while the attempt waited for a slot.
var errNotSent = errors.New("llm: request not sent")

// ErrRequestTimeout is wrapped by the error of an attempt that exceeded
// Config.RequestTimeout (the error also wraps context.DeadlineExceeded).
var ErrRequestTimeout = errors.New("llm: request timed out")

// APIError is a non-2xx answer from the server, or a 2xx carrying an error
// object and no choice. Body is a redacted snippet of the response body.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("llm: server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
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
	u, err := ChatURL(cfg.BaseURL)
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

// URL returns the chat completions endpoint the client posts to.
func (c *Client) URL() string { return c.url }

type chatRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	Tools       []Tool    `json:"tools,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Stream      bool      `json:"stream"`
}

type chatResponse struct {
	Choices []struct {
		Message      Message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	} `json:"choices"`
	Usage Usage           `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// Chat sends messages (and the tools the model may call, possibly none) and
// returns the first choice. Retryable failures are retried as documented on
// Config; the returned error wraps the last attempt's error (an *APIError,
// ErrRequestTimeout, or a transport error) or ctx's error when ctx ended.
func (c *Client) Chat(ctx context.Context, messages []Message, tools []Tool) (Response, error) {
	if len(messages) == 0 {
		return Response{}, errors.New("llm: no messages to send")
	}
	body, err := json.Marshal(chatRequest{
		Model:       c.cfg.Model,
		Messages:    messages,
		Tools:       tools,
		Temperature: c.cfg.Temperature,
		MaxTokens:   c.cfg.MaxTokens,
	})
	if err != nil {
		return Response{}, fmt.Errorf("llm: encode request: %w", err)
	}
	var sent struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		return Response{}, fmt.Errorf("llm: re-read request: %w", err)
	}
	for n := 1; ; n++ {
		a := Attempt{N: n}
		resp, retryAfter, err := c.attempt(ctx, body, &a)
		if err == nil {
			resp.Attempts = n
			c.finish(&resp, tools)
			resp.Exchange.Messages, resp.Exchange.Tools = sent.Messages, sent.Tools
			if resp.Exchange.Sent, err = json.Marshal(resp.Message); err != nil {
				return Response{}, fmt.Errorf("llm: encode reply: %w", err)
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
			return Response{}, fmt.Errorf("llm: chat completion stopped after %d attempt(s): %w", n, ctx.Err())
		}
		if !retryable(err) {
			c.observe(a)
			return Response{}, err
		}
		if n > c.cfg.MaxRetries {
			c.observe(a)
			return Response{}, fmt.Errorf("llm: chat completion failed after %d attempts: %w", n, err)
		}
		wait := c.backoff(n, retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would only end in ctx's deadline; report the real cause.
			c.observe(a)
			return Response{}, fmt.Errorf("llm: chat completion failed after %d attempt(s), no time left to retry: %w", n, err)
		}
		a.Retry, a.Wait = true, wait
		c.observe(a)
		if err := c.sleep(ctx, wait); err != nil {
			return Response{}, fmt.Errorf("llm: chat completion stopped after %d attempt(s): %w", n, err)
		}
	}
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
		return Response{}, 0, fmt.Errorf("llm: build request: %w", err)
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
		return Response{}, 0, fmt.Errorf("llm: response body larger than %d bytes", maxResponseBytes)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return Response{}, retryAfter(res.Header, time.Now()), &APIError{Status: res.StatusCode, Body: c.snippet(raw)}
	}
	var cr chatResponse
	if err := json.Unmarshal(raw, &cr); err != nil {
		return Response{}, 0, fmt.Errorf("llm: decode response (status %d): %v: %s", res.StatusCode, err, c.snippet(raw))
	}
	if len(cr.Choices) == 0 {
		if len(cr.Error) > 0 && !bytes.Equal(cr.Error, []byte("null")) {
			return Response{}, 0, &APIError{Status: res.StatusCode, Body: c.snippet(cr.Error)}
		}
		return Response{}, 0, fmt.Errorf("llm: response has no choices: %s", c.snippet(raw))
	}
	ch := cr.Choices[0]
	var rawChoices struct {
		Choices []struct {
			Message json.RawMessage `json:"message"`
		} `json:"choices"`
	}
	_ = json.Unmarshal(raw, &rawChoices) // decoded above; cannot fail now
	resp := Response{Message: ch.Message, FinishReason: ch.FinishReason, Usage: cr.Usage}
	resp.Exchange.Reply = rawChoices.Choices[0].Message
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
	return &redactedError{msg: "llm: " + c.redact(err.Error()), err: err}
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
