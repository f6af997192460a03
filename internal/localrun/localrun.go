// Package localrun runs the whole pipeline on one machine without Docker,
// as `make run` (adpctl up) does: a private redis-server, the demo site, the
// dispatcher and both runtimes as local processes; it shows progress, stops
// when every attempt of every task of the file (samples of them) has a
// trajectory or is dead-lettered, prints a
// summary, and stops everything it started.
package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/harbor"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/report"
	"github.com/agentdataplatform/adp/internal/service"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// Config configures a local run.
type Config struct {
	TaskFile  string // default TASK_FILE's (dispatch.EnvConfig)
	OutputDir string // default OUTPUT_DIR's (service.Config)
	// BinDir holds dispatcher, sandbox-runtime and web-runtime; default the
	// directory of the running executable.
	BinDir string
	// DemoAddr is where the demo site is served (the shipped tasks.jsonl
	// points there); empty disables it.
	DemoAddr string
	// Timeout bounds the whole run (0: none).
	Timeout time.Duration
	// Progress receives the progress bar (a terminal) or progress lines.
	Progress io.Writer
	Terminal bool
	// ExtraEnv is added to the children's environment (after os.Environ).
	ExtraEnv []string
	// StopGrace is how long each child may take to stop. Default: the
	// default of SHUTDOWN_GRACE (service.RuntimeConfig), the time a runtime
	// gives its in-flight tasks to finish.
	StopGrace time.Duration
	// RedisAddr is where Redis listens; empty: a free loopback port (the
	// run's private Redis). Keep runs use KeepRedisAddr.
	RedisAddr string
	// Keep leaves the stack up once every task of the file is done (Done is
	// called then) until ctx is cancelled, with every service started
	// whatever the file holds, so that more tasks can be appended to the
	// file or submitted (adpctl up --keep). A file with no lines at all is
	// then allowed; Run returns nil when ctx ends after Done.
	Keep bool
	// Done, if set, receives the summary once every task of the file is done.
	Done func(*Summary)
}

// KeepRedisAddr is where `adpctl up --keep` serves Redis: the address
// REDIS_URL, adpctl and redis-cli default to, so that the runbook's
// commands (docs/operations.md) work as printed against the stack.
const KeepRedisAddr = "127.0.0.1:6379"

// ErrInterrupted is returned when ctx was cancelled (Ctrl-C) before the end.
var ErrInterrupted = errors.New("interrupted")

// Summary is the outcome of a run.
type Summary struct {
	Tasks        int           `json:"tasks"`         // valid, distinct tasks in the file
	Attempts     int           `json:"attempts"`      // their samples, summed: the trajectories expected
	Rejected     int           `json:"rejected"`      // invalid lines
	Done         int           `json:"done"`          // attempts with a trajectory
	DeadLettered int           `json:"dead_lettered"` // attempts in tasks:dead
	Elapsed      time.Duration `json:"elapsed_ns"`    // from the dispatcher's start to the last result
	Stats        *report.Stats `json:"stats"`         // over this run's trajectories
	OutputDir    string        `json:"output_dir"`
}

// MarshalJSON adds the derived figures.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	var rate *float64 // absent when too few tasks or too short for a rate
	if r, ok := s.TasksPerMinute(); ok {
		rate = &r
	}
	return json.Marshal(struct {
		plain
		ElapsedSeconds float64  `json:"elapsed_seconds"`
		TasksPerMinute *float64 `json:"tasks_per_minute,omitempty"`
	}{plain(s), s.Elapsed.Seconds(), rate})
}

// A run's rate is given only over at least minRateTasks tasks and
// minRateElapsed: below, it says nothing (a resume with nothing left to do
// "ran" thousands of tasks a minute).
const (
	minRateTasks   = 5
	minRateElapsed = 10 * time.Second
)

// TasksPerMinute is the throughput of the run; ok is false under
// minRateTasks tasks done or minRateElapsed.
func (s Summary) TasksPerMinute() (rate float64, ok bool) {
	n := s.Done + s.DeadLettered
	if n < minRateTasks || s.Elapsed < minRateElapsed {
		return 0, false
	}
	return float64(n) / s.Elapsed.Minutes(), true
}

// rateText is the run's duration with its rate ("292.9 tasks/min over
// 30s"), or with why it has none ("1.6s, too short for a rate").
func (s Summary) rateText(unit string) string {
	d := s.Elapsed.Round(100 * time.Millisecond)
	if r, ok := s.TasksPerMinute(); ok {
		return fmt.Sprintf("%.1f %s/min over %s", r, unit, d)
	}
	if s.Elapsed < minRateElapsed {
		return fmt.Sprintf("%s, too short for a rate", d)
	}
	return fmt.Sprintf("%s, too few %s for a rate", d, unit)
}

// Run executes the pipeline until every task is accounted for. It returns
// the summary and nil when the run completed (failed tasks are data, not an
// error); an error when the pipeline itself failed or ctx was cancelled.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg = withDefaults(cfg)
	tasks, rejected, err := readTasks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if len(tasks) == 0 && !(cfg.Keep && len(rejected) == 0) {
		return nil, noValidTask(cfg.TaskFile, rejected)
	}
	sum := &Summary{Tasks: len(tasks), Attempts: len(attemptsOf(tasks)), Rejected: len(rejected), OutputDir: cfg.OutputDir}
	logDir := filepath.Join(cfg.OutputDir, core.LogsDir)
	trajDir := core.TrajectoriesPath(cfg.OutputDir)
	for _, d := range []string{logDir, trajDir, filepath.Join(cfg.OutputDir, core.RedisDataDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}

	r := &runner{cfg: cfg, logDir: logDir}
	defer r.stopAll()
	if err := r.launch(ctx, tasks); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "adp: %d tasks, %d attempts (%d lines rejected, see %s), redis %s, logs in %s\n",
		len(tasks), sum.Attempts, len(rejected), core.RejectedPath(cfg.OutputDir), r.redisAddr, logDir)

	err = r.wait(ctx, tasks, trajDir, sum)
	if err == nil {
		sum.Stats = collect(tasks, trajDir)
		if cfg.Done != nil {
			cfg.Done(sum)
		}
		if cfg.Keep {
			fmt.Fprintf(cfg.Progress, "adp: the stack stays up: redis %s, demo site %s, task file %s (followed); Ctrl-C stops it\n",
				r.redisAddr, orNone(r.demoAddr), cfg.TaskFile)
			err = r.hold(ctx)
		}
	}
	r.saveMetrics()
	r.stopAll()
	if err != nil {
		return sum, err
	}
	return sum, nil
}

// readTasks reads the run's tasks: the task file's lines, or those of a
// Harbor dataset (TaskFile a directory), mapped under the Harbor settings
// of the children's environment (HARBOR_AGENT, SANDBOX_IMAGE_ARCHIVES)
// into the file the dispatcher, given the same directory, maps it to.
// A refused folder counts as a rejected line.
func readTasks(ctx context.Context, cfg Config) ([]core.TaskSpec, []error, error) {
	if !harbor.IsDataset(cfg.TaskFile) {
		return dispatch.ReadTasks(cfg.TaskFile)
	}
	environ := map[string]string{}
	for _, kv := range append(os.Environ(), cfg.ExtraEnv...) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			environ[k] = v
		}
	}
	var s harbor.Settings
	if err := envconfig.Load(&s, environ); err != nil {
		return nil, nil, err
	}
	outDir, err := filepath.Abs(cfg.OutputDir)
	if err != nil {
		return nil, nil, err
	}
	file, err := harbor.DatasetFile(outDir, cfg.TaskFile)
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(cfg.Progress, "adp: reading the Harbor dataset %s (agent %s)\n", cfg.TaskFile, s.Agent)
	_, refused, err := harbor.WriteDataset(ctx, cfg.TaskFile, file, s.Options(ctx, cfg.Progress))
	for _, r := range refused {
		fmt.Fprintf(cfg.Progress, "adp: refused %v\n", r)
	}
	if err != nil {
		return nil, refused, err
	}
	tasks, rejected, err := dispatch.ReadTasks(file)
	return tasks, append(refused, rejected...), err
}

// hold keeps the stack up until ctx ends (nil) or a service exits (its
// error).
func (r *runner) hold(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the watchers below
	exited := make(chan *proc, len(r.procs))
	for _, p := range r.procs {
		go func() {
			select {
			case <-p.exited:
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-exited:
		return fmt.Errorf("the stack stopped: %w", p.exitError())
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// maxShownRejects bounds the rejected lines noValidTask quotes.
const maxShownRejects = 5

// noValidTask is the error of a task file with nothing to run: it quotes the
// first rejected lines, so that the user sees why without a log to open.
func noValidTask(file string, rejected []error) error {
	var b strings.Builder
	for i, r := range rejected {
		if i == maxShownRejects {
			fmt.Fprintf(&b, "\n  … and %d more", len(rejected)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %v", r)
	}
	if len(rejected) > 0 {
		b.WriteString("\neach line of a task file must be one whole JSON object (see docs/tasks.md)")
	}
	return fmt.Errorf("%s has %w: %d lines rejected%s", file, dispatch.ErrNoValidTask, len(rejected), b.String())
}

func withDefaults(cfg Config) Config {
	if cfg.TaskFile == "" {
		cfg.TaskFile = dispatch.DefaultEnvConfig().TaskFile
	}
	if cfg.OutputDir == "" {
		cfg.OutputDir = envconfig.Default(&service.Config{}, "OUTPUT_DIR")
	}
	if cfg.BinDir == "" {
		if exe, err := os.Executable(); err == nil {
			cfg.BinDir = filepath.Dir(exe)
		}
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.StopGrace <= 0 {
		grace, err := time.ParseDuration(envconfig.Default(&service.RuntimeConfig{}, "SHUTDOWN_GRACE"))
		if err != nil {
			panic(fmt.Sprintf("localrun: SHUTDOWN_GRACE's default: %v", err)) // TestDefaults
		}
		cfg.StopGrace = grace
	}
	return cfg
}

type runner struct {
	cfg       Config
	logDir    string
	redisAddr string
	demoAddr  string // where the demo site listens; "" without one
	rdb       *redis.Client
	procs     []*proc // in start order; stopped in reverse
	demo      *http.Server
	// metricsAddrs are the services' METRICS_ADDR by binary name.
	metricsAddrs map[string]string
	known        map[attempt]bool // attempts dispatched before this run (dedup)
	begun        time.Time        // before anything started: older files are from earlier runs
	start        time.Time        // the dispatcher is up: throughput counts from here
}

func (r *runner) launch(ctx context.Context, tasks []core.TaskSpec) error {
	r.begun = time.Now()
	// 1. Redis, on loopback (a free port unless RedisAddr says), AOF under
	// output/redis.
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found: run scripts/bootstrap.sh --run (apt-get install redis-server)")
	}
	r.redisAddr = r.cfg.RedisAddr
	if r.redisAddr == "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		r.redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	} else if err := checkFree(r.redisAddr); err != nil {
		return err
	}
	rhost, rport, err := net.SplitHostPort(r.redisAddr)
	if err != nil {
		return fmt.Errorf("redis address %q: %w", r.redisAddr, err)
	}
	redisDir, _ := filepath.Abs(filepath.Join(r.cfg.OutputDir, core.RedisDataDir))
	rp, err := startProc("redis-server", filepath.Join(r.logDir, "redis.log"), os.Environ(), bin,
		"--bind", rhost, "--port", rport, "--dir", redisDir,
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--maxmemory-policy", "noeviction", "--protected-mode", "yes", "--daemonize", "no")
	if err != nil {
		return err
	}
	r.procs = append(r.procs, rp)
	r.rdb = redis.NewClient(&redis.Options{Addr: r.redisAddr})
	if err := rp.waitReady(ctx, func() error { return r.rdb.Ping(ctx).Err() }, 30*time.Second); err != nil {
		return err
	}
	// Ids this Redis has already seen: their existing trajectories count.
	ids, err := r.rdb.SMembers(ctx, core.KeyDispatched).Result()
	if err != nil {
		return fmt.Errorf("read %s: %w", core.KeyDispatched, err)
	}
	r.known = make(map[attempt]bool, len(ids))
	for _, m := range ids {
		id, k := core.ParseDispatchedMember(m)
		r.known[attempt{id, k}] = true
	}

	// 2. The demo site the shipped web tasks point at.
	var demoAddr netip.AddrPort // where it listens, with a dialable address
	if r.cfg.DemoAddr != "" {
		ln, err := net.Listen("tcp", r.cfg.DemoAddr)
		if err != nil {
			return fmt.Errorf("serve the demo site on %s (set ADP_DEMO_ADDR to another address): %w", r.cfg.DemoAddr, err)
		}
		demoAddr = dialable(ln.Addr().(*net.TCPAddr).AddrPort())
		r.demo = &http.Server{Handler: demosite.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = r.demo.Serve(ln) }()
		r.demoAddr = demoAddr.String()
	}

	// 3. The services.
	outDir, _ := filepath.Abs(r.cfg.OutputDir)
	taskFile, _ := filepath.Abs(r.cfg.TaskFile)
	env := append(os.Environ(),
		"REDIS_URL=redis://"+r.redisAddr, "OUTPUT_DIR="+outDir, "TASK_FILE="+taskFile, "DISPATCH_FOLLOW=true",
		"SHUTDOWN_GRACE=10s")
	if demoAddr.IsValid() {
		// The tasks name the site demo-site:8765 (its compose service), which
		// the web runtime forwards to exactly where the site listens, and
		// nothing else: not to whatever else listens on 127.0.0.1:8765. A
		// task may also name the site by its address.
		hosts := demoAddr.String()
		if v := os.Getenv("WEB_ALLOW_HOSTS"); v != "" {
			hosts = v + "," + hosts
		}
		aliases := demosite.TaskAddr + "=" + demoAddr.String()
		if v := os.Getenv("WEB_HOST_ALIASES"); v != "" {
			aliases = v + "," + aliases
		}
		env = append(env, "WEB_ALLOW_HOSTS="+hosts, "WEB_HOST_ALIASES="+aliases)
	}
	env = append(env, r.cfg.ExtraEnv...)
	need := map[string]bool{"dispatcher": true}
	for _, t := range tasks {
		need[core.RuntimeFor(core.StreamFor(t.TaskType))] = true
	}
	if r.cfg.Keep { // tasks of any type may come later
		need[core.RuntimeSandbox], need[core.RuntimeWeb] = true, true
	}
	// Runtimes first, so the dispatcher's first tasks find them ready.
	services := []struct{ name, bin string }{
		{core.RuntimeSandbox, "sandbox-runtime"}, {core.RuntimeWeb, "web-runtime"}, {"dispatcher", "dispatcher"},
	}
	for _, s := range services {
		if !need[s.name] {
			continue
		}
		mport, err := freePort()
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mport))
		p, err := startProc(s.bin, filepath.Join(r.logDir, s.bin+".log"), append(env, "METRICS_ADDR="+addr), filepath.Join(r.cfg.BinDir, s.bin))
		if err != nil {
			return fmt.Errorf("%w (run make build)", err)
		}
		r.procs = append(r.procs, p)
		if r.metricsAddrs == nil {
			r.metricsAddrs = map[string]string{}
		}
		r.metricsAddrs[s.bin] = addr
		if err := p.waitReady(ctx, httpOK("http://"+addr+"/healthz"), 90*time.Second); err != nil {
			return err
		}
		fmt.Fprintf(r.cfg.Progress, "adp: %s ready, metrics on http://%s/metrics\n", s.bin, addr)
		if s.name == "dispatcher" {
			r.start = time.Now()
		}
	}
	return nil
}

func httpOK(url string) func() error {
	c := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// attempt is one of a task's samples: what has one trajectory file.
type attempt struct {
	id string
	k  int
}

func (a attempt) file(trajDir string) string {
	return filepath.Join(trajDir, core.TrajectoryFileName(a.id, a.k))
}

// attemptsOf lists every attempt of tasks: k = 0..samples-1 of each.
func attemptsOf(tasks []core.TaskSpec) []attempt {
	var out []attempt
	for _, t := range tasks {
		for k := range max(t.Samples, 1) {
			out = append(out, attempt{t.TaskID, k})
		}
	}
	return out
}

// wait polls until every attempt has a trajectory or a dead-letter entry.
func (r *runner) wait(ctx context.Context, tasks []core.TaskSpec, trajDir string, sum *Summary) error {
	all := attemptsOf(tasks)
	pending := make(map[attempt]bool, len(all))
	for _, a := range all {
		pending[a] = true
	}
	bar := newProgress(r.cfg.Progress, r.cfg.Terminal, len(all), r.start)
	failed := 0
	// The last result's time: the files' modification times, not when
	// this loop noticed them (it polls).
	var last time.Time
	done := func() time.Duration {
		if last.IsZero() {
			return time.Since(r.start)
		}
		return last.Sub(r.start)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		for a := range pending {
			st, err := os.Stat(a.file(trajDir))
			if err != nil || (!r.known[a] && st.ModTime().Before(r.begun.Add(-time.Second))) {
				continue
			}
			delete(pending, a)
			sum.Done++
			if mt := st.ModTime(); mt.After(last) && mt.After(r.start) {
				last = mt
			}
			if tr, err := trajectory.Read(a.file(trajDir)); err == nil && !tr.Success {
				failed++
			}
		}
		if len(pending) > 0 {
			dead, err := queue.ListDead(ctx, r.rdb, 0)
			if err == nil {
				for _, d := range dead {
					if t, err := core.ParseTaskWithDefaultID([]byte(d.Task), "-"); err == nil {
						if a := (attempt{t.TaskID, d.Sample}); pending[a] {
							delete(pending, a)
							sum.DeadLettered++
							last = time.Now()
						}
					}
				}
			}
		}
		bar.update(sum.Done+sum.DeadLettered, failed+sum.DeadLettered)
		if len(pending) == 0 {
			sum.Elapsed = done()
			bar.finish()
			return nil
		}
		for _, p := range r.procs {
			select {
			case <-p.exited:
				bar.finish()
				return fmt.Errorf("pipeline failed: %w", p.exitError())
			default:
			}
		}
		select {
		case <-ctx.Done():
			bar.finish()
			sum.Elapsed = time.Since(r.start)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out with %d of %d attempts unfinished", len(pending), len(all))
			}
			return ErrInterrupted
		case <-tick.C:
		}
	}
}

// saveMetrics keeps each service's final /metrics in
// output/logs/<service>.metrics.prom: the services stop with the run.
func (r *runner) saveMetrics() {
	c := &http.Client{Timeout: 2 * time.Second}
	for name, addr := range r.metricsAddrs {
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			_ = os.WriteFile(filepath.Join(r.logDir, name+".metrics.prom"), b, 0o644)
		}
	}
}

// stopAll stops the children in reverse start order (dispatcher and
// runtimes first, Redis last) and the demo site.
func (r *runner) stopAll() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop(r.cfg.StopGrace)
	}
	r.procs = nil
	if r.rdb != nil {
		r.rdb.Close()
		r.rdb = nil
	}
	if r.demo != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = r.demo.Shutdown(ctx)
		cancel()
		r.demo = nil
	}
}

// collect computes the stats of this run's trajectories: every attempt's.
func collect(tasks []core.TaskSpec, trajDir string) *report.Stats {
	var acc report.Accumulator
	for _, a := range attemptsOf(tasks) {
		path := a.file(trajDir)
		tr, err := trajectory.Read(path)
		if err != nil {
			if !os.IsNotExist(err) {
				acc.AddInvalid(path, err)
			}
			continue
		}
		acc.Add(tr)
	}
	return acc.Stats()
}

// dialable turns a listener's address into one to connect to: the
// unspecified address (listening on all) becomes loopback.
func dialable(ap netip.AddrPort) netip.AddrPort {
	if a := ap.Addr().Unmap(); a.IsUnspecified() {
		if a.Is4() {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
		}
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// checkFree fails, saying what to do, when something already listens on
// addr: Redis would not start, and the commands meant for this stack would
// reach the other server.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("redis address %s is in use (another Redis? stop it, or choose another address with --redis-addr): %w", addr, err)
	}
	return l.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WriteSummary prints the summary: per type, done, succeeded, failed by
// error type, and duration percentiles.
func WriteSummary(w io.Writer, s *Summary) {
	if s.Attempts > s.Tasks {
		fmt.Fprintf(w, "\n%d tasks, %d attempts: %d with a trajectory, %d dead-lettered, %d lines rejected; %s\n",
			s.Tasks, s.Attempts, s.Done, s.DeadLettered, s.Rejected, s.rateText("attempts"))
	} else {
		fmt.Fprintf(w, "\n%d tasks: %d with a trajectory, %d dead-lettered, %d lines rejected; %s\n",
			s.Tasks, s.Done, s.DeadLettered, s.Rejected, s.rateText("tasks"))
	}
	if s.Stats == nil || s.Stats.Total == 0 {
		return
	}
	fmt.Fprintf(w, "%-10s %6s %9s %7s %9s %9s  %s\n", "TYPE", "DONE", "SUCCEEDED", "FAILED", "P50", "P95", "FAILURES BY ERROR TYPE")
	for _, ts := range s.Stats.ByType {
		var fails []string
		for _, c := range ts.FailuresByErrorType {
			fails = append(fails, fmt.Sprintf("%s=%d", c.Name, c.Count))
		}
		sort.Strings(fails)
		fmt.Fprintf(w, "%-10s %6d %9d %7d %8.2fs %8.2fs  %s\n", ts.TaskType, ts.Total, ts.Succeeded, ts.Failed, ts.Duration.P50, ts.Duration.P95, strings.Join(fails, " "))
	}
	fmt.Fprintf(w, "Trajectories in %s; `adpctl stats`, `adpctl report`, `adpctl export` read them.\n", core.TrajectoriesPath(s.OutputDir))
}
