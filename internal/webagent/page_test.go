package webagent

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The web agent's logic without a browser: a fake site of two pages, a
// search form and a result, behind the Page interface.

type fakeSite struct {
	pages   map[string]browser.Observation
	blocked string // a URL whose navigation is refused
	opened  int    // pages acquired
	actions []string
}

func (s *fakeSite) Acquire(context.Context) (Page, error) {
	s.opened++
	return &fakePage{site: s, cur: browser.Observation{URL: "about:blank"}}, nil
}

type fakePage struct {
	site *fakeSite
	cur  browser.Observation
}

func (p *fakePage) log(a string) { p.site.actions = append(p.site.actions, a) }

func (p *fakePage) Goto(_ context.Context, url string) error {
	p.log("goto " + url)
	if url == p.site.blocked {
		return &browser.BlockedURLError{URL: url, Reason: "a private address"}
	}
	o, ok := p.site.pages[url]
	if !ok {
		o = browser.Observation{URL: url, Title: "Not found", Status: 404, Text: "not found"}
	}
	p.cur = o
	return nil
}

func (p *fakePage) element(op, sel string) error {
	p.log(op + " " + sel)
	if !strings.Contains(p.cur.AriaSnapshot, sel) && !strings.Contains(sel, "input") && !strings.Contains(sel, "a") {
		return &browser.ElementError{Op: op, Selector: sel, Reason: "no element matches"}
	}
	return nil
}

func (p *fakePage) Click(ctx context.Context, sel string) error {
	if err := p.element("click", sel); err != nil {
		return err
	}
	p.cur = p.site.pages["http://site/result"]
	return nil
}
func (p *fakePage) Fill(_ context.Context, sel, _ string) error { return p.element("fill", sel) }
func (p *fakePage) FillAndSubmit(_ context.Context, sel, text string) error {
	if err := p.element("fill_and_submit", sel); err != nil {
		return err
	}
	p.cur = p.site.pages["http://site/search"]
	p.cur.Text = "Results for " + text
	return nil
}
func (p *fakePage) Press(_ context.Context, sel, _ string) error  { return p.element("press", sel) }
func (p *fakePage) Select(_ context.Context, sel, _ string) error { return p.element("select", sel) }
func (p *fakePage) Scroll(context.Context, string) error          { p.log("scroll"); return nil }
func (p *fakePage) Find(_ context.Context, text string) error     { p.log("find " + text); return nil }
func (p *fakePage) DoubleClick(_ context.Context, sel string) error {
	return p.element("dblclick", sel)
}
func (p *fakePage) Hover(_ context.Context, sel string) error   { return p.element("hover", sel) }
func (p *fakePage) Drag(_ context.Context, sel, _ string) error { return p.element("drag", sel) }
func (p *fakePage) MouseClick(context.Context, float64, float64) error {
	p.log("mouse_click")
	return nil
}
func (p *fakePage) Key(_ context.Context, key string) error  { p.log("key " + key); return nil }
func (p *fakePage) Back(context.Context) error               { p.log("back"); return nil }
func (p *fakePage) SwitchTab(context.Context, int) error     { p.log("switch_tab"); return nil }
func (p *fakePage) Wait(_ context.Context, sel string) error { return p.element("wait", sel) }
func (p *fakePage) Extract(_ context.Context, sel string) (string, error) {
	return p.cur.Text, p.element("extract", sel)
}
func (p *fakePage) Observe(context.Context) (browser.Observation, error) { return p.cur, nil }
func (p *fakePage) PageText(context.Context) (string, error) {
	return p.cur.Title + "\n" + p.cur.Text, nil
}
func (p *fakePage) AnswerNextDialog(browser.DialogAnswer)      { p.log("dialog") }
func (p *fakePage) Eval(context.Context, string) (any, error)  { return nil, nil }
func (p *fakePage) Screenshot(context.Context, string) error   { return nil }
func (p *fakePage) Close() error                               { return nil }
func (p *fakePage) KeepDownloads(string, browser.DownloadName) {}

func newFakeSite() *fakeSite {
	return &fakeSite{pages: map[string]browser.Observation{
		"http://site/": {URL: "http://site/", Title: "Home", Status: 200, Text: "Search the site",
			AriaSnapshot: "- searchbox \"q\"\n- button \"Go\""},
		"http://site/search": {URL: "http://site/search?q=x", Title: "Results", Status: 200, Text: "Results",
			AriaSnapshot: "- list:\n  - link \"First\""},
		"http://site/result": {URL: "http://site/first", Title: "First result", Status: 200, Text: "The first result. More text."},
	}}
}

func newFakeAgent(t *testing.T, site *fakeSite, cache *templatecache.Cache) *Agent {
	t.Helper()
	return &Agent{Pages: site, Cache: cache, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
}

func TestSourcesWithoutABrowser(t *testing.T) {
	r := testsupport.StartRedis(t)
	ctx := context.Background()
	site := newFakeSite()
	a := newFakeAgent(t, site, templatecache.New(r.Client, templatecache.Options{}))
	search := webTask("Search for the first result", map[string]any{"start_url": "http://site/", "expected_text": "first result"})

	// No model: the rules search, open the first result and finish; the
	// verified success is cached.
	tr, err := a.Execute(ctx, search)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.Metadata[core.MetaSource] != string(rollout.SourceRules) || tr.Metadata[core.MetaCacheHit] != false || tr.Metadata[core.MetaVerified] != true {
		t.Fatalf("rules: success=%v %s, metadata %v, actions %v", tr.Success, tr.ErrorMessage, tr.Metadata, site.actions)
	}
	if got := strings.Join(site.actions, ";"); got != "goto http://site/;fill_and_submit "+searchBoxSelector+";click "+resultSelector {
		t.Errorf("rules performed %s", got)
	}

	// The same task again: a cache hit, replayed for real on a new page.
	site.actions = nil
	tr, err = a.Execute(ctx, search)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.Metadata[core.MetaSource] != string(rollout.SourceCache) || tr.Metadata[core.MetaCachedFrom] != string(rollout.SourceRules) || len(site.actions) != 3 {
		t.Fatalf("cache: success=%v %s, metadata %v, actions %v", tr.Success, tr.ErrorMessage, tr.Metadata, site.actions)
	}
	if hits := testutil.ToFloat64(a.Metrics.CacheHits.WithLabelValues("web")); hits != 1 {
		t.Errorf("cache hits = %v", hits)
	}

	// Scripted actions come before the cache, and are verified.
	site.actions = nil
	scripted := search
	scripted.Constraints = map[string]any{"start_url": "http://site/", "expected_url": "/first",
		"actions": []any{map[string]any{"action": "click", "selector": "a.first"}, map[string]any{"action": "finish", "answer": "First"}}}
	tr, err = a.Execute(ctx, scripted)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.Metadata[core.MetaSource] != string(rollout.SourceScripted) || tr.FinalResult != "First" || len(tr.Steps) != 3 {
		t.Errorf("scripted: success=%v %s, metadata %v, steps %d", tr.Success, tr.ErrorMessage, tr.Metadata, len(tr.Steps))
	}

	// A verifier that fails: wrong_answer, verified false, nothing cached.
	wrong := webTask("Search for the second result", map[string]any{"start_url": "http://site/", "expected_url": "/second"})
	tr, err = a.Execute(ctx, wrong)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ErrorType != core.ErrWrongAnswer || tr.Metadata[core.MetaVerified] != false {
		t.Errorf("failed verifier: success=%v %s %s, metadata %v", tr.Success, tr.ErrorType, tr.ErrorMessage, tr.Metadata)
	}
	if _, ok, _ := a.Cache.Get(ctx, templatecache.Key("web", wrong.Description, "http://site/", core.WebConstraints{ExpectedURL: "/second"}.CheckDigest())); ok {
		t.Error("a failed task was cached")
	}
}

func TestBlockedStartPageAsksNoSource(t *testing.T) {
	site := newFakeSite()
	site.blocked = "http://10.0.0.1/"
	a := newFakeAgent(t, site, nil)
	tr, err := a.Execute(context.Background(), webTask("Search for x", map[string]any{"start_url": site.blocked,
		"actions": []any{map[string]any{"action": "click", "selector": "a"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ErrorType != core.ErrBlockedURL || len(tr.Steps) != 1 || len(site.actions) != 1 {
		t.Errorf("success=%v %s, %d steps, actions %v; want one blocked step and nothing else", tr.Success, tr.ErrorType, len(tr.Steps), site.actions)
	}
	if _, ok := tr.Metadata[core.MetaSource]; ok {
		t.Errorf("metadata %v: no source was asked", tr.Metadata)
	}
}

func TestWebReward(t *testing.T) {
	site := newFakeSite()
	a := newFakeAgent(t, site, nil)
	finish := []any{map[string]any{"action": "click", "selector": "a.first"}, map[string]any{"action": "finish", "answer": "First"}}
	for _, tc := range []struct {
		name   string
		c      map[string]any
		reward any
		exit   core.ExitReason
	}{
		{"no verifier", map[string]any{"start_url": "http://site/", "actions": finish}, nil, core.ExitReplayed},
		{"all three pass", map[string]any{"start_url": "http://site/", "actions": finish, "expected_text": "first result", "expected_url": "/first", "answer": "First"}, 1.0, core.ExitReplayed},
		{"two of three", map[string]any{"start_url": "http://site/", "actions": finish, "expected_text": "first result", "expected_url": "/second", "answer": "First"}, 2.0 / 3, core.ExitReplayed},
		{"one of two", map[string]any{"start_url": "http://site/", "actions": finish, "expected_url": "/first", "answer": "Second"}, 0.5, core.ExitReplayed},
		{"blocked start", map[string]any{"start_url": "http://10.0.0.1/", "actions": finish, "expected_url": "/first"}, 0.0, core.ExitAborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site.blocked = "http://10.0.0.1/"
			tr, err := a.Execute(context.Background(), webTask("reward", tc.c))
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if tr.Reward != nil {
				got = *tr.Reward
			}
			if got != tc.reward || tr.ExitReason != tc.exit {
				t.Errorf("reward %v exit %q, want %v %q (%s)", got, tr.ExitReason, tc.reward, tc.exit, tr.ErrorMessage)
			}
		})
	}
}

// TestVerificationFeedbackHidesTheChecks: a model told that its answer
// failed verification learns which kind of check failed, never what the
// check expects (issue 23 §4).
func TestVerificationFeedbackHidesTheChecks(t *testing.T) {
	fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
		return 200, testsupport.AnswerReply("I guess: nothing")
	})
	client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	a := newFakeAgent(t, newFakeSite(), nil)
	a.LLM = client
	tr, err := a.Execute(context.Background(), webTask("Find the code", map[string]any{"start_url": "http://site/",
		"expected_text": "zebra-1234", "expected_url": "/secret-page", "answer": "aardvark-9", "answer_contains": "okapi-77"}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success {
		t.Fatal("success without passing the checks")
	}
	reqs := fake.Requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests: no feedback was sent", len(reqs))
	}
	fb := reqs[1].LastContent()
	if !strings.Contains(fb, "Verification failed") {
		t.Errorf("feedback %q", fb)
	}
	for _, r := range reqs {
		for _, m := range r.Messages {
			for _, secret := range []string{"zebra-1234", "secret-page", "aardvark-9", "okapi-77"} {
				if strings.Contains(m.Content, secret) {
					t.Errorf("the model was shown %q: %q", secret, m.Content)
				}
			}
		}
	}
}

// TestInvalidTasks: a task whose constraints do not decode, or whose
// scripts have no start page, ends invalid_task without a source asked.
func TestInvalidTasks(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    map[string]any
		why  string
	}{
		{"constraints that do not decode", map[string]any{"start_url": 5}, "invalid constraints: "},
		{"a script without a start page", map[string]any{"setup_script": "return 1;"}, "need a start_url to run on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := newFakeSite()
			tr, err := newFakeAgent(t, site, nil).Execute(context.Background(), webTask("invalid", tc.c))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success || tr.ExitReason != core.ExitInvalidTask || tr.ErrorType != core.ErrSystem || !strings.Contains(tr.ErrorMessage, tc.why) || len(tr.Steps) != 0 {
				t.Errorf("success=%v exit=%s %s %q, %d steps", tr.Success, tr.ExitReason, tr.ErrorType, tr.ErrorMessage, len(tr.Steps))
			}
			if _, ok := tr.Metadata[core.MetaSource]; ok || tr.Reward != nil {
				t.Errorf("metadata %v, reward %v: no source was asked, no check applies", tr.Metadata, tr.Reward)
			}
		})
	}
}

// TestOnlyTheTasksSourcesAreAuthored: text a step types is the task's
// (never an echo suspect) only when the step says it comes from the
// task's actions, the cache or the rules; a step of a model, or of a
// caller that does not say, that types the expected text into an echoing
// page does not verify it.
func TestOnlyTheTasksSourcesAreAuthored(t *testing.T) {
	for _, tc := range []struct {
		source   rollout.Source
		verified bool
	}{
		{rollout.SourceScripted, true},
		{rollout.SourceCache, true},
		{rollout.SourceRules, true},
		{rollout.SourceLLM, false},
		{"", false},
	} {
		t.Run(string(tc.source), func(t *testing.T) {
			ctx := context.Background()
			at, rejected := newFakeAgent(t, newFakeSite(), nil).Attempt(ctx, webTask("Search for zebra",
				map[string]any{"start_url": "http://site/", "expected_text": "zebra"}))
			if rejected != nil {
				t.Fatal(rejected.ErrorMessage)
			}
			defer at.Env.Close()
			if _, err := at.Env.Start(ctx, rollout.StartOptions{Budget: at.Budget, Source: tc.source}); err != nil {
				t.Fatal(err)
			}
			res, err := at.Env.Step(ctx, rollout.Action{Source: tc.source, Input: Action{Action: "fill_and_submit", Selector: "input", Text: "zebra"}})
			if err != nil || len(res.Steps) != 1 || !res.Steps[0].Success {
				t.Fatalf("step: %v %+v", err, res.Steps)
			}
			ev, err := at.Env.Evaluate(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Verified == nil || *ev.Verified != tc.verified {
				t.Errorf("verified %v (%s), want %v", ev.Verified, ev.Message, tc.verified)
			}
			if !tc.verified && !strings.Contains(ev.Message, "only where it repeats what the agent typed") {
				t.Errorf("message %q", ev.Message)
			}
		})
	}
}
