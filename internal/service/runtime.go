package service

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/trajectory"
	"github.com/agentdataplatform/adp/internal/worker"
)

// RuntimeConfig is the configuration both runtimes share.
type RuntimeConfig struct {
	Config
	LeaseTTL       time.Duration `env:"LEASE_TTL" envDefault:"30s" valid:">0"`
	MaxDeliveries  int           `env:"MAX_DELIVERIES" envDefault:"3" valid:">=1"`
	ShutdownGrace  time.Duration `env:"SHUTDOWN_GRACE" envDefault:"30s" valid:">0"`
	HealthInterval time.Duration `env:"HEALTH_INTERVAL" envDefault:"5s" valid:">0"`
	CacheTTL       time.Duration `env:"CACHE_TTL" envDefault:"1h" valid:">0"`
	LLM            LLMConfig
}

// LLMConfig configures the OpenAI-compatible model; empty BaseURL means no LLM.
type LLMConfig struct {
	BaseURL       string        `env:"LLM_BASE_URL" valid:"httpurl"`
	VLLMURL       string        `env:"VLLM_URL" valid:"httpurl"` // the blueprint's name, accepted as an alias
	Model         string        `env:"LLM_MODEL" envDefault:"Qwen/Qwen2.5-Coder-7B-Instruct" valid:"nonempty"`
	APIKey        string        `env:"LLM_API_KEY"`
	Timeout       time.Duration `env:"LLM_TIMEOUT" envDefault:"60s" valid:">0"`
	MaxConcurrent int           `env:"LLM_MAX_CONCURRENT" envDefault:"4" valid:">=1"`
	MaxRetries    int           `env:"LLM_MAX_RETRIES" envDefault:"3" valid:">=0"`
	// Sampling defaults; a task's `sampling` overrides each. Unset
	// LLM_TEMPERATURE means llm.DefaultTemperature for one sample and
	// llm.DefaultSampledTemperature when a task has samples > 1; unset
	// LLM_SEED sends no seed.
	Temperature *float64 `env:"LLM_TEMPERATURE"`
	TopP        float64  `env:"LLM_TOP_P" envDefault:"1"`
	MaxTokens   int      `env:"LLM_MAX_TOKENS" envDefault:"1024"`
	Seed        *int64   `env:"LLM_SEED"`
	Logprobs    bool     `env:"LLM_LOGPROBS" envDefault:"false"`
	// TopLogprobs is the number of alternatives per token asked for with
	// LLM_LOGPROBS (llm.Config.TopLogprobs), 0..llm.MaxTopLogprobs (Check).
	TopLogprobs int    `env:"LLM_TOP_LOGPROBS" envDefault:"1"`
	ToolMode    string `env:"LLM_TOOL_MODE" envDefault:"native" valid:"oneof=native text"`
	API         string `env:"LLM_API" envDefault:"chat" valid:"oneof=chat completions"`
}

// NewLLM returns the client, or nil when no LLM is configured. It checks the
// sampling settings with the bounds tasks have (core.Sampling).
func (c LLMConfig) NewLLM(runtime string, m *metrics.Set) (*llm.Client, error) {
	base := c.BaseURL
	if base == "" {
		base = c.VLLMURL
	}
	if base == "" {
		return nil, nil
	}
	obs := llm.ObserverFunc(func(a llm.Attempt) {
		status := "ok"
		switch {
		case a.Retry:
			status = "retry"
		case a.Err != nil:
			status = "error"
		}
		m.LLMRequests.WithLabelValues(runtime, status).Inc()
		m.LLMTokens.WithLabelValues(runtime, "prompt").Add(float64(a.Usage.PromptTokens))
		m.LLMTokens.WithLabelValues(runtime, "completion").Add(float64(a.Usage.CompletionTokens))
	})
	client, err := llm.New(llm.Config{
		BaseURL: base, Model: c.Model, APIKey: c.APIKey,
		RequestTimeout: c.Timeout, MaxConcurrent: c.MaxConcurrent, MaxRetries: retries(c.MaxRetries),
		Temperature: c.Temperature, TopP: &c.TopP, MaxTokens: c.MaxTokens, Seed: c.Seed,
		Logprobs: c.Logprobs, TopLogprobs: &c.TopLogprobs, ToolMode: c.ToolMode, API: c.API,
		Observer: obs,
	})
	if err != nil {
		return nil, fmt.Errorf("LLM configuration: %w", err)
	}
	return client, nil
}

// retries is LLM_MAX_RETRIES as llm.Config.MaxRetries reads it (0 there
// means its default; negative, none).
func retries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// Runtime is what a runtime binary supplies to ServeRuntime.
type Runtime struct {
	Name        string // core.RuntimeSandbox or core.RuntimeWeb
	Stream      string
	Concurrency int
	Config      RuntimeConfig
	Exec        worker.Executor
	// CacheTypes are the cache_type label values this runtime uses.
	CacheTypes []string
	// HasModel says whether a model is configured (reported to adpctl).
	HasModel bool
	// MaxTimeout caps task timeouts (0: none).
	MaxTimeout time.Duration
	// Checks are the runtime's own health checks (jail, browser), run after
	// the Redis ping and the output directory check.
	Checks []func(ctx context.Context) error
	// Loops are extra background loops owned by the runtime (browser
	// statistics), stopped after the consumer has drained.
	Loops []func(ctx context.Context) error
}

// ServeRuntime serves r until ctx is cancelled, then drains (see Serve): the
// consumer stops reading, in-flight tasks get SHUTDOWN_GRACE, and only then
// do the health reporter, the ops server and r.Loops stop.
func (p *Process) ServeRuntime(ctx context.Context, r Runtime) error {
	if r.Config.HealthInterval <= 0 {
		return fmt.Errorf("HEALTH_INTERVAL must be positive, got %s", r.Config.HealthInterval)
	}
	writer, err := trajectory.NewWriter(core.TrajectoriesPath(p.Config.OutputDir))
	if err != nil {
		return err
	}
	errorTypes := make([]string, len(core.ErrorTypes))
	for i, et := range core.ErrorTypes {
		errorTypes[i] = string(et)
	}
	p.Metrics.InitRuntime(r.Name, errorTypes, r.CacheTypes...)
	consumerName := queue.ConsumerName(r.Name)
	pc := p.With("consumer", consumerName)
	w := &worker.Worker{
		Runtime: r.Name, RuntimeID: consumerName, Exec: r.Exec, Writer: writer,
		Metrics: p.Metrics, Log: pc.Log, MaxTimeout: r.MaxTimeout,
	}
	checks := append([]func(context.Context) error{p.PingRedis, writableCheck(writer.Dir())}, r.Checks...)
	health := &ops.HealthReporter{
		RDB: p.RDB, Runtime: r.Name, Consumer: consumerName, Interval: r.Config.HealthInterval,
		Checks: checks, Gauge: p.Metrics.RuntimeHealth.WithLabelValues(r.Name), Log: pc.Log, Model: r.HasModel,
	}
	consumer := queue.NewConsumer(p.RDB, queue.ConsumerConfig{
		Stream: r.Stream, Name: consumerName, Runtime: r.Name, Concurrency: r.Concurrency,
		LeaseTTL: r.Config.LeaseTTL, MaxDeliveries: r.Config.MaxDeliveries, ShutdownGrace: r.Config.ShutdownGrace,
		// An unhealthy runtime (full disk, Redis or jail down) takes no work.
		Paused: func() bool { return health.Last(ctx) != nil },
	}, w, p.Metrics, p.Log) // the consumer adds its own name to its logs

	pc.Log.Info("starting", "stream", r.Stream, "concurrency", r.Concurrency, "output", writer.Dir())
	return pc.Serve(ctx, Work{
		// The consumer starts once the health loop's first check has
		// ended: it takes no entry before a result, and started earlier
		// it would wait out a poll interval idle. /healthz and /metrics
		// answer meanwhile.
		Run: func(ctx context.Context) error {
			select {
			case <-health.Checked():
			case <-ctx.Done():
				return nil
			}
			return consumer.Run(ctx)
		},
		Health: health.Last,
		Loops:  append([]func(context.Context) error{health.Run}, r.Loops...),
	})
}

// writableCheck fails when the trajectory directory cannot take a file (disk
// full, read-only volume): the runtime is then unhealthy rather than
// silently failing every task.
func writableCheck(dir string) func(context.Context) error {
	return func(context.Context) error {
		probe := filepath.Join(dir, ".health-probe")
		if err := trajectory.WriteFileAtomic(probe, []byte("ok\n"), 0o644); err != nil {
			return fmt.Errorf("output directory %s not writable: %w", dir, err)
		}
		return nil
	}
}

// Check applies the bounds of a task's sampling to the defaults and
// rejects the API the tool mode cannot use; it runs at start whether or
// not a model is configured (envconfig.Checker).
func (c *LLMConfig) Check() error {
	for _, f := range []struct {
		name, value string
		sp          core.Sampling
	}{
		{"LLM_TEMPERATURE", fmtPtr(c.Temperature), core.Sampling{Temperature: c.Temperature}},
		{"LLM_TOP_P", fmt.Sprint(c.TopP), core.Sampling{TopP: &c.TopP}},
		{"LLM_MAX_TOKENS", fmt.Sprint(c.MaxTokens), core.Sampling{MaxTokens: &c.MaxTokens}},
		{"LLM_SEED", fmtPtr(c.Seed), core.Sampling{Seed: c.Seed}},
	} {
		if err := f.sp.Check(); err != nil {
			_, reason, _ := strings.Cut(err.Error(), ": ")
			return &envconfig.Error{Var: f.name, Value: f.value, Want: "a value in range (" + reason + ")"}
		}
	}
	if err := envconfig.Range("LLM_TOP_LOGPROBS", c.TopLogprobs, 0, llm.MaxTopLogprobs); err != nil {
		return err
	}
	if c.API == llm.APICompletions && c.ToolMode != llm.ToolModeText {
		return &envconfig.Error{Var: "LLM_API", Value: c.API,
			Want: llm.APIChat + ", or " + llm.APICompletions + " with LLM_TOOL_MODE=" + llm.ToolModeText + " (the completions API has no tool calls)"}
	}
	return nil
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}
