// Command sandbox-runtime serves code and reasoning tasks from tasks:code:
// it obtains a Python program, runs it in a jail (nsjail, or bubblewrap as a
// fallback), verifies the outcome and writes one trajectory per task.
package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"github.com/agentdataplatform/adp/internal/codeagent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/redisconn"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/service"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// name and metricsAddr are the service's name in logs and its METRICS_ADDR default.
const name, metricsAddr = "sandbox-runtime", ":8001"

type config struct {
	service.RuntimeConfig
	Concurrency  int           `env:"SANDBOX_CONCURRENCY" valid:">=1"` // programs at once; default: number of CPUs
	InFlight     int           `env:"SANDBOX_INFLIGHT" valid:">=1"`    // tasks at once; default: 2 × SANDBOX_CONCURRENCY
	Backend      string        `env:"SANDBOX_BACKEND" envDefault:"auto" valid:"oneof=auto nsjail bwrap"`
	MaxTimeout   time.Duration `env:"SANDBOX_MAX_TIMEOUT" envDefault:"600s" valid:">0"`
	RunTimeout   time.Duration `env:"SANDBOX_RUN_TIMEOUT" envDefault:"30s" valid:">0"`
	MemoryMB     int64         `env:"SANDBOX_MEMORY_MB" envDefault:"1024" valid:">=1"`
	MaxProcs     int           `env:"SANDBOX_MAX_PROCS" envDefault:"16" valid:">=1"`
	MaxThreads   int           `env:"SANDBOX_MAX_THREADS" envDefault:"256" valid:">=1"`
	Cgroups      string        `env:"SANDBOX_CGROUPS" envDefault:"auto" valid:"oneof=auto v1 off"`
	PythonPath   string        `env:"PYTHON_PATH" envDefault:"/usr/bin/python3" valid:"nonempty"`
	NsjailPath   string        `env:"NSJAIL_PATH"`
	NsjailConfig string        `env:"NSJAIL_CONFIG"`
	BwrapPath    string        `env:"BWRAP_PATH"`
	// SANDBOX_UID: the outside uid of bwrap jails and of the threads that
	// start them; a uid no other process on the host uses keeps those
	// threads out of reach of signals (sandbox.Config.SandboxUID).
	SandboxUID int `env:"SANDBOX_UID" envDefault:"65534" valid:"1..4294967294"`
	Workspace  workspaceConfig
	Caps       capsConfig
	// ImageStore holds the images tasks name as their environment.
	ImageStore imagestore.Config
}

// workspaceConfig configures the workspaces of workspace tasks
// (internal/workspace); the defaults are workspace.Default* (a test keeps
// them equal).
type workspaceConfig struct {
	MaxOpen          int    `env:"SANDBOX_MAX_WORKSPACES" valid:">=1"` // default: SANDBOX_INFLIGHT
	MaxMB            int64  `env:"SANDBOX_WORKSPACE_MB" envDefault:"256" valid:">=1"`
	MaxFiles         int    `env:"SANDBOX_WORKSPACE_FILES" envDefault:"20000" valid:">=1"`
	ObservationBytes int    `env:"SANDBOX_OBSERVATION_BYTES" envDefault:"16384" valid:">=1"`
	Dir              string `env:"SANDBOX_WORKSPACE_DIR"` // default: $TMPDIR/adp-workspaces
	SeedRoot         string `env:"WORKSPACE_ROOT"`        // default: $OUTPUT_DIR/workspaces
	// Post-setup snapshots kept (issue 27, workspace.OpenPrepared).
	MaxSnapshots int `env:"SANDBOX_SNAPSHOTS" envDefault:"8" valid:">=1"`
}

// capsConfig caps what a task's constraints.resources may ask
// (core.ResourceCaps); the defaults are core.DefaultResourceCaps (a test
// keeps them equal).
type capsConfig struct {
	MemoryMB    int64   `env:"SANDBOX_CAP_MEMORY_MB" envDefault:"4096" valid:">=1"`
	Procs       int     `env:"SANDBOX_CAP_PROCS" envDefault:"64" valid:">=1"`
	Threads     int     `env:"SANDBOX_CAP_THREADS" envDefault:"1024" valid:">=1"`
	CPUs        float64 `env:"SANDBOX_CAP_CPUS" envDefault:"4" valid:">0"`
	WorkspaceMB int64   `env:"SANDBOX_CAP_WORKSPACE_MB" envDefault:"10240" valid:">=1"`
}

// resourceCaps are the caps of cfg, checked to be at least the defaults
// (a task that asks for nothing gets those).
func (cfg *config) resourceCaps() (core.ResourceCaps, error) {
	c := cfg.Caps
	caps := core.ResourceCaps{MemoryMB: c.MemoryMB, MaxProcs: c.Procs, MaxThreads: c.Threads, CPUs: c.CPUs, WorkspaceMB: c.WorkspaceMB}
	for _, p := range []struct {
		cap, def string
		below    bool
	}{
		{"SANDBOX_CAP_MEMORY_MB", "SANDBOX_MEMORY_MB", c.MemoryMB < cfg.MemoryMB},
		{"SANDBOX_CAP_PROCS", "SANDBOX_MAX_PROCS", c.Procs < cfg.MaxProcs},
		{"SANDBOX_CAP_THREADS", "SANDBOX_MAX_THREADS", c.Threads < cfg.MaxThreads},
		{"SANDBOX_CAP_CPUS", "1 CPU", c.CPUs < 1},
		{"SANDBOX_CAP_WORKSPACE_MB", "SANDBOX_WORKSPACE_MB", c.WorkspaceMB < cfg.Workspace.MaxMB},
	} {
		if p.below {
			return caps, fmt.Errorf("%s is below %s: a task asking for nothing would get more than a task may ask for", p.cap, p.def)
		}
	}
	return caps, nil
}

// managerConfig is the workspace.Config of cfg.
func (cfg *config) managerConfig() workspace.Config {
	w := cfg.Workspace
	c := workspace.Config{
		Root: w.Dir, SeedRoot: w.SeedRoot, MaxBytes: w.MaxMB << 20, MaxFiles: w.MaxFiles,
		ObservationBytes: w.ObservationBytes, MaxOpen: w.MaxOpen, MaxSnapshots: w.MaxSnapshots,
	}
	if c.SeedRoot == "" {
		c.SeedRoot = filepath.Join(cfg.OutputDir, "workspaces")
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = cfg.InFlight
	}
	return c
}

func main() { service.Main(name, metricsAddr, &config{}, run) }

func run(ctx context.Context, p *service.Process, cfg *config) error {
	log := p.Log
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	if cfg.InFlight <= 0 {
		// Twice as many tasks as jails: while one task writes its
		// trajectory (fsync), is acknowledged or waits on the model,
		// another keeps its jail slot busy.
		cfg.InFlight = 2 * cfg.Concurrency
	}
	caps, err := cfg.resourceCaps()
	if err != nil {
		return err
	}
	jail, err := sandbox.New(cfg.Backend, sandbox.Config{
		PythonPath: cfg.PythonPath, NsjailPath: cfg.NsjailPath, NsjailConfig: cfg.NsjailConfig, BwrapPath: cfg.BwrapPath,
		SandboxUID: cfg.SandboxUID, Cgroups: cfg.Cgroups,
	})
	if err != nil {
		return err
	}
	// Refuse to start with a jail that cannot run a program.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = jail.Check(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("jail %s cannot run %s: %w", jail.Name(), cfg.PythonPath, err)
	}

	rdb, m := p.RDB, p.Metrics
	client, err := cfg.LLM.NewLLM(core.RuntimeSandbox, m)
	if err != nil {
		return err
	}
	limits := sandbox.DefaultLimits()
	limits.Wall, limits.CPU = cfg.RunTimeout, cfg.RunTimeout
	limits.MemoryBytes = cfg.MemoryMB << 20
	limits.MaxProcs = cfg.MaxProcs
	limits.MaxThreads = cfg.MaxThreads
	log.Info("sandbox limits", "bounds", sandbox.Bounds(jail), "memory_mb", cfg.MemoryMB, "max_procs", cfg.MaxProcs,
		"max_threads", cfg.MaxThreads, "caps", fmt.Sprintf("%+v", caps))

	jail = sandbox.Limit(jail, cfg.Concurrency)
	workspaces, err := workspace.NewManager(cfg.managerConfig(), jail, limits)
	if err != nil {
		return err
	}
	defer workspaces.Close()
	imgCfg := cfg.ImageStore
	imgCfg.Log = log
	var envs codeagent.Environments
	images, err := imagestore.Open(imgCfg)
	switch {
	case err != nil && imgCfg.Dir != "":
		return err
	case err != nil:
		// The default directory (the user's cache) may not exist for the
		// runtime's user: tasks with an environment are then invalid here.
		log.Warn("no image store: tasks with an environment will be refused (set SANDBOX_IMAGE_STORE)", "err", err)
	default:
		defer images.Close()
		envs = images
		log.Info("image store", "dir", images.Dir())
	}
	log.Info("sandbox ready", "backend", jail.Name(), "concurrency", cfg.Concurrency, "in_flight", cfg.InFlight, "python", cfg.PythonPath, "llm", client != nil, "redis", redisconn.Redact(cfg.RedisURL))
	return p.ServeRuntime(ctx, service.Runtime{
		Name: core.RuntimeSandbox, Stream: core.StreamCode, Concurrency: cfg.InFlight,
		Config: cfg.RuntimeConfig, HasModel: client != nil, MaxTimeout: cfg.MaxTimeout,
		CacheTypes: []string{string(core.TaskCode), string(core.TaskReasoning)},
		Exec: &codeagent.Agent{
			Jail: jail, Limits: limits, Caps: caps, LLM: client, Workspaces: workspaces, Environments: envs,
			Cache:   templatecache.New(rdb, templatecache.Options{TTL: cfg.CacheTTL}),
			Metrics: m, Log: log,
		},
		Checks: []func(context.Context) error{jail.Check},
	})
}
