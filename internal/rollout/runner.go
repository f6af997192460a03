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

// cacheHit is a template cache entry the attempt replays.
type cacheHit struct {
	e templatecache.Entry
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

// lookup reads the cache for a replayable entry; nil when the cache was
// not asked, missed, or held an entry the environment cannot replay.
func (r *Runner) lookup(ctx context.Context, at Attempt) ([]Action, *cacheHit) {
	ce, ok := at.Env.(Cacheable)
	if r.Cache == nil || !ok || at.Task.Samples > 1 {
		return nil, nil // not a miss either: the cache was not asked
	}
	e, ok, err := r.Cache.Get(ctx, ce.CacheKey())
	if err != nil {
		r.Log.Warn("template cache read failed; treated as a miss", "task_id", at.Task.TaskID, "err", err)
	}
	if !ok {
		return nil, nil // a miss, counted when the attempt starts
	}
	as, ok := ce.Replay(e)
	if !ok {
		return nil, nil
	}
	return as, &cacheHit{e: e}
}

// noteSource records where the actions come from, and the cache's answer.
func (r *Runner) noteSource(tr *core.Trajectory, at Attempt, src Source, cached *cacheHit) {
	tr.Metadata[core.MetaSource] = string(src)
	typ := string(at.Task.TaskType)
	switch {
	case src == SourceCache:
		tr.Metadata[core.MetaCacheHit] = true
		tr.Metadata[core.MetaCachedFrom] = cached.e.Source
		r.Metrics.CacheHits.WithLabelValues(typ).Inc()
	case r.Cache != nil && at.Scripted == nil && at.Task.Samples <= 1 && isCacheable(at.Env):
		tr.Metadata[core.MetaCacheHit] = false
		r.Metrics.CacheMisses.WithLabelValues(typ).Inc()
	}
}

func isCacheable(env Environment) bool {
	_, ok := env.(Cacheable)
	return ok
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

// keep stores a success of the model or the rules in the cache, with its
// verification, and evicts a replayed entry that no longer succeeds.
func (r *Runner) keep(ctx context.Context, tr *core.Trajectory, at Attempt, src Source, hit bool) {
	ce, ok := at.Env.(Cacheable)
	if r.Cache == nil || !ok {
		return
	}
	switch {
	case src == SourceCache && hit && !tr.Success:
		if err := r.Cache.Delete(ctx, ce.CacheKey()); err != nil {
			r.Log.Warn("template cache evict failed", "task_id", at.Task.TaskID, "err", err)
		}
	case tr.Success && (src == SourceLLM || src == SourceRules):
		if _, flagged := tr.Metadata[core.MetaFlags]; flagged {
			// The check saw what can pass it without the work
			// (metadata.flags): a success it may not have established.
			return
		}
		e, ok := ce.Entry()
		if !ok {
			return
		}
		e.Source = string(src)
		if v, ok := tr.Metadata[core.MetaVerified].(bool); ok {
			e.Verified = &v
		}
		if err := r.Cache.Put(ctx, ce.CacheKey(), e); err != nil {
			r.Log.Warn("template cache write failed", "task_id", at.Task.TaskID, "err", err)
		}
	}
}

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
