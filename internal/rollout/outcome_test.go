package rollout

import (
	"slices"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// TestOutcome: the one derivation of success, error, reward and
// exit_reason from how an attempt went.
func TestOutcome(t *testing.T) {
	yes, no := true, false
	score := 0.25
	timeout := &Failure{Type: core.ErrTimeout, Message: "the task's timeout (5 s) passed"}
	checked := func(v *bool, passed, total int) *Evaluation {
		return &Evaluation{Checked: true, Verified: v, Passed: passed, Total: total, Message: "wrong"}
	}
	tests := []struct {
		name    string
		o       Outcome
		exit    core.ExitReason
		success bool
		errType core.ErrorType
		errMsg  string
		reward  any // nil: absent
	}{
		{"invalid task", Outcome{Invalid: true, End: &Failure{Type: core.ErrSetup, Message: "setup failed"}},
			core.ExitInvalidTask, false, core.ErrSetup, "setup failed", nil},
		{"no source", Outcome{Source: SourceNone, NoSource: true, End: &Failure{Type: core.ErrNoModel, Message: "no rule"}},
			core.ExitNoSource, false, core.ErrNoModel, "no rule", nil},
		{"model answered, check passed", Outcome{Source: SourceLLM, Stop: core.ExitAnswered, Eval: checked(&yes, 2, 2)},
			core.ExitAnswered, true, core.ErrNone, "", 1.0},
		{"model finished, check failed", Outcome{Source: SourceLLM, Stop: core.ExitFinished, Eval: checked(&no, 1, 2)},
			core.ExitFinished, false, core.ErrWrongAnswer, "wrong", 0.5},
		{"model spent its steps", Outcome{Source: SourceLLM, Stop: core.ExitMaxSteps, Eval: checked(&no, 0, 1)},
			core.ExitMaxSteps, false, core.ErrWrongAnswer, "wrong", 0.0},
		{"model unreachable", Outcome{Source: SourceLLM, End: &Failure{Type: core.ErrNetwork, Message: "down"}, Eval: checked(&yes, 1, 1)},
			core.ExitLLMError, false, core.ErrNetwork, "down", 0.0},
		{"context overflow", Outcome{Source: SourceLLM, End: &Failure{Type: core.ErrContextExceeded, Message: "too long"}, Eval: checked(nil, 0, 1)},
			core.ExitContextExceeded, false, core.ErrContextExceeded, "too long", 0.0},
		{"the environment's timeout", Outcome{Source: SourceScripted, End: timeout, Eval: &Evaluation{Checked: true, Total: 1}},
			core.ExitTimeout, false, core.ErrTimeout, timeout.Message, 0.0},
		{"a dead browser", Outcome{Source: SourceLLM, Stop: core.ExitFinished, End: &Failure{Type: core.ErrBrowser, Message: "gone"}, Eval: &Evaluation{}},
			core.ExitAborted, false, core.ErrBrowser, "gone", nil},
		{"tampered outranks the end", Outcome{Source: SourceLLM, End: &Failure{Type: core.ErrNetwork, Message: "down"}, Eval: &Evaluation{Checked: true, Tampered: true, Total: 1}},
			core.ExitTampered, false, core.ErrNetwork, "down", 0.0},
		{"tampered check", Outcome{Source: SourceScripted, Eval: &Evaluation{Checked: true, Verified: &no, Tampered: true, Message: "tampered: x", Total: 1}},
			core.ExitTampered, false, core.ErrWrongAnswer, "tampered: x", 0.0},
		{"replayed", Outcome{Source: SourceScripted, Eval: checked(&yes, 1, 1)},
			core.ExitReplayed, true, core.ErrNone, "", 1.0},
		{"cached", Outcome{Source: SourceCache, Eval: checked(&no, 0, 1)},
			core.ExitReplayed, false, core.ErrWrongAnswer, "wrong", 0.0},
		{"replay cut at max_steps", Outcome{Source: SourceScripted, Stop: core.ExitMaxSteps, Eval: &Evaluation{}},
			core.ExitMaxSteps, true, core.ErrNone, "", nil},
		{"replayed finish", Outcome{Source: SourceScripted, Stop: core.ExitFinished, Eval: &Evaluation{}},
			core.ExitFinished, true, core.ErrNone, "", nil},
		{"replay whose last step timed out", Outcome{Source: SourceScripted, Eval: &Evaluation{Failure: &Failure{Type: core.ErrTimeout, Message: "timed out"}}},
			core.ExitTimeout, false, core.ErrTimeout, "timed out", nil},
		{"model whose check timed out keeps its stop", Outcome{Source: SourceLLM, Stop: core.ExitAnswered, Eval: &Evaluation{Checked: true, Total: 1, Failure: timeout}},
			core.ExitAnswered, false, core.ErrTimeout, timeout.Message, 0.0},
		{"rules", Outcome{Source: SourceRules, Eval: checked(&yes, 1, 1)},
			core.ExitRules, true, core.ErrNone, "", 1.0},
		{"no clean run", Outcome{Source: SourceRules, Eval: &Evaluation{Checked: true, Total: 1, Failure: &Failure{Type: core.ErrRuntime, Message: "exit status 1"}}},
			core.ExitRules, false, core.ErrRuntime, "exit status 1", 0.0},
		{"a check that did not run is no success", Outcome{Source: SourceScripted, Eval: checked(nil, 0, 1)},
			core.ExitReplayed, false, core.ErrSystem, "the task's verifier did not run", 0.0},
		{"no check", Outcome{Source: SourceScripted, Eval: &Evaluation{}},
			core.ExitReplayed, true, core.ErrNone, "", nil},
		{"the check's own reward", Outcome{Source: SourceLLM, Stop: core.ExitFinished, Eval: &Evaluation{Checked: true, Verified: &no, Total: 1, Reward: &score, Message: "below"}},
			core.ExitFinished, false, core.ErrWrongAnswer, "below", 0.25},
		{"the check's own reward does not outlast an end", Outcome{Source: SourceLLM, End: timeout, Eval: &Evaluation{Checked: true, Total: 1, Reward: &score}},
			core.ExitTimeout, false, core.ErrTimeout, timeout.Message, 0.0},
		{"never concluded without an evaluation", Outcome{Source: SourceScripted},
			core.ExitReplayed, false, core.ErrSystem, errNotEvaluated, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := core.NewTrajectory(core.TaskSpec{TaskID: "t"}, "")
			tt.o.Conclude(tr)
			var reward any
			if tr.Reward != nil {
				reward = *tr.Reward
			}
			if tr.ExitReason != tt.exit || tr.Success != tt.success || tr.ErrorType != tt.errType || tr.ErrorMessage != tt.errMsg || reward != tt.reward {
				t.Errorf("exit %s success %v error %s %q reward %v\nwant %s %v %s %q %v",
					tr.ExitReason, tr.Success, tr.ErrorType, tr.ErrorMessage, reward, tt.exit, tt.success, tt.errType, tt.errMsg, tt.reward)
			}
			if !slices.Contains(core.ExitReasons, tr.ExitReason) {
				t.Errorf("exit reason %q is not one of core.ExitReasons", tr.ExitReason)
			}
		})
	}
}
