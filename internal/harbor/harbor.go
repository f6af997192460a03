// Package harbor reads Harbor task folders (the layout of Terminal-Bench 2
// and the Harbor framework) as this platform's tasks:
//
//	instruction.md      → description
//	task.toml           → timeout (agent + verifier timeout_sec); cpus,
//	                      memory, storage → constraints.resources (checked
//	                      against the importer's caps, then the runtime's)
//	environment/        → a Dockerfile that is only a FROM of a base the
//	                      sandbox runtime provides (Options.Bases): no
//	                      environment; any other Dockerfile is built by the
//	                      host's engine into an image archive (Images), the
//	                      task's environment "archive:NAME"; refused when
//	                      nothing can build it
//	[environment] docker_image → environment, the image by reference
//	tests/              → test_files (hidden, at /tests for the verify step)
//	tests/test.sh       → test_command "bash /tests/test.sh"
//	solution/solve.sh   → the oracle: with Options.Oracle, the task's
//	                      actions run it
//
// What this platform cannot run as the task means it (the internet,
// several containers, a GPU, environment variables for the agent) is
// refused with an error naming the field, not
// imported to run wrongly. cmd adpctl's `import harbor` and `validate` use
// it; docs/harbor.md documents it.
package harbor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"

	"github.com/agentdataplatform/adp/internal/core"
)

// The files of a task folder.
const (
	InstructionFile = "instruction.md"
	// DockerfileField names the Dockerfile in refusals.
	DockerfileField = "environment/Dockerfile"
	ConfigFile      = "task.toml"
	EnvironmentDir  = "environment"
	TestsDir        = "tests"
	TestScript      = "test.sh"
	SolutionDir     = "solution"
	SolutionScript  = "solve.sh"

	// TestCommand runs the task's test script in the verify step, where
	// the tests are at /tests.
	TestCommand = "bash /tests/" + TestScript
	// DefaultTimeoutSec is Harbor's default agent and verifier timeout.
	DefaultTimeoutSec = 600.0
)

// DefaultBases are the images whose root is what the sandbox runtime's
// jails already see: its image (Dockerfile.sandbox) is Debian bookworm
// with python3, bash, coreutils, git and patch.
var DefaultBases = []string{"debian:bookworm-slim", "debian:bookworm", "debian:12-slim", "debian:12"}

// Options are the importer's settings.
type Options struct {
	// Oracle makes the task's actions run solution/solve.sh (for
	// `adpctl validate` and for recording the reference solution);
	// without it the task has no actions and a model works on it.
	Oracle bool
	// NoOp makes the task's actions only finish: the no-op agent, which
	// must score 0 (Oracle wins when both are set).
	NoOp bool
	// Images builds the Dockerfiles that are more than a FROM of a base;
	// nil: such a Dockerfile is refused, naming its line.
	Images *Images
	// Bases are the images a Dockerfile may be FROM (DefaultBases when
	// nil).
	Bases []string
	// MaxCPUs, MaxMemoryMB and MaxStorageMB cap what task.toml may ask
	// for: a task asking more is refused rather than run with less.
	MaxCPUs      float64
	MaxMemoryMB  int64
	MaxStorageMB int64
}

// Default caps (adpctl import's flags): the sandbox runtime's default
// caps, so that what imports runs.
var (
	DefaultMaxCPUs      = core.DefaultResourceCaps.CPUs
	DefaultMaxMemoryMB  = core.DefaultResourceCaps.MemoryMB
	DefaultMaxStorageMB = core.DefaultResourceCaps.WorkspaceMB
)

// RefusedError says why a task folder cannot be imported, naming the
// file or the task.toml field.
type RefusedError struct {
	Dir    string
	Field  string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Dir, e.Field, e.Reason)
}

// IsTask reports whether dir is a task folder (it has instruction.md).
func IsTask(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, InstructionFile))
	return err == nil && st.Mode().IsRegular()
}

// Find lists the task folders of paths: each path that is a task folder,
// and the task folders directly inside each that is not, sorted by path.
func Find(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if IsTask(p) {
			out = append(out, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("reading the task folders of %s: %w", p, err)
		}
		n := 0
		for _, e := range ents {
			d := filepath.Join(p, e.Name())
			if e.IsDir() && IsTask(d) {
				out = append(out, d)
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: neither a Harbor task folder (no %s) nor a directory of them", p, InstructionFile)
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// config is what task.toml says that the importer reads; the rest of the
// file (metadata, version, ...) is not the task's behaviour.
type config struct {
	Verifier struct {
		TimeoutSec *float64          `toml:"timeout_sec"`
		Env        map[string]string `toml:"env"`
	} `toml:"verifier"`
	Agent struct {
		TimeoutSec *float64 `toml:"timeout_sec"`
	} `toml:"agent"`
	Environment map[string]any `toml:"environment"`
}

// Load reads one task folder as a task (validated by core.ParseTask). Its
// task_id is the folder's name. The error is a *RefusedError when the
// folder is readable but cannot be run as it means.
func Load(ctx context.Context, dir string, o Options) (core.TaskSpec, error) {
	refuse := func(field, format string, a ...any) error {
		return &RefusedError{Dir: dir, Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	instr, err := os.ReadFile(filepath.Join(dir, InstructionFile))
	if err != nil {
		return core.TaskSpec{}, fmt.Errorf("%s: %w", dir, err)
	}
	var cfg config
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return core.TaskSpec{}, fmt.Errorf("%s: %w", dir, err)
	default:
		if err := toml.Unmarshal(raw, &cfg); err != nil {
			return core.TaskSpec{}, refuse(ConfigFile, "not valid TOML: %v", err)
		}
	}
	resources, err := checkEnvironment(cfg.Environment, o, refuse)
	if err != nil {
		return core.TaskSpec{}, err
	}
	environment, err := o.environment(ctx, dir, cfg.Environment, refuse)
	if err != nil {
		return core.TaskSpec{}, err
	}

	timeout := 0.0
	for _, t := range []struct {
		field string
		v     *float64
	}{{"agent.timeout_sec", cfg.Agent.TimeoutSec}, {"verifier.timeout_sec", cfg.Verifier.TimeoutSec}} {
		v := DefaultTimeoutSec
		if t.v != nil {
			v = *t.v
		}
		if !(v > 0) || math.IsInf(v, 0) {
			return core.TaskSpec{}, refuse(t.field, "%v is not a positive number of seconds", v)
		}
		timeout += v
	}
	if timeout > core.MaxTimeout {
		return core.TaskSpec{}, refuse("agent.timeout_sec", "with verifier.timeout_sec %.0f s in all, more than a task's %d s", timeout, core.MaxTimeout)
	}

	tests, err := readTree(filepath.Join(dir, TestsDir))
	if err != nil {
		return core.TaskSpec{}, refuse(TestsDir+"/", "%v", err)
	}
	if _, ok := tests[TestScript]; !ok {
		return core.TaskSpec{}, refuse(TestsDir+"/"+TestScript, "missing: the task has no check")
	}
	command, err := testCommand(cfg.Verifier.Env)
	if err != nil {
		return core.TaskSpec{}, refuse("verifier.env", "%v", err)
	}
	constraints := map[string]any{"test_files": tests, "test_command": command}
	if !resources.IsZero() {
		constraints["resources"] = resources
	}
	if o.Oracle {
		actions, err := oracle(dir, math.Ceil(derefOr(cfg.Agent.TimeoutSec, DefaultTimeoutSec)))
		if err != nil {
			return core.TaskSpec{}, refuse(SolutionDir+"/"+SolutionScript, "%v", err)
		}
		constraints["actions"] = actions
	} else if o.NoOp {
		constraints["actions"] = []any{map[string]any{"action": core.CodeActionFinish}}
	}
	if environment != "" {
		constraints["environment"] = environment
	}
	line, err := json.Marshal(map[string]any{
		"task_id": filepath.Base(filepath.Clean(dir)), "task_type": core.TaskCode,
		"description": string(instr), "timeout": int(math.Ceil(timeout)), "constraints": constraints,
	})
	if err != nil {
		return core.TaskSpec{}, err
	}
	spec, err := core.ParseTask(line)
	if err != nil {
		var ie *core.InvalidTaskError
		if errors.As(err, &ie) {
			return core.TaskSpec{}, refuse(ie.Field, "%s", ie.Reason)
		}
		return core.TaskSpec{}, refuse("task", "%v", err)
	}
	return spec, nil
}

func derefOr(p *float64, d float64) float64 {
	if p == nil {
		return d
	}
	return *p
}

// checkEnvironment checks task.toml's [environment]: every key is one the
// platform honours or refuses by name. cpus, memory and storage become
// the task's resources (memory and storage rounded up to whole MiB: never
// less than asked), which the sandbox runtime grants within its own caps.
func checkEnvironment(env map[string]any, o Options, refuse func(string, string, ...any) error) (core.Resources, error) {
	var res core.Resources
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	caps := map[string]float64{"cpus": orCap(o.MaxCPUs, DefaultMaxCPUs), "memory_mb": float64(orCapI(o.MaxMemoryMB, DefaultMaxMemoryMB)),
		"storage_mb": float64(orCapI(o.MaxStorageMB, DefaultMaxStorageMB))}
	for _, k := range keys {
		field, v := "environment."+k, env[k]
		switch k {
		case "build_timeout_sec":
			if n, ok := number(v); !ok || !(n > 0) {
				return res, refuse(field, "%v is not a positive number of seconds", v)
			}
		case "cpus", "memory_mb", "storage_mb", "memory", "storage":
			n, ok := number(v)
			if k == "memory" || k == "storage" {
				n, ok = sizeMB(v)
				k += "_mb"
			}
			if !ok || n < 0 {
				return res, refuse(field, "%v is not a size this importer reads", v)
			}
			if n > caps[k] {
				return res, refuse(field, "%v is more than the %v this importer allows (--max-%s): the jail would give the task less than it asks", v, caps[k], strings.ReplaceAll(k, "_", "-"))
			}
			switch k {
			case "cpus":
				res.CPUs = n
			case "memory_mb":
				res.MemoryMB = int64(math.Ceil(n))
			case "storage_mb":
				res.WorkspaceMB = int64(math.Ceil(n))
			}
		case "gpus":
			if n, ok := number(v); !ok || n != 0 {
				return res, refuse(field, "%v: the sandbox runtime has no GPUs", v)
			}
		case "gpu_types":
			// Only with gpus > 0, refused above.
		case "allow_internet":
			if b, ok := v.(bool); !ok || b {
				return res, refuse(field, "%v: jails have no network", v)
			}
		case "docker_image":
			s, ok := v.(string)
			if !ok {
				return res, refuse(field, "%v is not an image reference", v)
			}
			if err := core.ValidateEnvironment(s); err != nil || strings.HasPrefix(s, core.EnvironmentArchivePrefix) {
				return res, refuse(field, "%q: not an image reference that names its tag or digest (the task's environment): %v", s, err)
			}
		case "os":
			if s, ok := v.(string); !ok || s != "linux" {
				return res, refuse(field, "%v: jails run Linux", v)
			}
		case "mcp_servers":
			if l, ok := v.([]any); !ok || len(l) > 0 {
				return res, refuse(field, "MCP servers for the agent are not supported")
			}
		case "env":
			if m, ok := v.(map[string]any); !ok || len(m) > 0 {
				return res, refuse(field, "environment variables for the agent's environment are not supported")
			}
		default:
			return res, refuse(field, "not a field this importer knows how to honour")
		}
	}
	return res, nil
}

func orCap(v, d float64) float64 {
	if v > 0 {
		return v
	}
	return d
}

func orCapI(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	return 0, false
}

var sizeRE = regexp.MustCompile(`^(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$`)

// sizeMB reads a size such as "4G", "512M", "10Gi" or a number of bytes
// as MB.
func sizeMB(v any) (float64, bool) {
	if n, ok := number(v); ok {
		return n / (1 << 20), true
	}
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	switch strings.ToLower(m[2]) {
	case "":
		return n / (1 << 20), true
	case "k":
		return n / 1024, true
	case "m":
		return n, true
	case "g":
		return n * 1024, true
	default: // t
		return n * 1024 * 1024, true
	}
}

// checkDockerfile reads environment/: no Dockerfile, or one that is
// only a FROM of one of the bases (comments and blank lines aside), needs
// no image (the jail's root is what the task asks): buildLine is 0.
// Otherwise buildLine is the first line that makes it need a build, and
// why says so. A compose file is refused.
func checkDockerfile(envDir string, o Options, refuse func(string, string, ...any) error) (buildLine int, why string, err error) {
	for _, name := range []string{"docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml"} {
		if _, err := os.Stat(filepath.Join(envDir, name)); err == nil {
			return 0, "", refuse(EnvironmentDir+"/"+name, "tasks of several containers are not supported")
		}
	}
	data, err := os.ReadFile(filepath.Join(envDir, "Dockerfile"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", refuse(DockerfileField, "%v", err)
	}
	bases := o.Bases
	if bases == nil {
		bases = DefaultBases
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	froms := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if !strings.EqualFold(f[0], "FROM") || len(f) != 2 {
			return n, fmt.Sprintf("line %d %q builds an image", n, clip(line, 60)), nil
		}
		if froms++; froms > 1 {
			return n, fmt.Sprintf("line %d: a multi-stage build", n), nil
		}
		if !contains(bases, f[1]) {
			return n, fmt.Sprintf("line %d: FROM %s is not a base the sandbox runtime provides (%s; --base adds one)", n, f[1], strings.Join(bases, ", ")), nil
		}
	}
	return 0, "", nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readTree reads every regular file under dir, by slash-separated path:
// the text as a string, other bytes as {"base64": ...}. Symlinks and
// special files are refused.
func readTree(dir string) (map[string]any, error) {
	out := map[string]any{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", filepath.ToSlash(rel))
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if utf8.Valid(data) && !bytes.ContainsRune(data, 0) {
			out[filepath.ToSlash(rel)] = string(data)
		} else {
			out[filepath.ToSlash(rel)] = map[string]string{"base64": base64.StdEncoding.EncodeToString(data)}
		}
		return nil
	})
	return out, err
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// testCommand is TestCommand with the verifier's environment variables
// before it, each value single-quoted for the shell.
func testCommand(env map[string]string) (string, error) {
	names := make([]string, 0, len(env))
	for k := range env {
		if !envNameRE.MatchString(k) {
			return "", fmt.Errorf("%q is not a variable name", k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + "=" + shellQuote(env[k]) + " ")
	}
	return b.String() + TestCommand, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// oracleEOF ends the here-document that carries solve.sh.
const oracleEOF = "ADP_HARBOR_ORACLE_EOF"

// oracle is the actions that run solution/solve.sh in the workspace:
// one bash step, the script fed to a fresh bash as a here-document (its
// exit or set -e ends that bash, not the agent's shell), bounded by the
// agent's timeout.
func oracle(dir string, timeoutSec float64) ([]any, error) {
	sol := filepath.Join(dir, SolutionDir)
	files, err := readTree(sol)
	if err != nil {
		return nil, err
	}
	script, ok := files[SolutionScript].(string)
	if !ok {
		return nil, errors.New("missing or not text: the task has no oracle (--oracle)")
	}
	for name := range files {
		if name != SolutionScript {
			return nil, fmt.Errorf("the solution has other files (%s): only a solve.sh alone can be an oracle", name)
		}
	}
	for _, line := range strings.Split(script, "\n") {
		if line == oracleEOF {
			return nil, fmt.Errorf("has a line %q, which ends the here-document the oracle is run from", oracleEOF)
		}
	}
	t := int(math.Min(timeoutSec, core.MaxStepTimeout))
	cmd := "bash <<'" + oracleEOF + "'\n" + strings.TrimSuffix(script, "\n") + "\n" + oracleEOF
	return []any{
		map[string]any{"action": core.CodeActionBash, "command": cmd, "timeout": t},
		map[string]any{"action": core.CodeActionFinish},
	}, nil
}
