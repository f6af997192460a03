package service_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
		{"web-runtime", "WEB_HOST_ALIASES=demo-site=somewhere", "name=IP-address or name:port=IP-address:port pairs"},
		{"web-runtime", "WEB_HOST_ALIASES=demo-site:8765=127.0.0.1", "name=IP-address or name:port=IP-address:port pairs"},
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
		{"web-runtime", "LLM_TOP_LOGPROBS=50", "a whole number from 0 to 20"},
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

// With LOG_LEVEL=debug a runtime's log shows each attempt's way: received,
// the source chosen, each step, the verification, the trajectory written,
// the entry acknowledged, in that order, each line with task_id and sample.
func TestDebugLogShowsTheWay(t *testing.T) {
	bin := testsupport.BuildBinaries(t)
	r := testsupport.StartRedis(t)
	rt, out := startSandboxRuntime(t, bin, r, "LOG_LEVEL=debug")

	submit := exec.Command(filepath.Join(bin, "adpctl"), "submit", "--json",
		`{"task_id":"fib","task_type":"code","description":"Write a Python function for the 10th Fibonacci number","constraints":{"expected_output":"55"},"samples":2}`)
	submit.Env = append(cleanEnv(t), "REDIS_URL="+r.URL)
	if b, err := submit.CombinedOutput(); err != nil {
		t.Fatalf("submit: %v\n%s", err, b)
	}
	for _, k := range []int{0, 1} {
		name := "fib.json"
		if k > 0 {
			name = fmt.Sprintf("fib.sample-%d.json", k)
		}
		waitFile(t, filepath.Join(out, "trajectories", name))
	}
	// The acknowledgement follows the write: wait for both entries' acks.
	waitFor(t, func() bool { return strings.Count(rt.Log(), `"msg":"task acknowledged"`) == 2 })
	rt.Stop(10 * time.Second)

	for _, k := range []float64{0, 1} {
		var msgs []string
		var verification map[string]any
		for _, line := range strings.Split(rt.Log(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil || rec["task_id"] != "fib" || rec["sample"] != k {
				continue
			}
			if rec["level"] != "DEBUG" {
				continue
			}
			msgs = append(msgs, rec["msg"].(string))
			if rec["msg"] == "verification" {
				verification = rec
			}
		}
		want := []string{"task received", "source chosen", "step", "verification", "trajectory written", "task acknowledged"}
		if !isSubsequence(want, msgs) {
			t.Errorf("sample %v: debug lines %v, want in order %v", k, msgs, want)
		}
		if verification["success"] != true || verification["reward"] != 1.0 || !strings.Contains(fmt.Sprint(verification["sampling_ignored"]), "no model") {
			t.Errorf("sample %v: verification line %v", k, verification)
		}
	}
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
}

// waitFor polls cond for up to a minute (a bound on a hung runtime, not a
// timing assertion).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSandboxRuntime runs the sandbox runtime binary against r, healthy,
// and returns it with its OUTPUT_DIR.
func startSandboxRuntime(t *testing.T, bin string, r *testsupport.Redis, extra ...string) (*testsupport.Service, string) {
	t.Helper()
	// The jail reaches its workspaces under TMPDIR: a root others can
	// search, unlike t.TempDir's.
	root, err := os.MkdirTemp("", "adp-service-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "output")
	env := append([]string{"REDIS_URL=" + r.URL, "OUTPUT_DIR=" + out, "TMPDIR=" + tmp, "HEALTH_INTERVAL=1s", "SANDBOX_CONCURRENCY=1", "LLM_BASE_URL="}, extra...)
	return testsupport.StartService(t, filepath.Join(bin, "sandbox-runtime"), env, true), out
}

// A runtime killed with kill -9 leaves its last report; adpctl status
// shows it healthy while its reports are due, then down (3 missed reports
// of HEALTH_INTERVAL=1s plus the checks' time: 9 s), with its last report's
// age. A runtime stopped cleanly removes its report.
func TestStatusShowsAKilledRuntimeDown(t *testing.T) {
	bin := testsupport.BuildBinaries(t)
	r := testsupport.StartRedis(t)
	status := func() map[string]string {
		cmd := exec.Command(filepath.Join(bin, "adpctl"), "status", "--json")
		cmd.Env = append(cleanEnv(t), "REDIS_URL="+r.URL)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("adpctl status: %v", err)
		}
		var st struct {
			Runtimes []struct {
				Consumer, State  string
				DownAfterSeconds float64 `json:"down_after_seconds"`
			}
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		states := map[string]string{}
		for _, rt := range st.Runtimes {
			states[rt.Consumer] = rt.State
			if rt.DownAfterSeconds != 9 {
				t.Errorf("%s: down after %vs, want 9", rt.Consumer, rt.DownAfterSeconds)
			}
		}
		return states
	}
	killed, _ := startSandboxRuntime(t, bin, r)
	stopped, _ := startSandboxRuntime(t, bin, r)
	waitFor(t, func() bool {
		st := status()
		return len(st) == 2 && !slices.Contains(slices.Collect(maps.Values(st)), "down")
	})
	var consumers []string
	for c, state := range status() {
		if state != "healthy" {
			t.Errorf("%s: %s before the kill, want healthy", c, state)
		}
		consumers = append(consumers, c)
	}
	slices.Sort(consumers)
	killed.Kill()
	stopped.Stop(10 * time.Second)
	waitFor(t, func() bool { return len(status()) == 1 })
	waitFor(t, func() bool { return slices.Contains(slices.Collect(maps.Values(status())), "down") })
	st := status()
	if len(st) != 1 || !slices.Contains(consumers, slices.Collect(maps.Keys(st))[0]) {
		t.Errorf("status after kill -9 and a clean stop: %v, want the killed replica down", st)
	}
	cmd := exec.Command(filepath.Join(bin, "adpctl"), "status")
	cmd.Env = append(cleanEnv(t), "REDIS_URL="+r.URL)
	if b, err := cmd.Output(); err != nil || !strings.Contains(string(b), "down (no report for over 9s)") {
		t.Errorf("status table: %v\n%s", err, b)
	}
}
