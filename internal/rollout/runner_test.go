package rollout

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// sources is how an attempt is to be acted on in the Runner's tests.
type sources struct {
	scripted bool
	rules    bool // a rule applies
}

// run runs an attempt of task against env with the runner's sources.
func (s sources) run(t *testing.T, r *Runner, env Environment, task core.TaskSpec) *core.Trajectory {
	t.Helper()
	at := attempt(env, task)
	if s.scripted {
		at.Scripted = []Action{{Input: "scripted"}}
	}
	if s.rules {
		at.Rules = &Replay{From: SourceRules, Actions: []Action{{Input: "rule"}}, MaxSteps: 1, Rule: "r"}
	}
	tr, err := r.Run(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// answers is a model that answers "right" at once.
func answers() Model {
	return &scriptedModel{replies: []llm.Message{answer("right"), answer("right"), answer("right")}}
}

func TestRunnerSourceOrder(t *testing.T) {
	rd := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(rd.Client, templatecache.Options{})
	m := metrics.New()
	r := &Runner{Cache: cache, Metrics: m, Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", MaxSteps: 3}
	env := func(succeed bool, kind string) *cacheEnv {
		return &cacheEnv{testEnv: testEnv{succeed: succeed}, kind: kind}
	}
	cached := func() (templatecache.Entry, bool) {
		e, ok, err := cache.Get(ctx, "template_cache:fake")
		if err != nil {
			t.Fatal(err)
		}
		return e, ok
	}
	used := func(e *cacheEnv) string { return strings.Join(e.used, ",") }

	// Scripted comes first, and a scripted success is not cached.
	e := env(true, templatecache.KindProgram)
	tr := sources{scripted: true, rules: true}.run(t, r, e, task)
	if used(e) != "scripted,evaluate" || tr.Metadata[core.MetaSource] != "scripted" || tr.Metadata[core.MetaCacheHit] != nil || tr.ExitReason != core.ExitReplayed {
		t.Errorf("scripted: used %s, metadata %v, exit %s", used(e), tr.Metadata, tr.ExitReason)
	}
	if _, ok := cached(); ok {
		t.Error("a scripted success was cached")
	}

	// No model: the rules; their verified success is cached.
	e = env(true, templatecache.KindProgram)
	tr = sources{rules: true}.run(t, r, e, task)
	if used(e) != "rules,evaluate" || tr.Metadata[core.MetaSource] != "rules" || tr.Metadata[core.MetaCacheHit] != false ||
		tr.Metadata[core.MetaRule] != "r" || tr.ExitReason != core.ExitRules || !tr.Success {
		t.Errorf("rules: used %s, metadata %v, exit %s", used(e), tr.Metadata, tr.ExitReason)
	}
	if e, ok := cached(); !ok || e.Source != "rules" || e.Verified == nil || !*e.Verified {
		t.Errorf("after a rules success the cache holds %+v, %v", e, ok)
	}

	// The cache answers before the model, and a hit is marked.
	r.Model = answers()
	e = env(true, templatecache.KindProgram)
	tr = sources{}.run(t, r, e, task)
	if used(e) != "cache,evaluate" || e.replayed != "print(1)" || tr.ExitReason != core.ExitReplayed ||
		tr.Metadata[core.MetaSource] != "cache" || tr.Metadata[core.MetaCacheHit] != true || tr.Metadata[core.MetaCachedFrom] != "rules" {
		t.Errorf("cache hit: used %s, metadata %v", used(e), tr.Metadata)
	}

	// An entry of another kind is a miss: the model runs.
	e = env(false, templatecache.KindActions)
	tr = sources{}.run(t, r, e, task)
	if used(e) != "llm,evaluate" || tr.Metadata[core.MetaSource] != "llm" || tr.Metadata[core.MetaCacheHit] != false || tr.Metadata[core.MetaCachedFrom] != nil {
		t.Errorf("wrong-kind entry: used %s, metadata %v", used(e), tr.Metadata)
	}

	// A hit whose replay fails is evicted; the next run asks the model.
	e = env(false, templatecache.KindProgram)
	sources{}.run(t, r, e, task)
	if _, ok := cached(); ok {
		t.Error("a cached program that failed was not evicted")
	}
	e = env(true, templatecache.KindProgram)
	tr = sources{}.run(t, r, e, task)
	if used(e) != "llm,evaluate" || tr.Metadata[core.MetaSource] != "llm" || tr.ExitReason != core.ExitAnswered {
		t.Errorf("after eviction: used %s, metadata %v", used(e), tr.Metadata)
	}
	if e, ok := cached(); !ok || e.Source != "llm" {
		t.Errorf("the model's success was not cached: %+v, %v", e, ok)
	}

	// No model and no rule: the task fails without evaluating.
	r.Model, r.Cache = nil, nil
	e = env(true, templatecache.KindProgram)
	tr = sources{}.run(t, r, e, task)
	if used(e) != "" || tr.Metadata[core.MetaSource] != "none" || tr.Success || tr.ErrorMessage != "no rule" || tr.ExitReason != core.ExitNoSource || tr.Reward != nil {
		t.Errorf("no source: used %s, metadata %v, %s, exit %s", used(e), tr.Metadata, tr.ErrorMessage, tr.ExitReason)
	}

	hits := testutil.ToFloat64(m.CacheHits.WithLabelValues("code"))
	misses := testutil.ToFloat64(m.CacheMisses.WithLabelValues("code"))
	if hits != 2 || misses != 3 {
		t.Errorf("cache hits %v, misses %v; want 2 and 3", hits, misses)
	}
}

// The attempts of a task with samples > 1 never read the cache, even when
// it holds a program for the task; they still store a verified success.
func TestRunnerSampledAttemptsSkipTheCache(t *testing.T) {
	rd := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(rd.Client, templatecache.Options{})
	m := metrics.New()
	r := &Runner{Cache: cache, Model: answers(), Metrics: m, Log: slog.New(slog.DiscardHandler)}
	if err := cache.Put(ctx, "template_cache:fake", templatecache.Entry{Kind: templatecache.KindProgram, Program: "print(0)", Source: "llm"}); err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", Samples: 3, SampleIndex: k, MaxSteps: 3}
		r.Model = answers()
		e := &cacheEnv{testEnv: testEnv{succeed: true}, kind: templatecache.KindProgram}
		tr := sources{}.run(t, r, e, task)
		if strings.Join(e.used, ",") != "llm,evaluate" || tr.Metadata[core.MetaSource] != "llm" {
			t.Errorf("attempt %d: used %v, metadata %v; want the model, not the cache", k, e.used, tr.Metadata)
		}
		if _, ok := tr.Metadata[core.MetaCacheHit]; ok {
			t.Errorf("attempt %d records cache_hit %v though the cache was not asked", k, tr.Metadata[core.MetaCacheHit])
		}
	}
	if h, ms := testutil.ToFloat64(m.CacheHits.WithLabelValues("code")), testutil.ToFloat64(m.CacheMisses.WithLabelValues("code")); h != 0 || ms != 0 {
		t.Errorf("cache hits %v, misses %v; want none counted", h, ms)
	}
	// The model's verified success was stored (replacing the old entry).
	if e, ok, err := cache.Get(ctx, "template_cache:fake"); err != nil || !ok || e.Program != "print(1)" || e.Verified == nil || !*e.Verified {
		t.Errorf("cache after the attempts: %+v, %v, %v; want the attempts' verified program", e, ok, err)
	}
	// A later task of one attempt reads it.
	e := &cacheEnv{testEnv: testEnv{succeed: true}, kind: templatecache.KindProgram}
	sources{}.run(t, r, e, core.TaskSpec{TaskID: "t2", TaskType: core.TaskCode, Description: "d", Samples: 1, MaxSteps: 3})
	if strings.Join(e.used, ",") != "cache,evaluate" {
		t.Errorf("single task after the attempts used %v, want the cache", e.used)
	}
}

// TestRunnerDoesNotCacheFlagged: a success the check flagged
// (metadata.flags) is recorded as a success and not cached.
func TestRunnerDoesNotCacheFlagged(t *testing.T) {
	rd := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(rd.Client, templatecache.Options{})
	r := &Runner{Cache: cache, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", MaxSteps: 3}
	for _, flagged := range []bool{true, false} {
		e := &cacheEnv{testEnv: testEnv{succeed: true, flagged: flagged}, kind: templatecache.KindProgram}
		tr := sources{rules: true}.run(t, r, e, task)
		_, cached, err := cache.Get(ctx, e.CacheKey())
		if err != nil || !tr.Success || cached == flagged {
			t.Errorf("flagged=%v: success=%v, cached=%v (%v); want a success cached only when not flagged", flagged, tr.Success, cached, err)
		}
	}
}

// An attempt of a sampled task that no model produced says that sampling
// was ignored and why; a model's attempt and a single task do not.
func TestRunnerNotesSamplingIgnored(t *testing.T) {
	temp := 0.7
	cases := []struct {
		name     string
		hasModel bool
		src      sources
		samples  int
		sampling *core.Sampling
		want     string // "" means no note
	}{
		{"rules", false, sources{rules: true}, 8, nil, "no model is configured"},
		{"no source", false, sources{}, 8, nil, "no model is configured"},
		{"rules with sampling", false, sources{rules: true}, 1, &core.Sampling{Temperature: &temp}, "no model is configured"},
		{"scripted", true, sources{scripted: true}, 4, nil, "brings its own program"},
		{"model", true, sources{}, 8, nil, ""},
		{"one sample", false, sources{rules: true}, 1, nil, ""},
	}
	for _, c := range cases {
		r := &Runner{Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
		if c.hasModel {
			r.Model = answers()
		}
		task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", Samples: c.samples, Sampling: c.sampling, MaxSteps: 3}
		tr := c.src.run(t, r, &testEnv{succeed: true}, task)
		note, ok := tr.Metadata[core.MetaSamplingIgnored].(string)
		if c.want == "" && ok || c.want != "" && !strings.Contains(note, c.want) {
			t.Errorf("%s: sampling_ignored = %q (set %v), want %q", c.name, note, ok, c.want)
		}
	}
}

// TestReplayBudget: a replay stops at max_steps with the rest not run,
// and says so (exit_reason and metadata.stop_reason max_steps).
func TestReplayBudget(t *testing.T) {
	r := &Runner{Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	e := &testEnv{succeed: true}
	at := attempt(e, core.TaskSpec{MaxSteps: 2})
	at.Scripted = []Action{{Input: "1"}, {Input: "2"}, {Input: "3"}}
	tr, err := r.Run(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Steps) != 2 || tr.ExitReason != core.ExitMaxSteps || tr.Metadata[core.MetaStopReason] != "max_steps" || !tr.Success {
		t.Errorf("steps %d exit %s metadata %v success %v", len(tr.Steps), tr.ExitReason, tr.Metadata, tr.Success)
	}
}
