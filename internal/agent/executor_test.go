package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// fakeTask records which source the executor used; succeed decides the
// outcome of whatever ran.
type fakeTask struct {
	tr       *core.Trajectory
	scripted bool
	rules    bool // a rule applies
	succeed  bool
	kind     string // the entry kind it replays and stores
	used     []string
	replayed string
}

func (f *fakeTask) Scripted(context.Context) bool {
	if f.scripted {
		f.used = append(f.used, "scripted")
	}
	return f.scripted
}
func (f *fakeTask) CacheKey() string { return "template_cache:fake" }
func (f *fakeTask) Replay(_ context.Context, e templatecache.Entry) bool {
	if e.Kind != f.kind {
		return false
	}
	f.used = append(f.used, "cache")
	f.replayed = e.Program
	return true
}
func (f *fakeTask) Model(context.Context) { f.used = append(f.used, "model") }
func (f *fakeTask) Rules(context.Context) bool {
	if !f.rules {
		f.tr.Fail(core.ErrSystem, "no rule")
		return false
	}
	f.used = append(f.used, "rules")
	return true
}
func (f *fakeTask) Conclude(context.Context) {
	f.used = append(f.used, "conclude")
	if f.succeed {
		f.tr.Success = true
		f.tr.Metadata[core.MetaVerified] = true
	} else {
		f.tr.Fail(core.ErrWrongAnswer, "no")
	}
}
func (f *fakeTask) Entry() (templatecache.Entry, bool) {
	return templatecache.Entry{Kind: f.kind, Program: "print(1)", Actions: []byte(`[{"action":"finish"}]`)}, true
}

func TestExecutorSourceOrder(t *testing.T) {
	r := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(r.Client, templatecache.Options{})
	m := metrics.New()
	x := &Executor{Cache: cache, Metrics: m, Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d"}
	run := func(f *fakeTask) *core.Trajectory {
		t.Helper()
		f.tr = core.NewTrajectory(task, "")
		if f.kind == "" {
			f.kind = templatecache.KindProgram
		}
		x.Run(ctx, f.tr, task, f)
		return f.tr
	}
	cached := func() (templatecache.Entry, bool) {
		e, ok, err := cache.Get(ctx, "template_cache:fake")
		if err != nil {
			t.Fatal(err)
		}
		return e, ok
	}

	// Scripted comes first, and a scripted success is not cached.
	tr := run(&fakeTask{scripted: true, succeed: true, rules: true})
	if tr.Metadata[core.MetaSource] != SourceScripted || tr.Metadata[core.MetaCacheHit] != nil {
		t.Errorf("scripted: metadata %v", tr.Metadata)
	}
	if _, ok := cached(); ok {
		t.Error("a scripted success was cached")
	}

	// No model: the rules; their verified success is cached.
	f := &fakeTask{rules: true, succeed: true}
	tr = run(f)
	if strings.Join(f.used, ",") != "rules,conclude" || tr.Metadata[core.MetaSource] != SourceRules || tr.Metadata[core.MetaCacheHit] != false {
		t.Errorf("rules: used %v, metadata %v", f.used, tr.Metadata)
	}
	if e, ok := cached(); !ok || e.Source != SourceRules || e.Verified == nil || !*e.Verified {
		t.Errorf("after a rules success the cache holds %+v, %v", e, ok)
	}

	// The cache answers before the model, and a hit is marked.
	x.HasModel = true
	f = &fakeTask{succeed: true}
	tr = run(f)
	if strings.Join(f.used, ",") != "cache,conclude" || f.replayed != "print(1)" ||
		tr.Metadata[core.MetaSource] != SourceCache || tr.Metadata[core.MetaCacheHit] != true || tr.Metadata[core.MetaCachedFrom] != SourceRules {
		t.Errorf("cache hit: used %v, metadata %v", f.used, tr.Metadata)
	}

	// An entry of another kind is a miss: the model runs.
	f = &fakeTask{succeed: false, kind: templatecache.KindActions}
	tr = run(f)
	if strings.Join(f.used, ",") != "model,conclude" || tr.Metadata[core.MetaSource] != SourceLLM || tr.Metadata[core.MetaCacheHit] != false || tr.Metadata[core.MetaCachedFrom] != nil {
		t.Errorf("wrong-kind entry: used %v, metadata %v", f.used, tr.Metadata)
	}

	// A hit whose replay fails is evicted; the next run asks the model.
	f = &fakeTask{succeed: false}
	run(f)
	if _, ok := cached(); ok {
		t.Error("a cached program that failed was not evicted")
	}
	f = &fakeTask{succeed: true}
	tr = run(f)
	if strings.Join(f.used, ",") != "model,conclude" || tr.Metadata[core.MetaSource] != SourceLLM {
		t.Errorf("after eviction: used %v, metadata %v", f.used, tr.Metadata)
	}
	if e, ok := cached(); !ok || e.Source != SourceLLM {
		t.Errorf("the model's success was not cached: %+v, %v", e, ok)
	}

	// No model and no rule: the task fails without concluding.
	x.HasModel = false
	x.Cache = nil
	f = &fakeTask{}
	tr = run(f)
	if len(f.used) != 0 || tr.Metadata[core.MetaSource] != SourceNone || tr.Success || tr.ErrorMessage != "no rule" {
		t.Errorf("no source: used %v, metadata %v, %s", f.used, tr.Metadata, tr.ErrorMessage)
	}

	hits := testutil.ToFloat64(m.CacheHits.WithLabelValues("code"))
	misses := testutil.ToFloat64(m.CacheMisses.WithLabelValues("code"))
	if hits != 2 || misses != 3 {
		t.Errorf("cache hits %v, misses %v; want 2 and 3", hits, misses)
	}
}

// The attempts of a task with samples > 1 never read the cache, even when
// it holds a program for the task; they still store a verified success.
func TestExecutorSampledAttemptsSkipTheCache(t *testing.T) {
	r := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(r.Client, templatecache.Options{})
	m := metrics.New()
	x := &Executor{Cache: cache, HasModel: true, Metrics: m, Log: slog.New(slog.DiscardHandler)}
	if err := cache.Put(ctx, "template_cache:fake", templatecache.Entry{Kind: templatecache.KindProgram, Program: "print(0)", Source: SourceLLM}); err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", Samples: 3, SampleIndex: k}
		f := &fakeTask{succeed: true, kind: templatecache.KindProgram}
		f.tr = core.NewTrajectory(task, "")
		x.Run(ctx, f.tr, task, f)
		if strings.Join(f.used, ",") != "model,conclude" || f.tr.Metadata[core.MetaSource] != SourceLLM {
			t.Errorf("attempt %d: used %v, metadata %v; want the model, not the cache", k, f.used, f.tr.Metadata)
		}
		if _, ok := f.tr.Metadata[core.MetaCacheHit]; ok {
			t.Errorf("attempt %d records cache_hit %v though the cache was not asked", k, f.tr.Metadata[core.MetaCacheHit])
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
	task := core.TaskSpec{TaskID: "t2", TaskType: core.TaskCode, Description: "d", Samples: 1}
	f := &fakeTask{succeed: true, kind: templatecache.KindProgram}
	f.tr = core.NewTrajectory(task, "")
	x.Run(ctx, f.tr, task, f)
	if strings.Join(f.used, ",") != "cache,conclude" {
		t.Errorf("single task after the attempts used %v, want the cache", f.used)
	}
}

// TestExecutorDoesNotCacheFlagged: a success the test harness flagged
// (metadata.flags) is recorded as a success and not cached.
func TestExecutorDoesNotCacheFlagged(t *testing.T) {
	r := testsupport.StartRedis(t)
	ctx := context.Background()
	cache := templatecache.New(r.Client, templatecache.Options{})
	x := &Executor{Cache: cache, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d"}
	for _, flagged := range []bool{true, false} {
		f := &flaggedTask{fakeTask: fakeTask{rules: true, succeed: true, kind: templatecache.KindProgram}, flagged: flagged}
		f.tr = core.NewTrajectory(task, "")
		x.Run(ctx, f.tr, task, f)
		_, cached, err := cache.Get(ctx, f.CacheKey())
		if err != nil || !f.tr.Success || cached == flagged {
			t.Errorf("flagged=%v: success=%v, cached=%v (%v); want a success cached only when not flagged", flagged, f.tr.Success, cached, err)
		}
	}
}

// flaggedTask is a fakeTask whose success the harness flagged.
type flaggedTask struct {
	fakeTask
	flagged bool
}

func (f *flaggedTask) Conclude(ctx context.Context) {
	f.fakeTask.Conclude(ctx)
	if f.flagged {
		f.tr.Metadata[core.MetaFlags] = []string{"eq_ignores_argument: an __eq__ ignores its argument"}
	}
}

// An attempt of a sampled task that no model produced says that sampling
// was ignored and why; a model's attempt and a single task do not.
func TestExecutorNotesSamplingIgnored(t *testing.T) {
	temp := 0.7
	cases := []struct {
		name     string
		hasModel bool
		scripted bool
		rules    bool
		samples  int
		sampling *core.Sampling
		want     string // "" means no note
	}{
		{"rules", false, false, true, 8, nil, "no model is configured"},
		{"no source", false, false, false, 8, nil, "no model is configured"},
		{"rules with sampling", false, false, true, 1, &core.Sampling{Temperature: &temp}, "no model is configured"},
		{"scripted", true, true, false, 4, nil, "brings its own program"},
		{"model", true, false, false, 8, nil, ""},
		{"one sample", false, false, true, 1, nil, ""},
	}
	for _, c := range cases {
		x := &Executor{HasModel: c.hasModel, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
		task := core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: "d", Samples: c.samples, Sampling: c.sampling}
		f := &fakeTask{succeed: true, scripted: c.scripted, rules: c.rules}
		f.tr = core.NewTrajectory(task, "")
		x.Run(context.Background(), f.tr, task, f)
		note, ok := f.tr.Metadata[core.MetaSamplingIgnored].(string)
		if c.want == "" && ok || c.want != "" && !strings.Contains(note, c.want) {
			t.Errorf("%s: sampling_ignored = %q (set %v), want %q", c.name, note, ok, c.want)
		}
	}
}
