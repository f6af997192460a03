package rollout

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Runner runs attempts: it chooses the policy (the task's own actions, the
// template cache, the model, the rules, in that order), runs it against the
// attempt's environment in the one loop, and concludes.
//
// The template cache sits beside the loop: a hit is replayed for real and
// evicted when it no longer succeeds; a success of the model or the rules
// is stored unless the check flagged it (metadata.flags). The attempts of a
// task with samples > 1 do not read the cache (a cached program would turn
// N independent samples into N copies of one); they may still store a
// verified success for later tasks of one attempt.
type Runner struct {
	// Cache is the template cache; nil disables it.
	Cache *templatecache.Cache
	// Model is the model; nil when none is configured.
	Model   Model
	Metrics *metrics.Set
	Log     *slog.Logger
}

// Attempt is one attempt of a task, as a runtime hands it to Run.
type Attempt struct {
	Task core.TaskSpec
	Env  Environment
	// Scripted are the task's own actions (its program, its actions);
	// nil when it brings none.
	Scripted []Action
	// Rules is the blueprint's policy for the task, used when there is no
	// model; a policy whose End is NoSource when no rule applies.
	Rules Policy
	// Budget is the attempt's time (BudgetFrom).
	Budget Budget
}

// Run performs the attempt and returns its trajectory (its duration and
// the worker's fields aside). The error is a failure of the runtime (the
// environment's): nothing is written, the task is retried.
func (r *Runner) Run(ctx context.Context, at Attempt) (*core.Trajectory, error) {
	started := time.Now()
	tr := core.NewTrajectory(at.Task, "")
	ctx, cancel := context.WithDeadline(ctx, at.Budget.Deadline)
	defer cancel()
	defer func() {
		if err := at.Env.Close(); err != nil {
			r.Log.Warn("environment close failed", "task_id", at.Task.TaskID, "err", err)
		}
	}()
	pol, cached := r.policy(ctx, at)
	st, err := at.Env.Start(ctx, StartOptions{Budget: at.Budget, Source: pol.Source()})
	if err != nil {
		return nil, err
	}
	add(tr, st.Result)
	var o Outcome
	switch {
	case st.Invalid:
		o.Invalid, o.End = true, st.End
		o.Conclude(tr)
		return done(tr, started), nil
	case st.End != nil:
		// The start failed: no source is asked for actions.
		o.End = st.End
	default:
		o.Source = pol.Source()
		r.noteSource(tr, at, o.Source, cached)
		if err := r.act(ctx, tr, &o, at.Env, pol, st); err != nil {
			return nil, err
		}
		r.noteSamplingIgnored(tr, at.Task, o.Source)
		if o.NoSource {
			o.Conclude(tr)
			return done(tr, started), nil
		}
	}
	ev, err := at.Env.Evaluate(ctx, o.End)
	if err != nil {
		return nil, err
	}
	for _, s := range ev.Steps {
		tr.AddStep(s)
	}
	o.Eval = &ev
	o.Conclude(tr)
	r.keep(ctx, tr, at, o.Source, cached != nil)
	return done(tr, started), nil
}

// act is the loop: the policy's actions, each stepped and recorded, until
// the policy stops or a step is Done; it sets o's Stop, End and NoSource.
func (r *Runner) act(ctx context.Context, tr *core.Trajectory, o *Outcome, env Environment, pol Policy, st Start) error {
	pol.Reset(st.Space, st.Observation)
	obs := st.Observation
	for {
		a, ok := pol.Next(ctx, obs)
		if !ok {
			break
		}
		a.Source = o.Source
		res, err := env.Step(ctx, a)
		if err != nil {
			return err
		}
		add(tr, res)
		if res.Done {
			switch {
			case res.End != nil:
				o.End = res.End
			case a.Answer != nil:
				o.Stop = core.ExitAnswered
			case res.Finished || a.Call != nil:
				o.Stop = core.ExitFinished
			}
			break
		}
		obs = res.Observation
	}
	pe := pol.End()
	for _, s := range pe.Steps {
		tr.AddStep(s)
	}
	if o.Stop == "" {
		o.Stop = pe.Stop
	}
	if o.End == nil {
		o.End = pe.Failure
	}
	if pe.NoSource {
		o.NoSource, o.Source = true, SourceNone
		tr.Metadata[core.MetaSource] = string(SourceNone)
	}
	if pe.Rule != "" {
		tr.Metadata[core.MetaRule] = pe.Rule
	}
	if x := pe.Model; x != nil {
		tr.Metadata[core.MetaLLMCalls] = x.LLMCalls
		tr.Metadata[core.MetaPromptTokens] = x.Usage.PromptTokens
		tr.Metadata[core.MetaCompletionTokens] = x.Usage.CompletionTokens
		tr.Metadata[core.MetaTotalTokens] = x.Usage.TotalTokens
		tr.Messages, tr.Tools, tr.ModelCalls, tr.LLM = x.Transcript, x.Tools, x.Calls, x.LLM
	}
	if o.Source == SourceLLM || o.Stop == core.ExitMaxSteps {
		tr.Metadata[core.MetaStopReason] = string(o.Stop)
	}
	return nil
}

// add records what Start or a Step did.
func add(tr *core.Trajectory, res Result) {
	for _, s := range res.Steps {
		tr.AddStep(s)
	}
	for k, v := range res.Metadata {
		tr.Metadata[k] = v
	}
}

func done(tr *core.Trajectory, started time.Time) *core.Trajectory {
	tr.TotalDuration = time.Since(started).Seconds()
	return tr
}

// policy chooses the attempt's policy; cached is the entry a cache policy
// replays.
func (r *Runner) policy(ctx context.Context, at Attempt) (Policy, *cacheHit) {
	max := at.Task.MaxSteps
	switch {
	case at.Scripted != nil:
		return &Replay{From: SourceScripted, Actions: at.Scripted, MaxSteps: max}, nil
	}
	if as, hit := r.lookup(ctx, at); hit != nil {
		return &Replay{From: SourceCache, Actions: as, MaxSteps: max}, hit
	}
	if r.Model != nil {
		return NewModelPolicy(r.Model, at.Task), nil
	}
	return at.Rules, nil
}

// noteSamplingIgnored records, on an attempt of a task with samples > 1
// or sampling settings, that no model was asked, so that the attempts are
// alike and the settings were not used (adpctl submit warns as well).
func (r *Runner) noteSamplingIgnored(tr *core.Trajectory, task core.TaskSpec, src Source) {
	if task.Samples <= 1 && task.Sampling == nil {
		return
	}
	var why string
	switch src {
	case SourceLLM:
		return
	case SourceScripted:
		why = "the task brings its own program or actions: every attempt runs them, no model is asked"
	case SourceCache:
		why = "a cached program or action sequence was replayed, no model was asked"
	default:
		why = "no model is configured (LLM_BASE_URL): every attempt runs the same rule program"
	}
	tr.Metadata[core.MetaSamplingIgnored] = why
}
