// Command dispatcher streams tasks.jsonl into the Redis task streams.
package main

import (
	"context"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/harbor"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/redisconn"
	"github.com/agentdataplatform/adp/internal/service"
)

// name and metricsAddr are the service's name in logs and its METRICS_ADDR default.
const name, metricsAddr = "dispatcher", ":8000"

type config struct {
	service.Config
	dispatch.EnvConfig
	// Harbor is how a TASK_FILE that is a Harbor dataset (a directory of
	// task folders, or one) is mapped, as `adpctl import harbor` does.
	Harbor          harbor.Settings
	MonitorInterval time.Duration `env:"MONITOR_INTERVAL" envDefault:"5s" valid:">0"`
}

func main() { service.Main(name, metricsAddr, &config{}, run) }

func run(ctx context.Context, p *service.Process, cfg *config) error {
	routes := map[string]string{}
	for _, t := range core.TaskTypes {
		routes[string(t)] = core.RuntimeFor(core.StreamFor(t))
	}
	p.Metrics.InitDispatcher(routes)

	taskFile := cfg.TaskFile
	if harbor.IsDataset(cfg.TaskFile) {
		var err error
		if taskFile, err = harborTasks(ctx, p, cfg); err != nil {
			return err
		}
	}
	d, err := dispatch.New(dispatch.Config{
		TaskFile:     taskFile,
		Follow:       cfg.Follow,
		PollInterval: cfg.PollInterval,
		RejectedFile: core.RejectedPath(cfg.OutputDir),
		BatchSize:    cfg.BatchSize,
	}, p.RDB, p.Metrics, p.Log)
	if err != nil {
		return err
	}
	defer d.Close()

	p.Log.Info("starting", "task_file", taskFile, "follow", cfg.Follow, "redis", redisconn.Redact(cfg.RedisURL))
	// The ops server and the monitor stop once the dispatch loop ends (on
	// shutdown, or with DISPATCH_FOLLOW=false once the file is dispatched).
	return p.Serve(ctx, service.Work{
		Run:   d.Run,
		Ready: d.Ready,
		Loops: []func(context.Context) error{queue.NewMonitor(p.RDB, p.Metrics, cfg.MonitorInterval, p.Log).Run},
	})
}

// harborTasks maps the Harbor dataset TASK_FILE names to a task file under
// OUTPUT_DIR (built images into SANDBOX_IMAGE_ARCHIVES), logs the folders
// refused, and returns the file. The dataset is read once, at start.
func harborTasks(ctx context.Context, p *service.Process, cfg *config) (string, error) {
	file, err := harbor.DatasetFile(cfg.OutputDir, cfg.TaskFile)
	if err != nil {
		return "", err
	}
	n, refused, err := harbor.WriteDataset(ctx, cfg.TaskFile, file, cfg.Harbor.Options(ctx, nil))
	for _, r := range refused {
		p.Log.Warn("Harbor task folder refused", "err", r)
	}
	if err != nil {
		return "", err
	}
	p.Log.Info("Harbor dataset", "dir", cfg.TaskFile, "tasks", n, "refused", len(refused), "agent", cfg.Harbor.Agent, "task_file", file)
	return file, nil
}
