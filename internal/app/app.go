// Package app holds what every binary's main does the same way: the
// -healthcheck flag, JSON logs, environment configuration, and a context
// cancelled by SIGINT/SIGTERM.
package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caarlos0/env/v11"

	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/redisconn"
)

// Common is the configuration every binary shares.
type Common struct {
	RedisURL    string `env:"REDIS_URL" envDefault:"redis://localhost:6379"`
	RedisCAFile string `env:"REDIS_CA_FILE"`
	OutputDir   string `env:"OUTPUT_DIR" envDefault:"output"`
	LogLevel    string `env:"LOG_LEVEL" envDefault:"info"`
}

// Main runs a service binary: it parses cfg from the environment, handles
// -healthcheck (GET /healthz on metricsAddr(cfg)), sets up JSON logging, and
// calls run with a context cancelled on SIGINT or SIGTERM. It exits non-zero
// when run fails.
func Main[C any](name string, cfg *C, common func(*C) *Common, metricsAddr func(*C) string, run func(ctx context.Context, cfg *C, log *slog.Logger) error) {
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on METRICS_ADDR and exit 0 if healthy (for container healthchecks)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s [-healthcheck]\n\nConfigured by environment variables; see README.md.\n", name)
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := env.Parse(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: configuration: %v\n", name, err)
		os.Exit(2)
	}
	if *healthcheck {
		os.Exit(ops.Healthcheck(metricsAddr(cfg)))
	}
	log := NewLogger(common(cfg).LogLevel).With("service", name)
	slog.SetDefault(log)
	redisconn.UseSlog(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}

// NewLogger returns a JSON logger at level (debug, info, warn, error).
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
