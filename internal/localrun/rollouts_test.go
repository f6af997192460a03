package localrun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/localrun"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// TestRolloutsExample runs the shipped examples/rollouts.jsonl (code and web
// tasks of 4 to 8 attempts, scripted: no model) through the whole pipeline
// as `make run` does: a private redis-server, the dispatcher, both
// runtimes with real jails and a real Chromium, the demo site. Then every
// attempt has its file with its reward and exit_reason, `adpctl stats
// --json` reports the pass@k of the unbiased estimator on the attempts'
// outcomes, and `adpctl export --format groups` has one line per task with
// all its attempts.
func TestRolloutsExample(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline (about a minute); skipped with -short")
	}
	bins := testsupport.BuildBinaries(t)
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "rollouts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	run := runPipeline(t, bins, example, nil)
	for _, tk := range run.tasks {
		if tk.Samples < 4 || tk.Samples > 8 {
			t.Errorf("example task %s has samples %d; the example's are 4 to 8", tk.TaskID, tk.Samples)
		}
	}
	if !run.types()[core.TaskCode] || !run.types()[core.TaskWeb] {
		t.Fatalf("the example lacks code or web tasks: %v", run.types())
	}

	// Every attempt has its file, naming its attempt, with reward and
	// exit_reason; the deterministic tasks have their known rewards.
	wantReward := map[string]float64{"roll_add": 1, "roll_half": 0.5, "roll_form": 1, "roll_form_url": 0.5}
	outcomes, byType := run.checkAttempts(t, func(tk core.TaskSpec, k int, tr *core.Trajectory) {
		if tr.ExitReason != core.ExitReplayed {
			t.Errorf("%s attempt %d: exit_reason %q, want replayed", tk.TaskID, k, tr.ExitReason)
		}
		if w, ok := wantReward[tk.TaskID]; ok && *tr.Reward != w {
			t.Errorf("%s attempt %d: reward %v, want %v (%s)", tk.TaskID, k, *tr.Reward, w, tr.ErrorMessage)
		}
	})
	t.Logf("attempts and successes per task: %v", outcomes)
	run.checkStats(t, outcomes, byType)
	for _, g := range run.groups(t, outcomes) {
		for k, a := range g.Attempts {
			if a.ExitReason != string(core.ExitReplayed) {
				t.Errorf("group %s attempt %d: exit_reason %q", g.TaskID, k, a.ExitReason)
			}
		}
	}
}

// pipelineRun is one run of a task file through localrun.Run, as `make run`
// does it.
type pipelineRun struct {
	bins, out string
	tasks     []core.TaskSpec
	attempts  int // the tasks' samples, summed
}

func (r *pipelineRun) types() map[core.TaskType]bool {
	types := map[core.TaskType]bool{}
	for _, tk := range r.tasks {
		types[tk.TaskType] = true
	}
	return types
}

// runPipeline runs the task file content through the whole pipeline: a
// private redis-server, the dispatcher, both runtimes with real jails and a
// real Chromium, the demo site, env added to the children's environment.
// The content names the demo site demo-site:8765, as the shipped files do;
// this run serves it on a free port (127.0.0.1:0), so other runs on the
// machine do not collide, and the web runtime forwards the name to it. Every attempt
// must end with a trajectory.
func runPipeline(t *testing.T, bins string, content []byte, env []string) *pipelineRun {
	t.Helper()
	browser := testsupport.FindBrowser(t)
	taskFile := filepath.Join(t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(taskFile, content, 0o644); err != nil {
		t.Fatal(err)
	}
	tasks, rejected, err := dispatch.ReadTasks(taskFile)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("the task file has rejected lines %v (%v)", rejected, err)
	}
	run := &pipelineRun{bins: bins, out: filepath.Join(t.TempDir(), "output"), tasks: tasks}
	for _, tk := range tasks {
		run.attempts += tk.Samples
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sum, err := localrun.Run(ctx, localrun.Config{
		TaskFile: taskFile, OutputDir: run.out, BinDir: bins, DemoAddr: "127.0.0.1:0", Timeout: 8 * time.Minute, StopGrace: 20 * time.Second,
		ExtraEnv: append([]string{"CHROMIUM_PATH=" + browser.Chromium, "PLAYWRIGHT_DRIVER_PATH=" + browser.DriverDir, "PLAYWRIGHT_NODEJS_PATH=" + browser.Node}, env...),
	})
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(run.out, "logs", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, tail(string(b), 15))
		}
		t.Fatalf("run: %v", err)
	}
	if sum.Tasks != len(tasks) || sum.Attempts != run.attempts || sum.Done != run.attempts || sum.DeadLettered != 0 {
		t.Errorf("summary: %d tasks, %d attempts, %d done, %d dead; want %d, %d, %d, 0",
			sum.Tasks, sum.Attempts, sum.Done, sum.DeadLettered, len(tasks), run.attempts, run.attempts)
	}
	return run
}

// checkAttempts reads every attempt's file, checks that it names its
// attempt and has a reward and an exit_reason, hands it to check, and
// returns the attempts and successes per task (outcomes), overall and by
// type.
func (r *pipelineRun) checkAttempts(t *testing.T, check func(tk core.TaskSpec, k int, tr *core.Trajectory)) (outcomes map[string][2]int, byType map[core.TaskType]map[string][2]int) {
	t.Helper()
	dir := filepath.Join(r.out, "trajectories")
	outcomes = map[string][2]int{} // id → attempts, successes
	byType = map[core.TaskType]map[string][2]int{}
	for _, tk := range r.tasks {
		nc := [2]int{tk.Samples, 0}
		for k := range tk.Samples {
			name := core.TrajectoryFileName(tk.TaskID, k)
			tr, err := trajectory.Read(filepath.Join(dir, name))
			if err != nil {
				t.Errorf("attempt %d of %s: %v", k, tk.TaskID, err)
				continue
			}
			if tr.TaskID != tk.TaskID || tr.SampleIndex != k || tr.Samples != tk.Samples {
				t.Errorf("%s: task %s sample_index %d samples %d", name, tr.TaskID, tr.SampleIndex, tr.Samples)
			}
			if tr.Reward == nil || tr.ExitReason == "" {
				t.Errorf("%s: reward %v, exit_reason %q; want both", name, tr.Reward, tr.ExitReason)
				continue
			}
			if tr.Success != (*tr.Reward == 1) {
				t.Errorf("%s: success %v with reward %v", name, tr.Success, *tr.Reward)
			}
			check(tk, k, tr)
			if tr.Success {
				nc[1]++
			}
		}
		outcomes[tk.TaskID] = nc
		if byType[tk.TaskType] == nil {
			byType[tk.TaskType] = map[string][2]int{}
		}
		byType[tk.TaskType][tk.TaskID] = nc
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != r.attempts {
		t.Errorf("%d trajectory files, want one per attempt (%d)", len(files), r.attempts)
	}
	return outcomes, byType
}

// checkStats: `adpctl stats --json` reports the tasks, the trajectories and
// the pass@k the estimator gives on outcomes, overall and by type.
func (r *pipelineRun) checkStats(t *testing.T, outcomes map[string][2]int, byType map[core.TaskType]map[string][2]int) {
	t.Helper()
	var st struct {
		Tasks   int                `json:"tasks"`
		Total   int                `json:"total"`
		PassAtK map[string]float64 `json:"pass_at_k"`
		ByType  []struct {
			TaskType string             `json:"task_type"`
			PassAtK  map[string]float64 `json:"pass_at_k"`
		} `json:"by_type"`
	}
	if err := json.Unmarshal([]byte(adpctl(t, r.bins, "stats", "--json", "--dir", r.out)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Tasks != len(r.tasks) || st.Total != r.attempts {
		t.Errorf("stats: %d tasks, %d trajectories; want %d, %d", st.Tasks, st.Total, len(r.tasks), r.attempts)
	}
	checkPassAtK(t, "overall", st.PassAtK, outcomes)
	if len(st.ByType) != len(byType) {
		t.Errorf("stats by type: %d types, want %d", len(st.ByType), len(byType))
	}
	for _, bt := range st.ByType {
		checkPassAtK(t, bt.TaskType, bt.PassAtK, byType[core.TaskType(bt.TaskType)])
	}
}

// exportGroup is one line of `adpctl export --format groups`.
type exportGroup struct {
	TaskID   string            `json:"task_id"`
	Prompt   []json.RawMessage `json:"prompt"`
	Tools    json.RawMessage   `json:"tools"`
	Attempts []struct {
		SampleIndex int               `json:"sample_index"`
		Reward      *float64          `json:"reward"`
		ExitReason  string            `json:"exit_reason"`
		Recorded    bool              `json:"recorded"`
		Completion  []json.RawMessage `json:"completion"`
		Prompt      []json.RawMessage `json:"prompt"`
	} `json:"attempts"`
}

// groups runs the groups export and checks it has one line per task with
// every attempt (outcomes), in order, each with a reward, an exit_reason
// and a completion.
func (r *pipelineRun) groups(t *testing.T, outcomes map[string][2]int) map[string]exportGroup {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(adpctl(t, r.bins, "export", "--format", "groups", "--dir", r.out)), "\n")
	if len(lines) != len(r.tasks) {
		t.Fatalf("groups export has %d lines, want %d", len(lines), len(r.tasks))
	}
	groups := map[string]exportGroup{}
	for _, l := range lines {
		var g exportGroup
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatal(err)
		}
		if _, dup := groups[g.TaskID]; dup {
			t.Errorf("task %s has two groups", g.TaskID)
		}
		groups[g.TaskID] = g
		n, ok := outcomes[g.TaskID]
		if !ok || len(g.Attempts) != n[0] || len(g.Prompt) == 0 {
			t.Errorf("group %s: %d attempts, prompt of %d messages; want %d attempts and a prompt", g.TaskID, len(g.Attempts), len(g.Prompt), n[0])
			continue
		}
		for k, a := range g.Attempts {
			if a.SampleIndex != k || a.Reward == nil || a.ExitReason == "" || len(a.Completion) == 0 {
				t.Errorf("group %s attempt %d: %+v", g.TaskID, k, a)
			}
		}
	}
	return groups
}

// checkPassAtK compares got with testsupport.ExpectedPassAtK of the tasks.
func checkPassAtK(t *testing.T, what string, got map[string]float64, tasks map[string][2]int) {
	t.Helper()
	want := testsupport.ExpectedPassAtK(tasks)
	if len(got) != len(want) {
		t.Errorf("%s: pass@k %v, want %v", what, got, want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12 {
			t.Errorf("%s: pass@%s = %v, want %v", what, k, g, w)
		}
	}
}

func adpctl(t *testing.T, bins string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(bins, "adpctl"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("adpctl %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.RemoveBinaries()
	os.Exit(code)
}
