package rollout

import (
	"context"

	"github.com/agentdataplatform/adp/internal/core"
)

// Replay is a policy of a fixed list of actions: the task's own, a cached
// sequence, or a rule's program. It stops when they run out, or at
// MaxSteps with the rest not run (stop max_steps).
type Replay struct {
	From     Source
	Actions  []Action
	MaxSteps int
	// Rule names the rule that wrote the actions (metadata.rule).
	Rule string
	i    int
	stop core.ExitReason
}

// Source is From.
func (p *Replay) Source() Source { return p.From }

// Reset does nothing: the actions are fixed.
func (p *Replay) Reset(ActionSpace, Observation) {}

// Next is the next action, within MaxSteps.
func (p *Replay) Next(context.Context, Observation) (Action, bool) {
	if p.i >= len(p.Actions) {
		return Action{}, false
	}
	if p.i >= p.MaxSteps {
		p.stop = core.ExitMaxSteps
		return Action{}, false
	}
	p.i++
	return p.Actions[p.i-1], true
}

// End says whether MaxSteps cut the actions short.
func (p *Replay) End() PolicyEnd { return PolicyEnd{Stop: p.stop, Rule: p.Rule} }

// NoActions is the policy of a task no source has actions for: why is the
// attempt's failure (exit_reason no_source).
func NoActions(why Failure) Policy { return noActions{why} }

type noActions struct{ why Failure }

func (noActions) Source() Source                                   { return SourceRules }
func (noActions) Reset(ActionSpace, Observation)                   {}
func (noActions) Next(context.Context, Observation) (Action, bool) { return Action{}, false }
func (p noActions) End() PolicyEnd {
	why := p.why
	return PolicyEnd{NoSource: true, Failure: &why}
}
