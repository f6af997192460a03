// Command dispatcher streams tasks.jsonl into the Redis task streams.
package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/harbor"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/redisconn"
	"github.com/agentdataplatform/adp/internal/service"
)

// name and metricsAddr are the service's name in logs and its METRICS_ADDR default.
const name, metricsAddr = "dispatcher", ":8000"

type config struct {
	service.Config
	// TaskFile is a file of task lines, or a Harbor dataset (a directory
	// of task folders, or one), mapped as `adpctl import harbor` does
	// under Harbor's settings.
	TaskFile        string `env:"TASK_FILE" envDefault:"tasks.jsonl" valid:"nonempty"`
	Harbor          harbor.Settings
	Follow          bool          `env:"DISPATCH_FOLLOW" envDefault:"true"`
	MonitorInterval time.Duration `env:"MONITOR_INTERVAL" envDefault:"5s" valid:">0"`
	PollInterval    time.Duration `env:"DISPATCH_POLL_INTERVAL" envDefault:"500ms" valid:">0"`
	BatchSize       int           `env:"DISPATCH_BATCH_SIZE" envDefault:"256"`
}

// Check bounds DISPATCH_BATCH_SIZE by the dispatcher's own maximum
// (envconfig.Checker).
func (c *config) Check() error {
	return envconfig.Range("DISPATCH_BATCH_SIZE", c.BatchSize, 1, dispatch.MaxBatchSize)
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
		RejectedFile: filepath.Join(cfg.OutputDir, "rejected.jsonl"),
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
