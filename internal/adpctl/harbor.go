package adpctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"strings"

	"github.com/agentdataplatform/adp/internal/codeagent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/harbor"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/workspace"
)

const importArgs = "harbor [--out FILE] [--oracle|--noop] [--images DIR] [--engine docker|podman] [--base IMAGE]... [--max-cpus N] [--max-memory-mb N] [--max-storage-mb N] DIR..."

// errRefused makes import exit 1 after writing the tasks it could import.
var errRefused = errors.New("some task folders were refused")

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// importFlags are import's and validate's options for reading task
// folders. The options' Images (where built images go, and the engine that
// builds them) are found when the flags are read.
func importFlags(ctx context.Context, e Env, fs *flag.FlagSet) func() harbor.Options {
	var bases stringList
	images := fs.String("images", e.ImageStore.ArchiveDir, "the image archive directory task images are built into (SANDBOX_IMAGE_ARCHIVES: give the sandbox runtime the same directory)")
	engine := fs.String("engine", "", "container engine to build with (default: docker, else podman, whichever answers)")
	fs.Var(&bases, "base", "an image a Dockerfile may be FROM, besides "+strings.Join(harbor.DefaultBases, ", ")+" (repeatable)")
	cpus := fs.Float64("max-cpus", harbor.DefaultMaxCPUs, "refuse tasks whose task.toml asks for more CPUs")
	mem := fs.Int64("max-memory-mb", harbor.DefaultMaxMemoryMB, "refuse tasks whose task.toml asks for more memory (MB)")
	storage := fs.Int64("max-storage-mb", harbor.DefaultMaxStorageMB, "refuse tasks whose task.toml asks for more storage (MB)")
	return func() harbor.Options {
		o := harbor.Options{MaxCPUs: *cpus, MaxMemoryMB: *mem, MaxStorageMB: *storage}
		if len(bases) > 0 {
			o.Bases = append(append([]string(nil), harbor.DefaultBases...), bases...)
		}
		if *images != "" {
			o.Images = &harbor.Images{ArchiveDir: *images, Output: e.Stderr}
			if bin, err := imagestore.FindEngine(ctx, *engine, e.LookPath); err == nil {
				o.Images.Engine = bin
			} else if *engine != "" {
				fmt.Fprintf(e.Stderr, "adpctl: %v\n", err)
			}
		}
		return o
	}
}

// loadHarbor reads the task folders of paths; a refused folder is
// reported on stderr and left out.
func loadHarbor(ctx context.Context, e Env, paths []string, o harbor.Options) ([]core.TaskSpec, int, error) {
	dirs, err := harbor.Find(paths)
	if err != nil {
		return nil, 0, err
	}
	var tasks []core.TaskSpec
	refused := 0
	for _, d := range dirs {
		t, err := harbor.Load(ctx, d, o)
		var re *harbor.RefusedError
		switch {
		case errors.As(err, &re):
			fmt.Fprintf(e.Stderr, "refused %v\n", re)
			refused++
		case err != nil:
			return nil, 0, err
		default:
			tasks = append(tasks, t)
		}
	}
	return tasks, refused, nil
}

func cmdImport(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "import", importArgs)
	out := fs.String("out", "", "write the task lines to FILE instead of stdout")
	oracle := fs.Bool("oracle", false, "give each task actions that run its solution/solve.sh (for adpctl validate)")
	noop := fs.Bool("noop", false, "give each task one action, finish: the no-op agent, which must score 0")
	opts := importFlags(ctx, e, fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || pos[0] != "harbor" {
		return fmt.Errorf("%w: the format (harbor) and at least one DIR", errUsage)
	}
	if *oracle && *noop {
		return fmt.Errorf("%w: --oracle or --noop, not both", errUsage)
	}
	o := opts()
	o.Oracle, o.NoOp = *oracle, *noop
	tasks, refused, err := loadHarbor(ctx, e, pos[1:], o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for i := range tasks {
		line, err := tasks[i].MarshalLine()
		if err != nil {
			return fmt.Errorf("task %q: %w", tasks[i].TaskID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if *out == "" {
		if _, err := e.Stdout.Write(buf.Bytes()); err != nil {
			return err
		}
	} else if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	fmt.Fprintf(e.Stderr, "imported %d tasks, refused %d\n", len(tasks), refused)
	if refused > 0 {
		return fmt.Errorf("%w (%d)", errRefused, refused)
	}
	return nil
}

const validateArgs = "[--backend auto|nsjail|bwrap] [--workspace-root DIR] [--images DIR] [--engine docker|podman] [--base IMAGE]... FILE|DIR..."

// cmdValidate checks a dataset the way Harbor users do: each task's oracle
// (its actions; solution/solve.sh of a task folder) must score 1, and a
// no-op agent (finish at once) must score 0. It runs the code agent
// directly, in a jail, without Redis.
func cmdValidate(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "validate", validateArgs)
	backend := fs.String("backend", sandbox.BackendAuto, "the jail")
	seeds := fs.String("workspace-root", "", "where tasks' workspace seeds are (WORKSPACE_ROOT; default $OUTPUT_DIR/workspaces)")
	opts := importFlags(ctx, e, fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: a FILE of task lines or a DIR of Harbor task folders", errUsage)
	}
	var tasks []core.TaskSpec
	bad, refusedAll := 0, 0 // refused folders count as not valid
	o := opts()
	o.Oracle = true
	for _, p := range pos {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			ts, refused, err := loadHarbor(ctx, e, []string{p}, o)
			if err != nil {
				return err
			}
			tasks, bad, refusedAll = append(tasks, ts...), bad+refused, refusedAll+refused
			continue
		}
		ts, err := readTaskFile(p)
		if err != nil {
			return err
		}
		tasks = append(tasks, ts...)
	}
	jail, err := sandbox.New(*backend, sandbox.Config{})
	if err != nil {
		return err
	}
	if err := jail.Check(ctx); err != nil {
		return fmt.Errorf("the %s jail cannot run a program: %w", jail.Name(), err)
	}
	if *seeds == "" {
		*seeds = e.OutputDir + "/workspaces"
	}
	lim := sandbox.DefaultLimits()
	m, err := workspace.NewManager(workspace.Config{SeedRoot: *seeds, MaxOpen: 1}, jail, lim)
	if err != nil {
		return err
	}
	defer m.Close()
	a := &codeagent.Agent{Jail: jail, Limits: lim, Workspaces: m, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	if needsImages(tasks) {
		// The tasks' images, from the store adpctl env and the runtime use
		// (archives from --images).
		if e.imageStoreErr != nil {
			return fmt.Errorf("image store settings: %w", e.imageStoreErr)
		}
		cfg := e.ImageStore
		if o.Images != nil {
			cfg.ArchiveDir = o.Images.ArchiveDir
		}
		cfg.Log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		store, err := imagestore.Open(cfg)
		if err != nil {
			return err
		}
		defer store.Close()
		a.Environments = store
	}
	for _, t := range tasks {
		why, err := validateTask(ctx, a, t)
		if err != nil {
			return err
		}
		if why != "" {
			fmt.Fprintf(e.Stdout, "%s: %s\n", t.TaskID, why)
			bad++
		}
	}
	fmt.Fprintf(e.Stderr, "validated %d tasks: %d not valid\n", len(tasks)+refusedAll, bad)
	if bad > 0 {
		return fmt.Errorf("%d tasks are not valid", bad)
	}
	return nil
}

// needsImages reports whether a task names an environment.
func needsImages(tasks []core.TaskSpec) bool {
	for _, t := range tasks {
		if env, _ := t.Constraints["environment"].(string); env != "" {
			return true
		}
	}
	return false
}

// validateTask runs t's oracle and a no-op agent on it and says what is
// wrong (empty when nothing is).
func validateTask(ctx context.Context, a *codeagent.Agent, t core.TaskSpec) (string, error) {
	c, err := t.Code()
	if t.TaskType != core.TaskCode || err != nil {
		return "a " + string(t.TaskType) + " task: validate checks code tasks with a test_command", nil
	}
	if c.Actions == nil {
		return "no oracle: the task has no actions (import Harbor folders with --oracle)", nil
	}
	if c.TestCommand == "" {
		return "no check: the task has no test_command", nil
	}
	t.Samples = 1
	var problems []string
	oracle, err := a.Execute(ctx, t)
	if err != nil {
		return "", fmt.Errorf("task %q: the oracle: %w", t.TaskID, err)
	}
	if !oracle.Success || oracle.Reward == nil || *oracle.Reward != 1 {
		problems = append(problems, "the oracle scored "+rewardText(oracle))
	}
	noop := t
	noop.Constraints = maps.Clone(t.Constraints)
	noop.Constraints["actions"] = []any{map[string]any{"action": core.CodeActionFinish}}
	if err := noop.Validate(); err != nil {
		return "", fmt.Errorf("task %q: the no-op agent's task: %w", t.TaskID, err)
	}
	tr, err := a.Execute(ctx, noop)
	if err != nil {
		return "", fmt.Errorf("task %q: the no-op agent: %w", t.TaskID, err)
	}
	if tr.Success || tr.Reward == nil || *tr.Reward != 0 {
		problems = append(problems, "a no-op agent scored "+rewardText(tr))
	}
	return strings.Join(problems, "; "), nil
}

// rewardText is a trajectory's reward and why it failed, for validate's
// report.
func rewardText(tr *core.Trajectory) string {
	s := "no reward"
	if tr.Reward != nil {
		s = strconv.FormatFloat(*tr.Reward, 'g', -1, 64)
	}
	if tr.Success {
		return s + " (success)"
	}
	return s + " (" + string(tr.ErrorType) + ": " + clipText(tr.ErrorMessage, 160) + ")"
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readTaskFile reads the task lines of a tasks.jsonl file (blank lines
// skipped), validated.
func readTaskFile(path string) ([]core.TaskSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []core.TaskSpec
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), core.MaxTaskBytes+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		t, err := core.ParseTask(line)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", path, n, err)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}
