// Package service is the start-up and life cycle every binary shares
// (dispatcher, sandbox-runtime, web-runtime):
//
//   - Main reads the binary's configuration from the environment (defaults
//     are the envDefault tags of the config structs, nowhere else), handles
//     -healthcheck, sets up JSON logging, opens Redis and the metrics, and
//     calls the binary's run function with a context cancelled by SIGINT or
//     SIGTERM.
//   - Process.Serve runs the binary's work beside the ops server
//     (/metrics, /healthz, /readyz) and its extra loops, and stops them in
//     order: the work drains first, the ops server and loops stop after it.
//   - Process.ServeRuntime is Serve for a runtime: the queue consumer, the
//     worker and the health reporter around the runtime's executor.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/redisconn"
)

// Config is the configuration every binary shares. A binary's config struct
// embeds it (or RuntimeConfig, which embeds it).
type Config struct {
	RedisURL    string `env:"REDIS_URL" envDefault:"redis://localhost:6379"`
	RedisCAFile string `env:"REDIS_CA_FILE"`
	OutputDir   string `env:"OUTPUT_DIR" envDefault:"output"`
	LogLevel    string `env:"LOG_LEVEL" envDefault:"info"`
	// MetricsAddr defaults to the binary's own address, given to Main.
	MetricsAddr string `env:"METRICS_ADDR"`
}

func (c *Config) shared() *Config { return c }

// Configuration is a binary's config struct: a pointer to a struct that
// embeds Config.
type Configuration interface{ shared() *Config }

// Process is one running binary as Main set it up.
type Process struct {
	Name    string
	Config  Config
	Log     *slog.Logger
	RDB     *redis.Client
	Metrics *metrics.Set
}

// Main runs a binary named name whose METRICS_ADDR defaults to metricsAddr:
// it parses cfg from the environment, handles -healthcheck (GET /healthz on
// METRICS_ADDR), sets up JSON logging, opens Redis and the metrics, and calls
// run with a context cancelled on SIGINT or SIGTERM. It exits 2 on a
// configuration error and 1 when run fails.
func Main[C Configuration](name, metricsAddr string, cfg C, run func(ctx context.Context, p *Process, cfg C) error) {
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on METRICS_ADDR and exit 0 if healthy (for container healthchecks)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s [-healthcheck]\n\nConfigured by environment variables; see docs/configuration.md.\n", name)
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := Load(cfg, metricsAddr, nil); err != nil {
		fmt.Fprintf(os.Stderr, "%s: configuration: %v\n", name, err)
		os.Exit(2)
	}
	c := cfg.shared()
	if *healthcheck {
		os.Exit(ops.Healthcheck(c.MetricsAddr))
	}
	log := newLogger(c.LogLevel).With("service", name)
	slog.SetDefault(log)
	redisconn.UseSlog(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := start(ctx, name, cfg, log, run)
	stop()
	if err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

// start opens what every binary uses and calls run.
func start[C Configuration](ctx context.Context, name string, cfg C, log *slog.Logger, run func(context.Context, *Process, C) error) error {
	c := cfg.shared()
	rdb, err := redisconn.Open(c.RedisURL, redisconn.Options{CAFile: c.RedisCAFile})
	if err != nil {
		return err
	}
	defer rdb.Close()
	p := &Process{Name: name, Config: *c, Log: log, RDB: rdb, Metrics: metrics.New()}
	return run(ctx, p, cfg)
}

// Load fills cfg from environ (the process environment when nil): a
// variable that is unset or empty takes its envDefault tag, and
// METRICS_ADDR takes metricsAddr.
func Load[C Configuration](cfg C, metricsAddr string, environ map[string]string) error {
	cfg.shared().MetricsAddr = metricsAddr // kept when METRICS_ADDR is unset or empty
	if environ == nil {
		return env.Parse(cfg)
	}
	return env.ParseWithOptions(cfg, env.Options{Environment: environ})
}

// newLogger returns a JSON logger on stderr at level (debug, info, warn,
// error; anything else means info).
func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// With returns a copy of p whose logger carries args.
func (p *Process) With(args ...any) *Process {
	q := *p
	q.Log = p.Log.With(args...)
	return &q
}

// PingRedis is the health check every binary starts with.
func (p *Process) PingRedis(ctx context.Context) error {
	if err := p.RDB.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Work is what a binary does, for Serve.
type Work struct {
	// Run does the work until ctx is cancelled (and returns once it has
	// drained), or until the work is done.
	Run func(ctx context.Context) error
	// Health answers /healthz; nil means a live Redis ping per request.
	Health func(ctx context.Context) error
	// Ready answers /readyz; nil means always ready.
	Ready func() bool
	// Loops run beside Run (a health reporter, a queue monitor) and stop
	// once Run has returned.
	Loops []func(ctx context.Context) error
}

// Serve runs w.Run under ctx, and the ops server on METRICS_ADDR and
// w.Loops beside it. When ctx is cancelled, Run drains while /healthz and
// /metrics still answer; the ops server and the loops stop once Run has
// returned (also when the work is done). If the ops server or a loop fails,
// Run is cancelled. The errors of all of them are returned joined.
func (p *Process) Serve(ctx context.Context, w Work) error {
	health := w.Health
	if health == nil {
		health = p.PingRedis
	}
	srv := &ops.Server{Addr: p.Config.MetricsAddr, Gatherer: p.Metrics.Registry, Health: health, Ready: w.Ready, Log: p.Log}

	side, stopSide := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSide()
	g, gctx := errgroup.WithContext(side)
	g.Go(func() error { return srv.Run(gctx) })
	for _, loop := range w.Loops {
		g.Go(func() error { return loop(gctx) })
	}

	// The work stops on shutdown, or when the ops server or a loop failed.
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	stopForwarding := context.AfterFunc(gctx, stopWork)
	defer stopForwarding()
	err := w.Run(wctx)
	stopSide()
	return errors.Join(err, g.Wait())
}
