// Command dispatcher streams tasks.jsonl into the Redis task streams.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentdataplatform/adp/internal/app"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/redisconn"
)

type config struct {
	app.Common
	TaskFile        string        `env:"TASK_FILE" envDefault:"tasks.jsonl"`
	Follow          bool          `env:"DISPATCH_FOLLOW" envDefault:"true"`
	MetricsAddr     string        `env:"METRICS_ADDR" envDefault:":8000"`
	MonitorInterval time.Duration `env:"MONITOR_INTERVAL" envDefault:"5s"`
	PollInterval    time.Duration `env:"DISPATCH_POLL_INTERVAL" envDefault:"500ms"`
	BatchSize       int           `env:"DISPATCH_BATCH_SIZE" envDefault:"256"`
}

func main() {
	var cfg config
	app.Main("dispatcher", &cfg,
		func(c *config) *app.Common { return &c.Common },
		func(c *config) string { return c.MetricsAddr },
		run)
}

func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	rdb, err := redisconn.Open(cfg.RedisURL, redisconn.Options{CAFile: cfg.RedisCAFile})
	if err != nil {
		return err
	}
	defer rdb.Close()
	m := metrics.New()
	routes := map[string]string{}
	for _, t := range core.TaskTypes {
		routes[string(t)] = core.RuntimeFor(core.StreamFor(t))
	}
	m.InitDispatcher(routes)

	d, err := dispatch.New(dispatch.Config{
		TaskFile:     cfg.TaskFile,
		Follow:       cfg.Follow,
		PollInterval: cfg.PollInterval,
		RejectedFile: filepath.Join(cfg.OutputDir, "rejected.jsonl"),
		BatchSize:    cfg.BatchSize,
	}, rdb, m, log)
	if err != nil {
		return err
	}
	defer d.Close()

	log.Info("starting", "task_file", cfg.TaskFile, "follow", cfg.Follow, "redis", redisconn.Redact(cfg.RedisURL))
	g, gctx := errgroup.WithContext(ctx)
	// Side loops stop when the dispatch loop ends (DISPATCH_FOLLOW=false).
	sideCtx, stopSide := context.WithCancel(gctx)
	srv := &ops.Server{
		Addr: cfg.MetricsAddr, Gatherer: m.Registry, Log: log,
		Health: func(ctx context.Context) error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		},
		Ready: d.Ready,
	}
	g.Go(func() error { return srv.Run(sideCtx) })
	g.Go(func() error { return queue.NewMonitor(rdb, m, cfg.MonitorInterval, log).Run(sideCtx) })
	g.Go(func() error {
		defer stopSide()
		return d.Run(gctx)
	})
	return g.Wait()
}
