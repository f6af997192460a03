package localrun_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// runbookDoc is the document whose commands TestRunbook runs.
const runbookDoc = "docs/operations.md"

// TestRunbook follows docs/operations.md as a user would, in a network
// namespace of its own (so that the stack's fixed addresses, Redis on
// 127.0.0.1:6379 and the demo site on 127.0.0.1:8765, collide with nothing
// and nothing else answers there): it starts the long-lived stack with the
// document's first block, runs every line of every later sh block as
// printed, from a directory laid out like the repository's root, and
// checks that each exits 0 and does what the document says; then Ctrl-C
// stops the stack, exiting 0.
func TestRunbook(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack (about a minute); skipped with -short")
	}
	blocks := testsupport.DocBlocks(t, runbookDoc, "sh")
	if len(blocks) < 2 {
		t.Fatalf("%s has %d sh blocks; want the stack's start and the runbook", runbookDoc, len(blocks))
	}
	// The first block starts the stack: make build (the test builds the
	// binaries itself), a copy of the task file, adpctl up --keep.
	start := blocks[0].Commands()
	if len(start) != 3 || start[0] != "make build" || !strings.HasPrefix(start[1], "cp tasks.jsonl ") || !strings.HasPrefix(start[2], "bin/adpctl up --keep") {
		t.Fatalf("%s:%d: the first block is %q; the test knows make build, cp tasks.jsonl …, bin/adpctl up --keep …", runbookDoc, blocks[0].Line, start)
	}
	dir, env := userCheckout(t)

	ns := testsupport.StartInNetns(t, dir, env, start[1]+" && exec "+start[2])
	shipped := readTasks(t, filepath.Join(dir, "tasks.jsonl"))
	waitFor(t, ns, 3*time.Minute, "the stack to run the shipped file and stay up", func() bool {
		return strings.Contains(ns.Stderr.String(), "the stack stays up")
	})
	if out := ns.Stdout.String(); !strings.Contains(out, strconv.Itoa(len(shipped))+" tasks: "+strconv.Itoa(len(shipped))+" with a trajectory") {
		t.Errorf("the summary of the shipped file: %s", out)
	}
	for _, tk := range shipped {
		if tr := readTrajectory(t, dir, tk.TaskID); !tr.Success {
			t.Errorf("shipped task %s failed: %s %s", tk.TaskID, tr.ExitReason, tr.ErrorMessage)
		}
	}

	// What a command must print besides exiting 0, by its first words.
	entryID := regexp.MustCompile(`^\d+-\d+\n$`)
	integer := regexp.MustCompile(`^\d+\n$`)
	number := regexp.MustCompile(`^[0-9.]+\n$`)
	expect := []struct {
		prefix string
		check  func(stdout string) bool
	}{
		{"bin/adpctl status --json", func(o string) bool { return json.Valid([]byte(o)) && strings.Contains(o, core.StreamCode) }},
		{"bin/adpctl status", func(o string) bool {
			return strings.Contains(o, core.StreamCode) && strings.Contains(o, core.StreamWeb)
		}},
		{"redis-cli xlen", func(o string) bool { return integer.MatchString(o) }},
		{"redis-cli hgetall runtime_health", func(o string) bool { return strings.Contains(o, "sandbox") && strings.Contains(o, "web") }},
		{"redis-cli xadd", func(o string) bool { return entryID.MatchString(o) }},
		{`bin/adpctl submit --json '{"task_id": "submitted"`, func(o string) bool { return strings.Contains(o, "enqueued submitted") }},
		{"redis-cli srem tasks:dispatched submitted", func(o string) bool { return o == "1\n" }},
		{"ls output/trajectories/*.json | wc -l", func(o string) bool { return integer.MatchString(o) && o != "0\n" }},
		{"jq -s 'map(.success)", func(o string) bool { return number.MatchString(o) }},
		{"jq '{task_id, success, reward, exit_reason}' output/trajectories/manual_test.json", func(o string) bool {
			return strings.Contains(o, `"task_id": "manual_test"`) && strings.Contains(o, `"success": true`)
		}},
		{"bin/adpctl stats --json | jq .pass_at_k", func(o string) bool { return strings.Contains(o, `"1":`) }},
		{"bin/adpctl stats", func(o string) bool { return strings.Contains(o, "code") }},
	}
	// The trajectories the "more work" block leads to, waited for after it.
	rollouts := readTasks(t, filepath.Join(dir, "examples", "rollouts.jsonl"))

	for _, b := range blocks[1:] {
		for _, cmd := range b.Commands() {
			stdout, stderr, code := ns.Run(cmd)
			t.Logf("$ %s\n%s%s", cmd, clip(stdout), clip(stderr))
			if code != 0 {
				t.Errorf("%s:%d: %q exits %d: %s", runbookDoc, b.Line, cmd, code, stderr)
				continue
			}
			for _, e := range expect {
				if strings.HasPrefix(cmd, e.prefix) {
					if !e.check(stdout) {
						t.Errorf("%s:%d: %q printed %q, not what the document says", runbookDoc, b.Line, cmd, stdout)
					}
					break
				}
			}
			if out := regexp.MustCompile(`--out (\S+)`).FindStringSubmatch(cmd); out != nil {
				if st, err := os.Stat(filepath.Join(dir, out[1])); err != nil || st.Size() == 0 {
					t.Errorf("%q wrote no %s (%v)", cmd, out[1], err)
				}
			}
		}
		if strings.Contains(b.Text, "redis-cli xadd") {
			// The work the block added is done before the next block
			// looks at results.
			want := []string{"appended", "submitted", "manual_test"}
			for _, tk := range rollouts {
				for k := range tk.Samples {
					want = append(want, core.AttemptName(tk.TaskID, k))
				}
			}
			waitFor(t, ns, 3*time.Minute, "the trajectories of "+strings.Join(want, ", "), func() bool {
				return !slices.ContainsFunc(want, func(name string) bool {
					_, err := os.Stat(filepath.Join(dir, "output", "trajectories", name+".json"))
					return err != nil
				})
			})
			for _, id := range []string{"appended", "submitted", "manual_test"} {
				if tr := readTrajectory(t, dir, id); !tr.Success {
					t.Errorf("%s failed: %s %s", id, tr.ExitReason, tr.ErrorMessage)
				}
			}
		}
	}
	if code := ns.Interrupt(time.Minute); code != 0 {
		t.Errorf("Ctrl-C: adpctl up --keep exits %d, want 0: %s", code, ns.Stderr.String())
	}
	if !strings.Contains(ns.Stderr.String(), "everything started was stopped") {
		t.Errorf("adpctl up --keep did not say it stopped: %s", ns.Stderr.String())
	}
}

// userCheckout lays out a directory as a user's checkout looks after make
// build (bin/, configs/, the shipped tasks.jsonl and examples/) and returns
// it with a new user's environment: no configuration of the platform's, the
// browser where bootstrap.sh puts it.
func userCheckout(t *testing.T) (dir string, env []string) {
	t.Helper()
	bins := testsupport.BuildBinaries(t)
	browser := testsupport.FindBrowser(t)
	root := testsupport.RepoRoot(t)
	dir = t.TempDir()
	for link, target := range map[string]string{"bin": bins, "configs": filepath.Join(root, "configs")} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"tasks.jsonl", "examples/rollouts.jsonl"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env = append(testsupport.CleanEnv("REDIS_URL", "REDIS_CA_FILE", "OUTPUT_DIR", "TASK_FILE", "ADP_*", "LLM_*", "VLLM_URL", "WEB_*", "SANDBOX_*"),
		"CHROMIUM_PATH="+browser.Chromium, "PLAYWRIGHT_DRIVER_PATH="+browser.DriverDir, "PLAYWRIGHT_NODEJS_PATH="+browser.Node)
	return dir, env
}

// waitFor polls cond until it holds, failing the test after timeout or when
// the stack has exited.
func waitFor(t *testing.T, ns *testsupport.Netns, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !ns.Running() {
			t.Fatalf("the stack exited while waiting for %s:\n%s", what, ns.Stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s:\n%s", timeout, what, ns.Stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readTasks(t *testing.T, file string) []core.TaskSpec {
	t.Helper()
	tasks, rejected, err := dispatch.ReadTasks(file)
	if err != nil || len(rejected) > 0 || len(tasks) == 0 {
		t.Fatalf("%s: %d tasks, rejected %v, %v", file, len(tasks), rejected, err)
	}
	return tasks
}

func readTrajectory(t *testing.T, dir, name string) *core.Trajectory {
	t.Helper()
	tr, err := trajectory.Read(filepath.Join(dir, "output", "trajectories", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + "\n…\n" + s[len(s)-1000:]
	}
	return s
}
