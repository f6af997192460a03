package agent

import (
	"context"
	"log/slog"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Program and action sources, recorded as metadata.source.
const (
	SourceScripted = "scripted" // the task brought its program or actions
	SourceCache    = "cache"    // the template cache
	SourceLLM      = "llm"
	SourceRules    = "rules" // the blueprint's heuristics, without an LLM
	SourceNone     = "none"  // no source had anything for the task
)

// Task is one task as an agent performs it: what differs between the code
// and the web agent. The executor (Run) owns the order of the sources, the
// template cache and the metadata they share.
type Task interface {
	// Scripted performs the task's own program or actions and reports
	// whether it had any.
	Scripted(ctx context.Context) bool
	// CacheKey names the task in the template cache.
	CacheKey() string
	// Replay performs a cached entry and reports whether the entry was one
	// the task can replay (its kind, readable).
	Replay(ctx context.Context, e templatecache.Entry) bool
	// Model lets the model choose the program or actions.
	Model(ctx context.Context)
	// Rules performs the blueprint's rules. When no rule applies it fails
	// the trajectory with the reason and returns false.
	Rules(ctx context.Context) bool
	// Conclude decides the trajectory's success from what was performed and
	// the task's verifier.
	Conclude(ctx context.Context)
	// Entry is what to cache after a success (Kind and Program or Actions);
	// false when there is nothing to cache.
	Entry() (templatecache.Entry, bool)
}

// Executor runs tasks through the sources in order: the task's own program
// or actions (scripted); the template cache (a hit is replayed for real and
// evicted when it no longer succeeds); the model, when one is configured;
// else the rules. A success from the model or the rules is cached, unless
// the test harness flagged it (metadata.flags).
//
// The attempts of a task with samples > 1 do not read the cache: a cached
// program would turn N independent samples into N copies of one. They may
// still store a verified success for later tasks of one attempt.
type Executor struct {
	// Cache is the template cache; nil disables it.
	Cache *templatecache.Cache
	// HasModel says whether a model is configured.
	HasModel bool
	Metrics  *metrics.Set
	Log      *slog.Logger
}

// Run performs t, recording into tr, and concludes it.
func (x *Executor) Run(ctx context.Context, tr *core.Trajectory, task core.TaskSpec, t Task) {
	hit := false
	switch {
	case t.Scripted(ctx):
		tr.Metadata[core.MetaSource] = SourceScripted
	case x.fromCache(ctx, tr, task, t):
		hit = true
	case x.HasModel:
		tr.Metadata[core.MetaSource] = SourceLLM
		t.Model(ctx)
	default:
		tr.Metadata[core.MetaSource] = SourceRules
		if !t.Rules(ctx) {
			tr.Metadata[core.MetaSource] = SourceNone
			tr.ExitReason = core.ExitNoSource
			x.noteSamplingIgnored(tr, task)
			return
		}
	}
	t.Conclude(ctx)
	x.noteSamplingIgnored(tr, task)
	if tr.ExitReason == "" {
		switch tr.Metadata[core.MetaSource] {
		case SourceScripted, SourceCache:
			tr.ExitReason = core.ExitReplayed
		case SourceRules:
			tr.ExitReason = core.ExitRules
		}
		if tr.ErrorType == core.ErrTimeout {
			tr.ExitReason = core.ExitTimeout
		}
	}
	switch src := tr.Metadata[core.MetaSource]; {
	case hit && !tr.Success && x.Cache != nil:
		// A cached program or sequence that no longer succeeds is evicted.
		if err := x.Cache.Delete(ctx, t.CacheKey()); err != nil {
			x.Log.Warn("template cache evict failed", "task_id", task.TaskID, "err", err)
		}
	case tr.Success && (src == SourceLLM || src == SourceRules):
		x.store(ctx, tr, task, t, src.(string))
	}
}

// noteSamplingIgnored records, on an attempt of a task with samples > 1
// or sampling settings, that no model was asked, so that the attempts are
// alike and the settings were not used (adpctl submit warns as well).
func (x *Executor) noteSamplingIgnored(tr *core.Trajectory, task core.TaskSpec) {
	if task.Samples <= 1 && task.Sampling == nil {
		return
	}
	var why string
	switch tr.Metadata[core.MetaSource] {
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

// fromCache replays the cached entry, if any; it reports whether the cache
// answered (a hit, even if the replay then failed).
func (x *Executor) fromCache(ctx context.Context, tr *core.Trajectory, task core.TaskSpec, t Task) bool {
	if x.Cache == nil || task.Samples > 1 {
		return false // not a miss either: the cache was not asked
	}
	typ := string(task.TaskType)
	e, ok, err := x.Cache.Get(ctx, t.CacheKey())
	if err != nil {
		x.Log.Warn("template cache read failed; treated as a miss", "task_id", task.TaskID, "err", err)
	}
	if ok {
		// Mark the hit before the replay records its steps.
		tr.Metadata[core.MetaCacheHit] = true
		tr.Metadata[core.MetaSource] = SourceCache
		tr.Metadata[core.MetaCachedFrom] = e.Source
		ok = t.Replay(ctx, e)
	}
	if !ok {
		delete(tr.Metadata, core.MetaCachedFrom)
		delete(tr.Metadata, core.MetaSource)
		tr.Metadata[core.MetaCacheHit] = false
		x.Metrics.CacheMisses.WithLabelValues(typ).Inc()
		return false
	}
	x.Metrics.CacheHits.WithLabelValues(typ).Inc()
	return true
}

// store caches what succeeded, with its verification outcome.
func (x *Executor) store(ctx context.Context, tr *core.Trajectory, task core.TaskSpec, t Task, src string) {
	if x.Cache == nil {
		return
	}
	e, ok := t.Entry()
	if !ok {
		return
	}
	if _, flagged := tr.Metadata[core.MetaFlags]; flagged {
		// The test harness saw what can pass tests without the work
		// (metadata.flags): a success the check may not have established.
		return
	}
	e.Source = src
	if v, ok := tr.Metadata[core.MetaVerified].(bool); ok {
		e.Verified = &v
	}
	if err := x.Cache.Put(ctx, t.CacheKey(), e); err != nil {
		x.Log.Warn("template cache write failed", "task_id", task.TaskID, "err", err)
	}
}
