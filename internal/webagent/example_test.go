package webagent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
)

// TestEnvironmentStepByStep drives a web task's environment by hand, as a
// caller other than the runtime would (a trainer's server, a test): no
// Redis, no rollout.Runner. Start opens the start page; each action of a
// scripted policy is one Step, one recorded step and the page observed
// after it; Evaluate runs the task's checks, which no observation showed;
// Close gives the page back to the pool. (The pool and the site are the
// package tests' setup: Agent, Environment and rollout are all it uses.)
func TestEnvironmentStepByStep(t *testing.T) {
	b := setup(t) // the demo site, and a pool of pages that may reach only it
	agent := &Agent{Pages: b.agent.Pages, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}

	task := webTask("Send a support message as Ada", contactForm(b.site))
	budget := rollout.NewBudget(task, time.Now(), 0)
	ctx, cancel := context.WithDeadline(rollout.WithBudget(context.Background(), budget), budget.Deadline)
	defer cancel()

	at, rejected := agent.Attempt(ctx, task)
	if rejected != nil {
		t.Fatalf("rejected: %s", rejected.ErrorMessage)
	}
	env := at.Env
	defer func() {
		if err := env.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	st, err := env.Start(ctx, rollout.StartOptions{Budget: at.Budget, Source: rollout.SourceScripted})
	if err != nil || st.Invalid || st.End != nil {
		t.Fatalf("start: %v, invalid %v, end %v", err, st.Invalid, st.End)
	}
	steps := st.Steps
	if len(steps) != 1 || steps[0].ActionParams["initial"] != true || !strings.Contains(steps[0].Observation, "Contact") {
		t.Fatalf("start steps %+v", steps)
	}

	// The scripted policy: the task's own actions, in order.
	policy := &rollout.Replay{From: rollout.SourceScripted, Actions: at.Scripted, MaxSteps: task.MaxSteps}
	policy.Reset(st.Space, st.Observation)
	obs := st.Observation
	for {
		a, ok := policy.Next(ctx, obs)
		if !ok {
			break
		}
		a.Source = policy.Source()
		res, err := env.Step(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Steps) != 1 || !res.Steps[0].Success {
			t.Fatalf("step %d: %+v", len(steps), res.Steps)
		}
		steps = append(steps, res.Steps...)
		if res.Done {
			break
		}
		obs = res.Observation
	}
	if len(steps) != 5 || steps[4].ActionParams["action"] != "finish" {
		t.Fatalf("%d steps, the last %v", len(steps), steps[len(steps)-1].ActionParams)
	}
	if !strings.Contains(steps[3].Observation, "Thank you, Ada") {
		t.Errorf("the submit step's observation: %q", steps[3].Observation)
	}

	ev, err := env.Evaluate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Verified == nil || !*ev.Verified || ev.Passed != 2 || ev.Total != 2 || ev.FinalResult != "sent" || ev.Failure != nil {
		t.Fatalf("evaluation %+v", ev)
	}
	// The one outcome value gives the trajectory's verdict.
	tr := core.NewTrajectory(task, "")
	rollout.Outcome{Source: rollout.SourceScripted, Stop: policy.End().Stop, Eval: &ev}.Conclude(tr)
	if !tr.Success || tr.Reward == nil || *tr.Reward != 1 || tr.ExitReason != core.ExitReplayed {
		t.Errorf("success %v reward %v exit %s", tr.Success, tr.Reward, tr.ExitReason)
	}
}

// contactForm is the constraints of a task on the demo site's contact
// form (site is its base URL): its actions, and two checks.
func contactForm(site string) map[string]any {
	return map[string]any{
		"start_url": site + "/form",
		"actions": []map[string]any{
			{"action": "fill", "selector": "#name", "text": "Ada"},
			{"action": "select", "selector": "#topic", "value": "support"},
			{"action": "click", "selector": "button[type=submit]"},
			{"action": "finish", "answer": "sent"},
		},
		"expected_text": "Thank you, Ada. Your support message", "answer": "sent",
	}
}
