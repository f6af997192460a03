package adpctl

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// `adpctl stats --json` groups the attempts of a task across its files
// (<id>.json, <id>.sample-<k>.json), overall and per type, and its pass@k
// is the estimator's on their outcomes.
func TestStatsPassAtKOverAttemptFiles(t *testing.T) {
	out := t.TempDir()
	w, err := trajectory.NewWriter(filepath.Join(out, "trajectories"))
	if err != nil {
		t.Fatal(err)
	}
	// task id, type, outcome of each attempt. "a" and "a.b" sort between
	// each other's files; "web" has more attempts than any code task.
	tasks := []struct {
		id  string
		typ core.TaskType
		ok  []bool
	}{
		{"a", core.TaskCode, []bool{false, true, false, false, true, false, false, true}},
		{"a.b", core.TaskCode, []bool{true, false}},
		{"b", core.TaskCode, []bool{false, false, false, false, false}},
		{"one", core.TaskCode, []bool{true}},
		{"web", core.TaskWeb, []bool{true, false, false, false, false, false, false, false, false, true, false, false}},
		{"w2", core.TaskWeb, []bool{false, true, true, true, true, true}},
	}
	byType := map[core.TaskType]map[string][2]int{}
	all := map[string][2]int{}
	files := 0
	for _, tk := range tasks {
		nc := [2]int{len(tk.ok), 0}
		for k, ok := range tk.ok {
			tr := core.NewTrajectory(core.TaskSpec{TaskID: tk.id, TaskType: tk.typ, Description: "d"}, "rt")
			tr.SampleIndex, tr.Samples, tr.Success = k, len(tk.ok), ok
			r := 0.0
			if ok {
				r, nc[1] = 1, nc[1]+1
			} else {
				tr.Fail(core.ErrWrongAnswer, "no")
			}
			tr.Reward = &r
			if err := w.Write(tr); err != nil {
				t.Fatal(err)
			}
			files++
		}
		if byType[tk.typ] == nil {
			byType[tk.typ] = map[string][2]int{}
		}
		byType[tk.typ][tk.id], all[tk.id] = nc, nc
	}
	c := &cli{t: t, env: Env{OutputDir: out}}
	code, stdout, stderr := c.run("", "stats", "--json")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, stderr)
	}
	var st struct {
		Files, Total, Tasks int
		PassAtK             map[string]float64 `json:"pass_at_k"`
		MeanReward          float64            `json:"mean_reward"`
		ByType              []struct {
			TaskType string             `json:"task_type"`
			Tasks    int                `json:"tasks"`
			Total    int                `json:"total"`
			PassAtK  map[string]float64 `json:"pass_at_k"`
		} `json:"by_type"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Files != files || st.Total != files || st.Tasks != len(tasks) {
		t.Errorf("files %d, total %d, tasks %d; want %d, %d, %d", st.Files, st.Total, st.Tasks, files, files, len(tasks))
	}
	same := func(what string, got, want map[string]float64) {
		t.Helper()
		keys := func(m map[string]float64) []string {
			var ks []string
			for k := range m {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			return ks
		}
		if len(got) != len(want) {
			t.Errorf("%s: pass@k keys %v, want %v", what, keys(got), keys(want))
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || math.Abs(g-v) > 1e-12 {
				t.Errorf("%s: pass@%s = %v, want %v", what, k, g, v)
			}
		}
	}
	same("overall", st.PassAtK, testsupport.ExpectedPassAtK(all))
	if len(st.ByType) != 2 {
		t.Fatalf("by_type has %d entries, want code and web", len(st.ByType))
	}
	for _, bt := range st.ByType {
		want := byType[core.TaskType(bt.TaskType)]
		if bt.Tasks != len(want) {
			t.Errorf("%s: %d tasks, want %d", bt.TaskType, bt.Tasks, len(want))
		}
		same(bt.TaskType, bt.PassAtK, testsupport.ExpectedPassAtK(want))
	}
	succeeded := 0
	for _, nc := range all {
		succeeded += nc[1]
	}
	if want := float64(succeeded) / float64(files); math.Abs(st.MeanReward-want) > 1e-12 {
		t.Errorf("mean_reward %v, want %v", st.MeanReward, want)
	}
}

// adpctl dlq names a dead attempt as its file does, and a retry puts the
// entry back with its sample field, so the same attempt runs again.
func TestDLQAttempt(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamDead, Values: []any{"source_stream", core.StreamCode, "source_id", "1-0", "deliveries", "3",
		"last_error", "boom", "dead_at", "1700000000", "task", `{"task_id":"fib","task_type":"code","description":"x","samples":4}`, "sample", "2"}})
	code, out, _ := c.run("", "dlq", "list")
	if code != 0 || !strings.Contains(out, " fib.sample-2 ") {
		t.Errorf("dlq list does not name the attempt fib.sample-2:\n%s", out)
	}
	if code, out, _ := c.run("", "dlq", "retry", "--all"); code != 0 || !strings.Contains(out, "retried") {
		t.Fatalf("dlq retry: %d %s", code, out)
	}
	msgs := c.rdb.XRange(ctx, core.StreamCode, "-", "+").Val()
	if len(msgs) != 1 || msgs[0].Values["sample"] != "2" {
		t.Errorf("retried entries %v; want one with sample 2", msgs)
	}
}
