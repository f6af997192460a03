package worker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// executorFunc is a test Executor.
type executorFunc func(ctx context.Context, t core.TaskSpec) (*core.Trajectory, error)

func (f executorFunc) Execute(ctx context.Context, t core.TaskSpec) (*core.Trajectory, error) {
	return f(ctx, t)
}

func setup(t *testing.T, exec Executor) (*Worker, string) {
	t.Helper()
	dir := t.TempDir()
	w, err := trajectory.NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Worker{Runtime: "sandbox", RuntimeID: "sandbox-test-1", Exec: exec, Writer: w, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}, dir
}

func msg(id string) *queue.Message {
	return &queue.Message{Stream: core.StreamCode, ID: "1-0", Deliveries: 2, SubmittedAt: time.Now().Add(-time.Second),
		Task: core.TaskSpec{TaskID: id, TaskType: core.TaskCode, Description: "d", MaxSteps: 1, Timeout: 5, Priority: 1}}
}

func TestHandleWritesTrajectory(t *testing.T) {
	tests := []struct {
		name    string
		tr      core.Trajectory
		success bool
		errType core.ErrorType
		status  string
	}{
		{"success", core.Trajectory{Success: true, ErrorType: core.ErrRuntime /* cleared */}, true, core.ErrNone, "success"},
		{"failure keeps its type", core.Trajectory{ErrorType: core.ErrTimeout, ErrorMessage: "slow"}, false, core.ErrTimeout, "failure"},
		{"failure without type is a system error", core.Trajectory{}, false, core.ErrSystem, "failure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, dir := setup(t, executorFunc(func(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
				tr := tc.tr
				return &tr, nil
			}))
			if err := w.Handle(context.Background(), msg("task-1")); err != nil {
				t.Fatal(err)
			}
			tr, err := trajectory.Read(filepath.Join(dir, "task-1.json"))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || tr.ErrorType != tc.errType || tr.RuntimeID != "sandbox-test-1" || tr.TaskID != "task-1" || tr.SchemaVersion != core.SchemaVersion {
				t.Errorf("trajectory = %+v", tr)
			}
			if tr.Metadata["deliveries"] != 2.0 || tr.Metadata["queue_wait_seconds"].(float64) <= 0 {
				t.Errorf("metadata = %v", tr.Metadata)
			}
			if v := testutil.ToFloat64(w.Metrics.TasksCompleted.WithLabelValues("sandbox", tc.status)); v != 1 {
				t.Errorf("tasks_completed_total{%s} = %v", tc.status, v)
			}
			if !tc.success && testutil.ToFloat64(w.Metrics.TasksFailed.WithLabelValues("sandbox", string(tc.errType))) != 1 {
				t.Errorf("tasks_failed_total not counted")
			}
		})
	}
}

// An attempt's trajectory names its attempt and goes to its own file,
// whatever the executor wrote into the fields.
func TestHandleWritesTheAttemptsFile(t *testing.T) {
	w, dir := setup(t, executorFunc(func(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
		return &core.Trajectory{Success: true, SampleIndex: 7, Samples: 9}, nil
	}))
	m := msg("fib")
	m.Task.Samples, m.Task.SampleIndex = 4, 2
	if err := w.Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	tr, err := trajectory.Read(filepath.Join(dir, "fib.sample-2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tr.TaskID != "fib" || tr.SampleIndex != 2 || tr.Samples != 4 {
		t.Errorf("task_id %q sample_index %d samples %d; want fib, 2, 4", tr.TaskID, tr.SampleIndex, tr.Samples)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files = %v, want only fib.sample-2.json", entries)
	}
	// A task of one attempt (Samples unset in a hand-made spec) says 1.
	if err := w.Handle(context.Background(), msg("one")); err != nil {
		t.Fatal(err)
	}
	if tr, err := trajectory.Read(filepath.Join(dir, "one.json")); err != nil || tr.SampleIndex != 0 || tr.Samples != 1 {
		t.Errorf("one.json: %+v, %v; want sample_index 0, samples 1", tr, err)
	}
}

func TestSystemErrorWritesNothing(t *testing.T) {
	w, dir := setup(t, executorFunc(func(context.Context, core.TaskSpec) (*core.Trajectory, error) {
		return nil, errors.New("jail failed to launch")
	}))
	err := w.Handle(context.Background(), msg("t"))
	if err == nil {
		t.Fatal("want an error so the entry is retried")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written on a system error: %v", entries)
	}
}

func TestInterruptedTaskWritesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, dir := setup(t, executorFunc(func(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
		cancel() // shutdown arrives mid-task
		<-ctx.Done()
		tr := core.NewTrajectory(task, "")
		tr.Fail(core.ErrTimeout, "cut off")
		return tr, nil
	}))
	if err := w.Handle(ctx, msg("t")); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("an interrupted task was recorded as a result: %v", entries)
	}
}

func TestTimeoutIsBoundedAndCapped(t *testing.T) {
	var deadline time.Duration
	w, _ := setup(t, executorFunc(func(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
		dl, _ := ctx.Deadline()
		deadline = time.Until(dl)
		if task.Timeout != 2 {
			t.Errorf("task timeout = %d, want the cap 2", task.Timeout)
		}
		// The budget the executor's rollout runs to is the one the worker
		// computed: the capped timeout, its deadline before the context's.
		if b := rollout.BudgetFrom(ctx, core.TaskSpec{Timeout: 99}); b.Timeout != 2*time.Second || !b.Deadline.Before(dl) {
			t.Errorf("budget = %+v (context deadline %s), want the capped 2s ending before the context", b, dl)
		}
		return &core.Trajectory{Success: true}, nil
	}))
	w.MaxTimeout = 2 * time.Second
	if err := w.Handle(context.Background(), msg("t")); err != nil {
		t.Fatal(err)
	}
	if deadline > 2*time.Second+ExecutorSlack {
		t.Errorf("executor deadline %s exceeds the capped timeout plus slack", deadline)
	}
}
