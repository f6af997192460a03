package rollout

import (
	"context"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// The template cache beside the loop: Runner.policy looks an entry up
// (lookup) before the attempt starts, noteSource marks the hit or the miss
// and counts it once the attempt has started, and keep stores a verified,
// unflagged success of the model or the rules, or evicts a replayed entry
// that no longer succeeds. Only Cacheable environments are cached; the
// attempts of a task with samples > 1 never read the cache.

// cacheHit is a template cache entry the attempt replays.
type cacheHit struct {
	e templatecache.Entry
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
