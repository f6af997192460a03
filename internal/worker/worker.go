// Package worker turns a runtime's Executor into a queue.Handler: it bounds
// the task by its timeout, writes the trajectory durably, records metrics,
// and only then lets the queue acknowledge the entry.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// Executor runs one task. A task's own failure (wrong answer, program crash,
// page not found) is a trajectory with Success false and an ErrorType; a
// returned error is a system error (the runtime could not do its job) and the
// entry is retried later, up to MAX_DELIVERIES times.
type Executor interface {
	Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error)
}

// ExecutorSlack is added to a task's budget for the context given to the
// Executor (whose rollout runs to the budget's deadline): room to record
// the timeout as a step, take a workspace's diff, rather than being cut
// off.
const ExecutorSlack = 10 * time.Second

// Worker is the queue.Handler of a runtime.
type Worker struct {
	Runtime   string // metrics label: sandbox or web
	RuntimeID string // written into trajectories: the consumer name
	Exec      Executor
	Writer    *trajectory.Writer
	Metrics   *metrics.Set
	Log       *slog.Logger
	// MaxTimeout caps a task's timeout (SANDBOX_MAX_TIMEOUT); 0 means no cap.
	MaxTimeout time.Duration
}

var _ queue.Handler = (*Worker)(nil)

// ErrInterrupted is returned when the runtime stopped a task (shutdown) before
// it finished: not the task's fault, so nothing is written and the entry is
// delivered again.
var ErrInterrupted = errors.New("task interrupted by shutdown")

// Handle executes m's task and writes its trajectory.
func (w *Worker) Handle(ctx context.Context, m *queue.Message) error {
	task := m.Task
	log := w.Log.With("task_id", task.TaskID, "sample", task.SampleIndex, "task_type", task.TaskType, "delivery", m.Deliveries)
	active := w.Metrics.ActiveTasks.WithLabelValues(w.Runtime)
	active.Inc()
	defer active.Dec()

	// The attempt's budget, computed once: the executor's environments
	// read it (rollout.BudgetFrom), the rollout loop applies its deadline.
	start := time.Now()
	budget := rollout.NewBudget(task, start, w.MaxTimeout)
	task.Timeout = budget.Seconds()
	tctx, cancel := context.WithDeadline(rollout.WithBudget(ctx, budget), budget.Deadline.Add(ExecutorSlack))
	defer cancel()

	tr, err := w.Exec.Execute(tctx, task)
	if ctx.Err() != nil {
		// Shutdown or lost lease: whatever the executor made of it, it is
		// not the task's result.
		return fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("execute task %s: %w", core.AttemptName(task.TaskID, task.SampleIndex), err)
	}
	w.finish(tr, task, m, start)
	if log.Enabled(ctx, slog.LevelDebug) {
		logWay(ctx, log, tr)
	}
	// A process frozen past its lease must not write for an entry another
	// consumer took (or that was dead-lettered meanwhile).
	if err := m.StillHeld(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	if err := w.Writer.Write(tr); err != nil {
		return err
	}
	log.Debug("trajectory written", "file", core.TrajectoryFileName(tr.TaskID, tr.SampleIndex))

	status := "success"
	if !tr.Success {
		status = "failure"
		w.Metrics.TasksFailed.WithLabelValues(w.Runtime, string(tr.ErrorType)).Inc()
	}
	w.Metrics.TasksCompleted.WithLabelValues(w.Runtime, status).Inc()
	w.Metrics.TaskDuration.WithLabelValues(w.Runtime).Observe(tr.TotalDuration)
	w.Metrics.TrajectoriesWritten.WithLabelValues(w.Runtime).Inc()
	log.Info("task done", "success", tr.Success, "error_type", string(tr.ErrorType), "steps", len(tr.Steps), "duration_s", tr.TotalDuration)
	return nil
}

// logWay logs at debug level how the attempt went, from its trajectory:
// where its program or actions came from, each step, and the verification.
func logWay(ctx context.Context, log *slog.Logger, tr *core.Trajectory) {
	log.DebugContext(ctx, "source chosen", "source", tr.Metadata[core.MetaSource], "cache_hit", tr.Metadata[core.MetaCacheHit], "rule", tr.Metadata[core.MetaRule])
	for _, s := range tr.Steps {
		args := []any{"step", s.StepID, "action_type", s.ActionType, "success", s.Success, "duration_s", s.Duration}
		if p, ok := s.ActionParams["purpose"]; ok {
			args = append(args, "purpose", p)
		}
		if a, ok := s.ActionParams["action"]; ok {
			args = append(args, "action", a)
		}
		if t, ok := s.ActionParams["tool"]; ok {
			args = append(args, "tool", t)
		}
		if s.ErrorType != core.ErrNone {
			args = append(args, "error_type", string(s.ErrorType), "error", s.ErrorMessage)
		}
		log.DebugContext(ctx, "step", args...)
	}
	args := []any{"success", tr.Success, "verified", tr.Metadata[core.MetaVerified], "exit_reason", tr.ExitReason}
	if tr.Reward != nil {
		args = append(args, "reward", *tr.Reward)
	}
	if !tr.Success {
		args = append(args, "error_type", string(tr.ErrorType), "error", tr.ErrorMessage)
	}
	if note, ok := tr.Metadata[core.MetaSamplingIgnored]; ok {
		args = append(args, "sampling_ignored", note)
	}
	log.DebugContext(ctx, "verification", args...)
}

// finish fills what every trajectory carries, whatever the executor set.
func (w *Worker) finish(tr *core.Trajectory, task core.TaskSpec, m *queue.Message, start time.Time) {
	tr.SchemaVersion = core.SchemaVersion
	tr.TaskID, tr.TaskType = task.TaskID, task.TaskType
	// The attempt names the file: it is the entry's, whatever the executor set.
	tr.SampleIndex, tr.Samples = task.SampleIndex, max(task.Samples, 1)
	if tr.Description == "" {
		tr.Description = task.Description
	}
	tr.RuntimeID = w.RuntimeID
	if tr.Steps == nil {
		tr.Steps = []core.ExecutionStep{}
	}
	if tr.Metadata == nil {
		tr.Metadata = core.Metadata{}
	}
	if tr.TotalDuration == 0 {
		tr.TotalDuration = time.Since(start).Seconds()
	}
	if tr.CreatedAt == 0 {
		tr.CreatedAt = core.UnixSeconds(time.Now())
	}
	if tr.Success {
		tr.ErrorType, tr.ErrorMessage = core.ErrNone, ""
	} else if tr.ErrorType == core.ErrNone {
		tr.ErrorType = core.ErrSystem // a failure always says what kind
	}
	tr.Metadata[core.MetaTotalSteps] = len(tr.Steps)
	tr.Metadata[core.MetaDeliveries] = m.Deliveries
	tr.Metadata[core.MetaQueueWaitSeconds] = start.Sub(m.SubmittedAt).Seconds()
}
