package rollout

import (
	"github.com/agentdataplatform/adp/internal/core"
)

// Outcome is how an attempt went: the one value from which its success,
// reward, exit_reason and error are derived (Conclude).
type Outcome struct {
	// Source is where the actions came from ("" when none was asked: the
	// start failed).
	Source Source
	// Invalid: the task is invalid (End says why).
	Invalid bool
	// NoSource: no source had actions (End says why).
	NoSource bool
	// End is the failure that ended the attempt before the agent was done:
	// the environment's End, or the policy's Failure.
	End *Failure
	// Stop is why the actions stopped: a model's answered, finished,
	// max_steps, max_turns; a replay's max_steps or finished; "" when a
	// replay ran out of actions.
	Stop core.ExitReason
	// Eval is the environment's evaluation; nil when it did not run.
	Eval *Evaluation
}

// errNotEvaluated: the loop concluded an attempt that no evaluation
// covers; never a success.
const errNotEvaluated = "the attempt was not evaluated"

// Failure is what failed the attempt; nil for a success. A success is an
// attempt that ended normally, produced its result, and passed its check
// when it has one: never a success that the task's check did not
// establish.
func (o Outcome) Failure() *Failure {
	ev := o.Eval
	switch {
	case o.Invalid || o.NoSource || o.End != nil:
		if o.End == nil {
			return &Failure{Type: core.ErrSystem, Message: errNotEvaluated}
		}
		return o.End
	case ev == nil:
		return &Failure{Type: core.ErrSystem, Message: errNotEvaluated}
	case ev.Failure != nil:
		return ev.Failure
	case ev.Verified != nil && !*ev.Verified:
		return &Failure{Type: core.ErrWrongAnswer, Message: ev.Message}
	case ev.Checked && ev.Verified == nil:
		return &Failure{Type: core.ErrSystem, Message: "the task's verifier did not run"}
	}
	return nil
}

// ExitReason says why the attempt ended: the one derivation of
// exit_reason (docs/trajectories.md lists them).
func (o Outcome) ExitReason() core.ExitReason {
	switch {
	case o.Invalid:
		return core.ExitInvalidTask
	case o.NoSource:
		return core.ExitNoSource
	case o.Eval != nil && o.Eval.Tampered:
		return core.ExitTampered
	case o.End != nil:
		return core.ExitFor(o.End.Type)
	case o.Source == SourceLLM || o.Stop != "":
		return o.Stop
	}
	// The task's own actions, a cached sequence or the rules ran out:
	// a time limit that failed their last step is why they ended.
	if f := o.Failure(); f != nil && f.Type == core.ErrTimeout {
		return core.ExitTimeout
	}
	if o.Source == SourceRules {
		return core.ExitRules
	}
	return core.ExitReplayed
}

// Reward is the attempt's reward: the check's own number when it ran to
// its end, else the fraction of its checks that passed (none when the
// attempt ended early); nil when the task has no check, or no check
// could apply (an invalid task, no source).
func (o Outcome) Reward() *float64 {
	ev := o.Eval
	if o.Invalid || o.NoSource || ev == nil || ev.Total <= 0 && ev.Reward == nil {
		return nil
	}
	if ev.Reward != nil && o.End == nil {
		r := *ev.Reward
		return &r
	}
	if ev.Total <= 0 {
		return nil
	}
	passed := ev.Passed
	if o.End != nil {
		passed = 0
	}
	r := float64(passed) / float64(ev.Total)
	return &r
}

// Conclude writes the outcome into tr: success, error, reward,
// exit_reason, and the evaluation's record (final_result, metadata).
func (o Outcome) Conclude(tr *core.Trajectory) {
	if ev := o.Eval; ev != nil {
		tr.FinalResult = ev.FinalResult
		for k, v := range ev.Metadata {
			tr.Metadata[k] = v
		}
		if ev.Verified != nil {
			tr.Metadata[core.MetaVerified] = *ev.Verified
		} else {
			delete(tr.Metadata, core.MetaVerified)
		}
		if ev.Reward != nil && o.End == nil && ev.Rewards != nil {
			tr.Metadata[core.MetaVerifierRewards] = ev.Rewards
		}
	}
	if f := o.Failure(); f != nil {
		tr.Fail(f.Type, f.Message)
	} else {
		tr.Success, tr.ErrorType, tr.ErrorMessage = true, core.ErrNone, ""
	}
	tr.Reward = o.Reward()
	tr.ExitReason = o.ExitReason()
}

// Rejected is the trajectory of an attempt of a task that is invalid
// before any environment exists (its constraints do not decode): exit
// reason invalid_task.
func Rejected(task core.TaskSpec, why Failure) *core.Trajectory {
	tr := core.NewTrajectory(task, "")
	Outcome{Invalid: true, End: &why}.Conclude(tr)
	return tr
}
