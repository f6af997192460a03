package rollout

import (
	"context"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// Budget is an attempt's time: computed once (NewBudget, by the worker
// when it takes the task off the queue), handed down in the context
// (WithBudget) and to the environment (StartOptions.Budget).
type Budget struct {
	// Deadline is when the attempt's time is up.
	Deadline time.Time
	// Timeout is the task's timeout as applied (after the runtime's cap),
	// for messages ("the task's timeout (30 s) passed").
	Timeout time.Duration
}

// minStepTime is the least time a step is given, even past the deadline:
// a jail needs some to start, and the step's timeout is then its error.
const minStepTime = 100 * time.Millisecond

// NewBudget is the budget of an attempt of task starting at now: its
// timeout (seconds), capped at maxTimeout when that is above 0.
func NewBudget(task core.TaskSpec, now time.Time, maxTimeout time.Duration) Budget {
	t := time.Duration(task.Timeout) * time.Second
	if maxTimeout > 0 && t > maxTimeout {
		t = maxTimeout
	}
	return Budget{Deadline: now.Add(t), Timeout: t}
}

// Remaining is what is left of the budget, at least minStepTime.
func (b Budget) Remaining() time.Duration {
	return max(time.Until(b.Deadline), minStepTime)
}

// StepTimeout is a step's timeout: want (a step's own, or a runtime's
// default) cut to what is left; what is left when want is 0.
func (b Budget) StepTimeout(want time.Duration) time.Duration {
	rem := b.Remaining()
	if want <= 0 {
		return rem
	}
	return min(want, rem)
}

// Seconds is the timeout in whole seconds, for messages.
func (b Budget) Seconds() int { return int(b.Timeout / time.Second) }

type budgetKey struct{}

// WithBudget returns ctx carrying b.
func WithBudget(ctx context.Context, b Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// BudgetFrom is the budget ctx carries (the worker's), or, when it carries
// none (a test, a direct caller), a new one for task from now.
func BudgetFrom(ctx context.Context, task core.TaskSpec) Budget {
	if b, ok := ctx.Value(budgetKey{}).(Budget); ok {
		return b
	}
	return NewBudget(task, time.Now(), 0)
}
