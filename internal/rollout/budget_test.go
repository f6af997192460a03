package rollout

import (
	"context"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestBudget(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		timeout int
		cap     time.Duration
		want    time.Duration
	}{
		{"the task's timeout", 30, 0, 30 * time.Second},
		{"under the cap", 30, time.Minute, 30 * time.Second},
		{"capped", 300, time.Minute, time.Minute},
	}
	for _, tt := range tests {
		b := NewBudget(core.TaskSpec{Timeout: tt.timeout}, now, tt.cap)
		if b.Timeout != tt.want || !b.Deadline.Equal(now.Add(tt.want)) || b.Seconds() != int(tt.want/time.Second) {
			t.Errorf("%s: %+v, want %s from now", tt.name, b, tt.want)
		}
	}

	// Step timeouts are cut to what is left, never below minStepTime.
	b := Budget{Deadline: time.Now().Add(time.Hour), Timeout: time.Hour}
	if got := b.StepTimeout(5 * time.Second); got != 5*time.Second {
		t.Errorf("a step's own timeout within the budget: %s", got)
	}
	if got := b.StepTimeout(0); got <= 59*time.Minute || got > time.Hour {
		t.Errorf("no timeout of its own: %s, want what is left", got)
	}
	spent := Budget{Deadline: time.Now().Add(-time.Second), Timeout: time.Second}
	if got := spent.StepTimeout(5 * time.Second); got != minStepTime {
		t.Errorf("a spent budget gives %s, want %s", got, minStepTime)
	}

	// The budget the context carries is the one handed down; without one,
	// a new one from the task.
	ctx := WithBudget(context.Background(), b)
	if got := BudgetFrom(ctx, core.TaskSpec{Timeout: 5}); got != b {
		t.Errorf("BudgetFrom = %+v, want the context's %+v", got, b)
	}
	if got := BudgetFrom(context.Background(), core.TaskSpec{Timeout: 5}); got.Timeout != 5*time.Second {
		t.Errorf("BudgetFrom without one = %+v, want the task's 5s", got)
	}
}
