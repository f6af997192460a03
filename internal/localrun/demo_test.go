package localrun_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestShippedTasksWhereverTheDemoSiteRuns: the shipped tasks.jsonl names
// the demo site demo-site:8765. With the site moved (ADP_DEMO_ADDR, as
// docs/operations.md says to do when 8765 is busy) and an unrelated server
// listening on 127.0.0.1:8765, `make run` (adpctl up) still succeeds on
// every task, and the unrelated server receives no request: the tasks reach
// the demo site and nothing else. It runs in a network namespace of its own,
// where 127.0.0.1:8765 is the test's.
func TestShippedTasksWhereverTheDemoSiteRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline; skipped with -short")
	}
	dir, env := userCheckout(t)
	// The unrelated server: Python's http.server, which logs every request
	// it receives to decoy.log. The run starts once it accepts connections
	// (a bare connection logs nothing).
	ns := testsupport.StartInNetns(t, dir, env, `python3 -m http.server 8765 --bind 127.0.0.1 >decoy.log 2>&1 &
until (exec 3<>/dev/tcp/127.0.0.1/8765) 2>/dev/null; do sleep 0.1; done
ADP_DEMO_ADDR=127.0.0.1:8766 exec bin/adpctl up --json`)
	if code := ns.Wait(5 * time.Minute); code != 0 {
		t.Fatalf("adpctl up exits %d: %s", code, ns.Stderr.String())
	}
	var sum struct {
		Tasks, Done int
	}
	if err := json.Unmarshal([]byte(ns.Stdout.String()), &sum); err != nil {
		t.Fatalf("summary: %v: %s", err, ns.Stdout.String())
	}
	shipped := readTasks(t, filepath.Join(dir, "tasks.jsonl"))
	web := 0
	for _, tk := range shipped {
		tr := readTrajectory(t, dir, tk.TaskID)
		if !tr.Success {
			t.Errorf("%s failed: %s %s", tk.TaskID, tr.ExitReason, tr.ErrorMessage)
		}
		if tk.TaskType == core.TaskWeb {
			web++
			if u, _ := tr.Metadata[core.MetaFinalURL].(string); !strings.HasPrefix(u, "http://demo-site:8765/") {
				t.Errorf("%s ended on %q, want the demo site by its name", tk.TaskID, u)
			}
		}
	}
	if web == 0 {
		t.Fatal("the shipped file has no web task: nothing was tested")
	}
	if sum.Tasks != len(shipped) || sum.Done != len(shipped) {
		t.Errorf("summary %+v, want %d tasks done", sum, len(shipped))
	}
	log, err := os.ReadFile(filepath.Join(dir, "decoy.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "HTTP/1.1") || strings.Contains(string(log), "GET ") {
		t.Errorf("the unrelated server on 127.0.0.1:8765 was reached:\n%s", log)
	}
}
