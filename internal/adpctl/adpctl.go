// Package adpctl is the operator's CLI: queue status, task submission,
// dead-letter handling, and training-data export, stats and report from the
// trajectory files. cmd/adpctl only calls Run.
package adpctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/service"

	"github.com/agentdataplatform/adp/internal/redisconn"
)

// Env is what the CLI reads from its environment (REDIS_URL like the services).
type Env struct {
	RedisURL    string
	RedisCAFile string
	OutputDir   string
	// DemoAddr is ADP_DEMO_ADDR: the demo site's address for `up` and
	// `demo`; empty: demosite.DefaultAddr.
	DemoAddr string
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
	// ImageStore configures `adpctl env` (the SANDBOX_IMAGE_* variables,
	// shared with the sandbox runtime).
	ImageStore    imagestore.Config
	imageStoreErr error // reading ImageStore's variables failed
	// LookPath finds the container engine of `env build`; nil: exec.LookPath.
	LookPath func(string) (string, error)
}

// osEnv is what adpctl reads from its environment: the variables every
// service shares, with their defaults and ranges, and the demo site's
// address.
type osEnv struct {
	service.Config
	DemoAddr string `env:"ADP_DEMO_ADDR" valid:"hostport"` // default: demosite.DefaultAddr
}

// EnvFromOS reads REDIS_URL, REDIS_CA_FILE, OUTPUT_DIR and ADP_DEMO_ADDR
// with the services' defaults and checks them like the services do
// (envconfig): an error names the variable, its value and what is accepted.
func EnvFromOS() (Env, error) {
	var c osEnv
	if err := envconfig.Load(&c, nil); err != nil {
		return Env{}, err
	}
	e := Env{
		RedisURL: c.RedisURL, RedisCAFile: c.RedisCAFile, OutputDir: c.OutputDir, DemoAddr: c.DemoAddr,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	// The image store's variables are checked when `env` runs.
	e.imageStoreErr = envconfig.Load(&e.ImageStore, nil)
	return e, nil
}

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e Env, args []string) error
}

func commands() []command {
	return []command{
		{"up", "[--tasks FILE] [--output DIR] [--timeout D] [--keep]", "run the whole pipeline locally until every task is done (make run); --keep leaves it up (make up)", cmdUp},
		{"demo", "[--addr HOST:PORT]", "serve the offline demo website the sample web tasks use", cmdDemo},
		{"status", "[--json]", "streams, consumers, pending entries, dead letters and runtime health", cmdStatus},
		{"submit", "FILE|- | --json '<task>'", "validate and enqueue tasks like the dispatcher (same dedup)", cmdSubmit},
		{"dlq", "list|retry|purge", "inspect, retry or purge the dead-letter stream tasks:dead", cmdDLQ},
		{"export", exportArgs, "trajectories to training JSONL (per trajectory, best attempt per task, or groups of attempts)", cmdExport},
		{"stats", "[--json] [--dir DIR]", "success rates, error types, durations, cache hit rate", cmdStats},
		{"report", "--out report.html [--dir DIR]", "a self-contained HTML report with charts", cmdReport},
		{"import", importArgs, "Harbor task folders (instruction.md, task.toml, tests/, solution/) to task lines", cmdImport},
		{"validate", validateArgs, "each task's oracle must score 1 and a no-op agent 0 (runs them in a jail, no Redis)", cmdValidate},
		{"env", envArgs, "task environments: OCI images in the image store (SANDBOX_IMAGE_STORE)", cmdEnv},
	}
}

// errUsage marks errors that should print the usage (exit 2).
var errUsage = errors.New("usage")

// Run runs the CLI with args (without the program name) and returns the
// exit code: 0 ok, 1 failure, 2 usage error.
func Run(ctx context.Context, e Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.Stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errInterrupted):
				return 130
			case errors.Is(err, errUsage):
				fmt.Fprintf(e.Stderr, "adpctl %s: %v\nusage: adpctl %s %s\n", c.name, err, c.name, c.args)
				return 2
			default:
				fmt.Fprintf(e.Stderr, "adpctl %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(e.Stderr, "adpctl: unknown command %q\n", args[0])
	usage(e.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "adpctl — operate the Agent Data Platform\n\nUsage: adpctl COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %-62s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nEnvironment: REDIS_URL (default %s), REDIS_CA_FILE, OUTPUT_DIR (default %s);\nfor env: SANDBOX_IMAGE_STORE, SANDBOX_IMAGE_STORE_GB, SANDBOX_INSECURE_REGISTRIES (docs/environments.md).\nRun 'adpctl COMMAND --help' for a command's flags.\n",
		envconfig.Default(&service.Config{}, "REDIS_URL"), envconfig.Default(&service.Config{}, "OUTPUT_DIR"))
}

// newFlags returns a FlagSet that writes its usage to e.Stderr.
func newFlags(e Env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: adpctl %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, allowing them before and after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "-" || !strings.HasPrefix(args[0], "-") {
			pos = append(pos, args[0])
			args = args[1:]
			if len(args) == 0 {
				return pos, nil
			}
			continue
		}
	}
}

func (e Env) redis() (*redis.Client, error) {
	return redisconn.Open(e.RedisURL, redisconn.Options{CAFile: e.RedisCAFile})
}

func (e Env) trajectoryDir() string { return core.TrajectoriesPath(e.OutputDir) }
