package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

func TestConfigDocumented(t *testing.T) {
	testsupport.CheckEnvDocumented(t, &RuntimeConfig{}, ":8001", "Shared by all services:", "Both runtimes:")
}

func TestLoad(t *testing.T) {
	var cfg RuntimeConfig
	if err := Load(&cfg, ":8001", map[string]string{"LEASE_TTL": "7s", "METRICS_ADDR": ""}); err != nil {
		t.Fatal(err)
	}
	if cfg.LeaseTTL != 7*time.Second || cfg.MetricsAddr != ":8001" || cfg.ShutdownGrace != 30*time.Second ||
		cfg.HealthInterval != 5*time.Second || cfg.RedisURL != "redis://localhost:6379" || cfg.LLM.MaxRetries != 3 {
		t.Errorf("loaded %+v", cfg)
	}
	if err := Load(&cfg, ":8001", map[string]string{"METRICS_ADDR": "127.0.0.1:9"}); err != nil || cfg.MetricsAddr != "127.0.0.1:9" {
		t.Errorf("METRICS_ADDR set: %q, %v", cfg.MetricsAddr, err)
	}
	if err := Load(&cfg, ":8001", map[string]string{"MAX_DELIVERIES": "many"}); err == nil {
		t.Error("MAX_DELIVERIES=many accepted")
	}
}

func testProcess(t *testing.T) *Process {
	t.Helper()
	return &Process{
		Name: "test", Config: Config{MetricsAddr: "127.0.0.1:0"},
		Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
	}
}

func healthy(context.Context) error { return nil }

// A loop runs until its context ends and reports whether the work had
// already returned by then.
func loopAfter(workDone <-chan struct{}, sawWorkDone chan<- bool) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		select {
		case <-workDone:
			sawWorkDone <- true
		default:
			sawWorkDone <- false
		}
		return nil
	}
}

func TestServeDrainsWorkBeforeLoops(t *testing.T) {
	p := testProcess(t)
	ctx, cancel := context.WithCancel(context.Background())
	workDone := make(chan struct{})
	saw := make(chan bool, 1)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err := p.Serve(ctx, Work{
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // draining
			close(workDone)
			return nil
		},
		Health: healthy,
		Loops:  []func(context.Context) error{loopAfter(workDone, saw)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !<-saw {
		t.Error("a loop stopped before the work had drained")
	}
}

func TestServeStopsLoopsWhenWorkIsDone(t *testing.T) {
	p := testProcess(t)
	workDone := make(chan struct{})
	saw := make(chan bool, 1)
	err := p.Serve(context.Background(), Work{
		Run:    func(context.Context) error { close(workDone); return nil },
		Health: healthy,
		Loops:  []func(context.Context) error{loopAfter(workDone, saw)},
	})
	if err != nil || !<-saw {
		t.Errorf("Serve = %v; loops must stop once the work is done", err)
	}
}

func TestServeStopsWorkWhenALoopFails(t *testing.T) {
	p := testProcess(t)
	boom := errors.New("loop failed")
	err := p.Serve(context.Background(), Work{
		Run:    func(ctx context.Context) error { <-ctx.Done(); return nil },
		Health: healthy,
		Loops:  []func(context.Context) error{func(context.Context) error { return boom }},
	})
	if !errors.Is(err, boom) {
		t.Errorf("Serve = %v, want the loop's error", err)
	}
}

func TestServeFailsWhenMetricsAddrIsUnusable(t *testing.T) {
	p := testProcess(t)
	p.Config.MetricsAddr = "bad address"
	err := p.Serve(context.Background(), Work{
		Run:    func(ctx context.Context) error { <-ctx.Done(); return nil },
		Health: healthy,
	})
	if err == nil {
		t.Error("Serve with an unusable METRICS_ADDR returned nil")
	}
}

// executorFunc is a test worker.Executor.
type executorFunc func(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error)

func (f executorFunc) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	return f(ctx, task)
}

func TestServeRuntimeWritesTrajectoryAndDrains(t *testing.T) {
	r := testsupport.StartRedis(t)
	var cfg RuntimeConfig
	if err := Load(&cfg, "127.0.0.1:0", map[string]string{
		"REDIS_URL": "redis://" + r.Client.Options().Addr, "OUTPUT_DIR": t.TempDir(), "HEALTH_INTERVAL": "100ms",
	}); err != nil {
		t.Fatal(err)
	}
	var logs testsupport.SyncBuffer
	err := start(context.Background(), core.RuntimeSandbox, &cfg, slog.New(slog.NewJSONHandler(&logs, nil)), func(ctx context.Context, p *Process, cfg *RuntimeConfig) error {
		task := core.TaskSpec{TaskID: "t1", TaskType: core.TaskCode, Description: "d", MaxSteps: 1, Timeout: 10, Priority: 1, Samples: 1}
		if _, err := queue.NewProducer(p.RDB).Enqueue(ctx, []core.TaskSpec{task}, nil); err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		return p.ServeRuntime(ctx, Runtime{
			Name: core.RuntimeSandbox, Stream: core.StreamCode, Concurrency: 1, Config: *cfg,
			Exec: executorFunc(func(_ context.Context, task core.TaskSpec) (*core.Trajectory, error) {
				defer cancel() // shut down once the task has been taken
				return &core.Trajectory{TaskID: task.TaskID, TaskType: task.TaskType, Success: true}, nil
			}),
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutputDir, "trajectories", "t1.json")); err != nil {
		t.Errorf("no trajectory after the drain: %v", err)
	}
	// Healthy from the start: the health is checked before the consumer
	// runs, so it never idles waiting for the first check.
	if strings.Contains(logs.String(), "unhealthy") {
		t.Errorf("a healthy runtime paused at its start:\n%s", logs.String())
	}
}

func TestLLMSettings(t *testing.T) {
	load := func(t *testing.T, env map[string]string) LLMConfig {
		t.Helper()
		var cfg RuntimeConfig
		env["LLM_BASE_URL"] = "http://127.0.0.1:9/v1"
		if err := Load(&cfg, ":8001", env); err != nil {
			t.Fatal(err)
		}
		return cfg.LLM
	}
	c, err := load(t, map[string]string{}).NewLLM(core.RuntimeSandbox, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	got := c.Config()
	if got.Temperature != nil || got.Seed != nil || *got.TopP != 1 || got.MaxTokens != 1024 || got.Logprobs || *got.TopLogprobs != 1 ||
		got.ToolMode != "native" || got.API != "chat" {
		t.Errorf("defaults %+v", got)
	}
	c, err = load(t, map[string]string{"LLM_TEMPERATURE": "0.3", "LLM_SEED": "17", "LLM_TOP_P": "0.9", "LLM_MAX_TOKENS": "64",
		"LLM_LOGPROBS": "true", "LLM_TOP_LOGPROBS": "0", "LLM_TOOL_MODE": "text", "LLM_API": "completions"}).NewLLM(core.RuntimeSandbox, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	got = c.Config()
	if *got.Temperature != 0.3 || *got.Seed != 17 || *got.TopP != 0.9 || got.MaxTokens != 64 || !got.Logprobs || *got.TopLogprobs != 0 ||
		got.ToolMode != "text" || got.API != "completions" || c.URL() != "http://127.0.0.1:9/v1/completions" {
		t.Errorf("set %+v, url %s", got, c.URL())
	}
	for env, want := range map[string]string{
		"LLM_API=completions":   "LLM_TOOL_MODE=text",
		"LLM_TOP_P=1.5":         "LLM_TOP_P",
		"LLM_TEMPERATURE=3":     "LLM_TEMPERATURE",
		"LLM_MAX_TOKENS=0":      "LLM_MAX_TOKENS",
		"LLM_SEED=-1":           "LLM_SEED",
		"LLM_TOOL_MODE=native2": "LLM_TOOL_MODE",
		"LLM_TOP_LOGPROBS=21":   "LLM_TOP_LOGPROBS",
		"LLM_TOP_LOGPROBS=-1":   "LLM_TOP_LOGPROBS",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := load(t, map[string]string{k: v}).NewLLM(core.RuntimeSandbox, metrics.New())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one naming %s", env, err, want)
		}
	}
}
