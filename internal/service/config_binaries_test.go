package service_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// Every binary stops on a bad variable with one line naming the variable,
// its value and what is accepted, before anything else is logged, and
// exits 2 (no panic, no Go field names, no Redis contacted).
func TestBadConfigurationStopsTheBinary(t *testing.T) {
	bin := testsupport.BuildBinaries(t)
	cases := []struct {
		binary, env string
		want        string // what the line must say after "VAR=value"
	}{
		{"sandbox-runtime", "LEASE_TTL=-5s", "a duration greater than 0"},
		{"web-runtime", "LEASE_TTL=-5s", "a duration greater than 0"},
		{"sandbox-runtime", "MAX_DELIVERIES=0", "a whole number of at least 1"},
		{"sandbox-runtime", "MAX_DELIVERIES=many", "a whole number"},
		{"sandbox-runtime", "SHUTDOWN_GRACE=-1s", "a duration greater than 0"},
		{"dispatcher", "MONITOR_INTERVAL=-1s", "a duration greater than 0"},
		{"dispatcher", "DISPATCH_POLL_INTERVAL=0s", "a duration greater than 0"},
		{"dispatcher", "DISPATCH_BATCH_SIZE=5000", "a whole number from 1 to 4096"},
		{"dispatcher", "DISPATCH_FOLLOW=maybe", "true or false"},
		{"sandbox-runtime", "SANDBOX_CONCURRENCY=-2", "a whole number of at least 1"},
		{"web-runtime", "MAX_CONCURRENT=0", "a whole number of at least 1"},
		{"sandbox-runtime", "CACHE_TTL=-1h", "a duration greater than 0"},
		{"web-runtime", "BROWSER_RECYCLE_AFTER=-5", "or -1 for never"},
		{"web-runtime", "WEB_HOST_ALIASES=demo-site=somewhere", "name=IP-address pairs"},
		{"sandbox-runtime", "SANDBOX_WORKSPACE_MB=-1", "a whole number of at least 1"},
		{"sandbox-runtime", "SANDBOX_MAX_TIMEOUT=0s", "a duration greater than 0"},
		{"sandbox-runtime", "SANDBOX_RUN_TIMEOUT=10", "a duration such as 30s"},
		{"sandbox-runtime", "SANDBOX_BACKEND=docker", "one of auto, nsjail, bwrap"},
		{"sandbox-runtime", "SANDBOX_UID=0", "a whole number from 1 to 4294967294"},
		// LLM_* are checked without LLM_BASE_URL too.
		{"sandbox-runtime", "LLM_TIMEOUT=-1s", "a duration greater than 0"},
		{"web-runtime", "LLM_TOP_P=2", "(0, 1]"},
		{"sandbox-runtime", "LLM_TEMPERATURE=hot", "a number"},
		{"sandbox-runtime", "LLM_API=completions", "completions with LLM_TOOL_MODE=text"},
		{"sandbox-runtime", "LLM_BASE_URL=localhost:8000", "an http:// or https:// URL"},
		{"dispatcher", "LOG_LEVEL=verbose", "one of debug, info, warn, error"},
		{"web-runtime", "LOG_LEVEL=verbose", "one of debug, info, warn, error"},
		{"sandbox-runtime", "METRICS_ADDR=garbage", "host:port with a numeric port"},
		{"dispatcher", "REDIS_URL=http://localhost:6379", "a redis://"},
		{"adpctl", "REDIS_URL=localhost", "a redis://"},
		{"adpctl", "ADP_DEMO_ADDR=8765", "host:port with a numeric port"},
	}
	for _, c := range cases {
		t.Run(c.binary+"/"+c.env, func(t *testing.T) {
			t.Parallel()
			args := []string{}
			if c.binary == "adpctl" {
				args = []string{"status"}
			}
			cmd := exec.Command(filepath.Join(bin, c.binary), args...)
			// A Redis URL nothing listens on: the binary must stop before
			// contacting it (it would log a connection error otherwise).
			cmd.Env = append(cleanEnv(t), "REDIS_URL=redis://127.0.0.1:1", c.env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2\nstderr: %s", err, stderr.String())
			}
			name, value, _ := strings.Cut(c.env, "=")
			prefix := c.binary + ": configuration: " + name + "=\"" + value + "\" is not accepted: want "
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, prefix) || !strings.Contains(line, c.want) {
				t.Errorf("stderr = %q\nwant one line %q... saying %q", line, prefix, c.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// The defaults pass the checks: each service gets as far as its
// -healthcheck (exit 1, nothing listens) and adpctl runs help (exit 0).
func TestDefaultConfigurationAccepted(t *testing.T) {
	bin := testsupport.BuildBinaries(t)
	for _, b := range []string{"dispatcher", "sandbox-runtime", "web-runtime", "adpctl"} {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			arg, want := "-healthcheck", 1
			if b == "adpctl" {
				arg, want = "help", 0
			}
			cmd := exec.Command(filepath.Join(bin, b), arg)
			cmd.Env = append(cleanEnv(t), "METRICS_ADDR=127.0.0.1:1")
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != want || strings.Contains(string(out), "configuration") {
				t.Errorf("%s %s: exit %d, want %d\n%s", b, arg, code, want, out)
			}
		})
	}
}

// cleanEnv is an environment with none of the platform's variables.
func cleanEnv(t *testing.T) []string {
	return []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
}
