package adpctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

type cli struct {
	t   *testing.T
	env Env
	rdb *redis.Client
}

func setup(t *testing.T) *cli {
	t.Helper()
	r := testsupport.StartRedis(t)
	return &cli{t: t, rdb: r.Client, env: Env{RedisURL: r.URL, OutputDir: t.TempDir()}}
}

// run runs adpctl with stdin and returns exit code, stdout, stderr.
func (c *cli) run(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	e := c.env
	e.Stdin, e.Stdout, e.Stderr = strings.NewReader(stdin), &out, &errb
	code := Run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestSubmit(t *testing.T) {
	c := setup(t)
	input := `{"task_id":"a","task_type":"code","description":"x"}
not json
{"task_id":"w","task_type":"web","description":"y"}
{"task_id":"a","task_type":"code","description":"x"}
{"task_id":"typo","task_type":"code","description":"x","constraints":{"code":"print(1)","expected_outptu":"2"}}
`
	code, out, errs := c.run(input, "submit", "-")
	if code != 1 {
		t.Errorf("exit = %d, want 1 (a line was rejected)", code)
	}
	if !strings.Contains(out, "enqueued a -> tasks:code") || !strings.Contains(out, "enqueued w -> tasks:web") {
		t.Errorf("stdout = %q", out)
	}
	for _, want := range []string{"rejected: line 2:", `duplicate: task "a"`, `rejected: line 5: task "typo": constraints.expected_outptu: unknown constraint`, "2 enqueued, 1 duplicates, 2 rejected"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q: %s", want, errs)
		}
	}
	// --json, and the dedup shared with the dispatcher.
	code, _, errs = c.run("", "submit", "--json", `{"task_id":"a","task_type":"code","description":"x"}`)
	if code != 0 || !strings.Contains(errs, "0 enqueued, 1 duplicates") {
		t.Errorf("resubmit: exit %d, %s", code, errs)
	}
	if n := c.rdb.XLen(context.Background(), core.StreamCode).Val(); n != 1 {
		t.Errorf("tasks:code has %d entries", n)
	}
	if code, _, _ := c.run("", "submit"); code != 2 {
		t.Errorf("submit without input: exit %d, want 2", code)
	}
}

// A task of samples N is N stream entries; submitting it again with more
// samples enqueues only the new attempts.
func TestSubmitAttempts(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	code, out, errs := c.run(`{"task_id":"fib","task_type":"code","description":"x","samples":4}`, "submit", "-")
	if code != 0 || !strings.Contains(out, "enqueued fib -> tasks:code: 4 attempts") || !strings.Contains(errs, "4 enqueued, 0 duplicates") {
		t.Errorf("first submit: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = c.run("", "submit", "--json", `{"task_id":"fib","task_type":"code","description":"x","samples":6}`)
	if code != 0 || !strings.Contains(out, "2 new attempts (4 were already dispatched)") || !strings.Contains(errs, "2 enqueued, 4 duplicates") {
		t.Errorf("more samples: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	msgs := c.rdb.XRange(ctx, core.StreamCode, "-", "+").Val()
	var samples []string
	for _, m := range msgs {
		s, _ := m.Values["sample"].(string)
		samples = append(samples, s)
	}
	if strings.Join(samples, ",") != "0,1,2,3,4,5" {
		t.Errorf("entries' sample fields = %q, want 0..5", samples)
	}
}

func TestStatusAndDLQ(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	c.run(`{"task_id":"a","task_type":"code","description":"x"}`, "submit", "-")
	c.rdb.XGroupCreateMkStream(ctx, core.StreamCode, core.ConsumerGroup, "0")
	c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: core.ConsumerGroup, Consumer: "sandbox-host-1", Streams: []string{core.StreamCode, ">"}, Count: 1})
	c.rdb.HSet(ctx, core.KeyRuntimeHealth, "sandbox-host-1", `{"runtime":"sandbox","healthy":true,"time":1}`)
	// A replica killed with kill -9 leaves its last report: down once it
	// is older than 3 intervals and the checks' time; a fresh one is
	// healthy (or unhealthy) as reported.
	now := core.UnixSeconds(time.Now())
	c.rdb.HSet(ctx, core.KeyRuntimeHealth, "sandbox-killed", fmt.Sprintf(`{"runtime":"sandbox","healthy":true,"time":%f,"interval_seconds":5}`, now-22))
	c.rdb.HSet(ctx, core.KeyRuntimeHealth, "sandbox-live", fmt.Sprintf(`{"runtime":"sandbox","healthy":true,"time":%f,"interval_seconds":5}`, now))
	c.rdb.HSet(ctx, core.KeyRuntimeHealth, "web-sick", fmt.Sprintf(`{"runtime":"web","healthy":false,"error":"browser gone","time":%f,"interval_seconds":5}`, now))
	c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamDead, Values: []any{"source_stream", core.StreamCode, "source_id", "1-0", "deliveries", "3", "last_error", "boom", "dead_at", "1700000000", "task", `{"task_id":"d","task_type":"code","description":"x"}`}})

	code, out, errs := c.run("", "status", "--json")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	code0 := st.Streams[0]
	if code0.Stream != core.StreamCode || code0.Length != 1 || code0.Pending != 1 || len(code0.Consumers) != 1 || code0.Consumers[0].Name != "sandbox-host-1" || code0.OldestPendingSeconds <= 0 {
		t.Errorf("tasks:code status = %+v", code0)
	}
	if st.DeadLetter != 1 || len(st.Runtimes) != 4 {
		t.Errorf("status = %+v", st)
	}
	states := map[string]string{}
	for _, r := range st.Runtimes {
		states[r.Consumer] = r.State
	}
	wantStates := map[string]string{"sandbox-host-1": "down", "sandbox-killed": "down", "sandbox-live": "healthy", "web-sick": "unhealthy"}
	if !maps.Equal(states, wantStates) {
		t.Errorf("states = %v, want %v", states, wantStates)
	}
	code, out, _ = c.run("", "status")
	if code != 0 || !strings.Contains(out, "sandbox-host-1") || !strings.Contains(out, "tasks:dead") ||
		!regexp.MustCompile(`sandbox-killed +sandbox +down \(no report for over 21s\) +2[0-9.]+s ago`).MatchString(out) {
		t.Errorf("status table:\n%s", out)
	}

	code, out, _ = c.run("", "dlq", "list")
	if code != 0 || !strings.Contains(out, "boom") || !strings.Contains(out, " d ") {
		t.Errorf("dlq list:\n%s", out)
	}
	code, out, _ = c.run("", "dlq", "retry", "--all")
	if code != 0 || !strings.Contains(out, "retried") {
		t.Errorf("dlq retry: %d %s", code, out)
	}
	if n := c.rdb.XLen(ctx, core.StreamCode).Val(); n != 2 {
		t.Errorf("tasks:code has %d entries after retry, want 2", n)
	}
	if code, _, _ := c.run("", "dlq", "retry", "9-9"); code != 1 {
		t.Errorf("retry of an unknown id: exit %d, want 1", code)
	}
	c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamDead, Values: []any{"source_stream", core.StreamCode, "task", "{}"}})
	code, out, _ = c.run("", "dlq", "purge")
	if code != 0 || !strings.Contains(out, "purged 1") {
		t.Errorf("dlq purge: %d %s", code, out)
	}
}

func TestUsage(t *testing.T) {
	c := &cli{t: t, env: Env{}}
	if code, _, errs := c.run("", "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %s", code, errs)
	}
	if code, _, errs := c.run("", "--help"); code != 0 || !strings.Contains(errs, "export") {
		t.Errorf("help: %d %s", code, errs)
	}
	if code, _, _ := c.run("", "dlq", "explode"); code != 2 {
		t.Errorf("bad dlq subcommand: exit %d", code)
	}
}

// A sampled task submitted while the live replicas of its runtime have no
// model gets a warning; with a model, or no live replica to ask, none.
func TestSubmitWarnsSamplingWithoutModel(t *testing.T) {
	ctx := context.Background()
	report := func(model bool, ago float64) string {
		return fmt.Sprintf(`{"runtime":"sandbox","healthy":true,"time":%f,"interval_seconds":5,"model":%v}`, core.UnixSeconds(time.Now())-ago, model)
	}
	cases := []struct {
		name    string
		reports []string // sandbox replicas
		task    string
		warn    bool
	}{
		{"no model", []string{report(false, 0)}, `{"task_id":"s","task_type":"code","description":"x","samples":8}`, true},
		{"sampling settings", []string{report(false, 0)}, `{"task_id":"s","task_type":"code","description":"x","sampling":{"temperature":0.5}}`, true},
		{"one replica has a model", []string{report(false, 0), report(true, 0)}, `{"task_id":"s","task_type":"code","description":"x","samples":8}`, false},
		{"the replica with a model is down", []string{report(false, 0), report(true, 600)}, `{"task_id":"s","task_type":"code","description":"x","samples":8}`, true},
		{"one sample", []string{report(false, 0)}, `{"task_id":"s","task_type":"code","description":"x"}`, false},
		{"no replica reports", nil, `{"task_id":"s","task_type":"code","description":"x","samples":8}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t)
			for i, r := range tc.reports {
				c.rdb.HSet(ctx, core.KeyRuntimeHealth, fmt.Sprintf("sandbox-%d", i), r)
			}
			code, _, errs := c.run(tc.task, "submit", "-")
			if code != 0 {
				t.Fatalf("submit: %d %s", code, errs)
			}
			if got := strings.Contains(errs, "warning: task \"s\"") && strings.Contains(errs, "no sandbox runtime has a model configured"); got != tc.warn {
				t.Errorf("warned %v, want %v:\n%s", got, tc.warn, errs)
			}
		})
	}
}

// TestSubmitNothing: submitting an input without a task line is an error.
func TestSubmitNothing(t *testing.T) {
	c := setup(t)
	code, _, errs := c.run("\n  \n", "submit", "-")
	if code != 1 || !strings.Contains(errs, "no valid task") {
		t.Errorf("exit %d, stderr %q; want 1 and no valid task", code, errs)
	}
}

// TestUpNoValidTask: `adpctl up` (make run) on a file with no valid task
// exits 1 before starting anything, quoting the rejected lines: a task
// printed across two lines, as documentation used to print them, and an
// empty file.
func TestUpNoValidTask(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"a task across two lines", `{"task_id": "demo_fib", "task_type": "code", "description": "Write a Python function for the 10th Fibonacci number",
 "expected_tools": ["python_executor"], "constraints": {"expected_output": "55"}, "max_steps": 5, "timeout": 300, "priority": 1}
`, []string{"has no valid task: 2 lines rejected", "line 1: ", "each line must be one whole JSON object", "line 2: each line must be one JSON object, not a JSON string"}},
		{"empty", "", []string{"has no valid task: 0 lines rejected"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".jsonl")
			if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			c := &cli{t: t, env: Env{OutputDir: filepath.Join(dir, "out")}}
			code, _, errs := c.run("", "up", "--tasks", file)
			if code != 1 {
				t.Errorf("exit = %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q: %s", w, errs)
				}
			}
			if regexp.MustCompile(`core\.|Go value`).MatchString(errs) {
				t.Errorf("stderr names a Go type: %s", errs)
			}
		})
	}
}
