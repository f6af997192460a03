package webagent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

type bundle struct {
	site  string // base URL of the demo site
	agent *Agent
	dir   string
}

// setup starts the demo site and a browser pool that may reach only it.
func setup(t *testing.T) *bundle { return setupSite(t, demosite.Handler()) }

// setupSite serves h on loopback and opens a browser pool that may reach
// only it.
func setupSite(t *testing.T, h http.Handler) *bundle {
	t.Helper()
	deps := testsupport.FindBrowser(t)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	pool, err := browser.NewPool(context.Background(), browser.Config{
		ExecutablePath: deps.Chromium, DriverDir: deps.DriverDir, NodePath: deps.Node, MaxConcurrent: 2,
		ActionTimeout: 3 * time.Second, NavigationTimeout: 10 * time.Second,
		Policy: browser.URLPolicy{AllowHosts: []string{u.Host}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	dir := t.TempDir()
	return &bundle{site: srv.URL, dir: dir, agent: &Agent{Pages: PoolPages(pool), Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler), ScreenshotDir: dir}}
}

func webTask(desc string, c map[string]any) core.TaskSpec {
	return core.TaskSpec{TaskID: "w", TaskType: core.TaskWeb, Description: desc, MaxSteps: 6, Timeout: 60, Priority: 1, Constraints: c}
}

func TestWebAgent(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	r := testsupport.StartRedis(t)
	b.agent.Cache = templatecache.New(r.Client, templatecache.Options{})

	t.Run("scripted form fill and submit with a screenshot", func(t *testing.T) {
		c := contactForm(b.site)
		c["screenshot"] = true
		tr, err := b.agent.Execute(ctx, webTask("contact", c))
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Success || tr.Metadata["verified"] != true || len(tr.Steps) != 5 || tr.FinalResult != "sent" {
			t.Fatalf("success=%v err=%s %s steps=%d meta=%v", tr.Success, tr.ErrorType, tr.ErrorMessage, len(tr.Steps), tr.Metadata)
		}
		if tr.Steps[0].ActionParams["initial"] != true || tr.Steps[0].ActionParams["action"] != "goto" {
			t.Errorf("first step = %v", tr.Steps[0].ActionParams)
		}
		shot, _ := tr.Steps[3].ActionParams["screenshot"].(string)
		if st, err := os.Stat(filepath.Join(b.dir, shot)); shot == "" || err != nil || st.Size() == 0 {
			t.Errorf("screenshot %q not saved: %v", shot, err)
		}
	})

	t.Run("an attempt's screenshots are named by the attempt", func(t *testing.T) {
		task := webTask("contact again", map[string]any{
			"start_url":  b.site + "/form",
			"actions":    []map[string]any{{"action": "finish", "answer": "sent"}},
			"screenshot": true,
		})
		task.Samples, task.SampleIndex = 3, 2
		tr, err := b.agent.Execute(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		shot, _ := tr.Steps[len(tr.Steps)-1].ActionParams["screenshot"].(string)
		want := core.AttemptName(task.TaskID, 2) + ".step-2.png"
		if shot != want {
			t.Errorf("screenshot %q, want %q", shot, want)
		}
		if _, err := os.Stat(filepath.Join(b.dir, shot)); err != nil {
			t.Errorf("screenshot not saved: %v", err)
		}
	})

	t.Run("rules search, then a cache hit replayed for real", func(t *testing.T) {
		task := webTask("Search for information about topic 12", map[string]any{"start_url": b.site + "/", "expected_text": "ADP-84"})
		tr, err := b.agent.Execute(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Success || tr.Metadata["source"] != string(rollout.SourceRules) || tr.Metadata["cache_hit"] != false {
			t.Fatalf("first: success=%v %s %s meta=%v", tr.Success, tr.ErrorType, tr.ErrorMessage, tr.Metadata)
		}
		if !strings.Contains(tr.Steps[1].Observation, "Results for topic 12") {
			t.Errorf("search step observation: %s", tr.Steps[1].Observation)
		}
		if !strings.Contains(tr.Steps[2].Observation, "Rendered by JavaScript") {
			t.Errorf("JS-rendered content missing from the observation: %s", tr.Steps[2].Observation)
		}
		again, err := b.agent.Execute(ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Success || again.Metadata["cache_hit"] != true || len(again.Steps) != len(tr.Steps) {
			t.Errorf("replay: success=%v meta=%v steps=%d/%d", again.Success, again.Metadata, len(again.Steps), len(tr.Steps))
		}
	})

	t.Run("404 is visible and fails its verifier", func(t *testing.T) {
		tr, err := b.agent.Execute(ctx, webTask("missing", map[string]any{"start_url": b.site + "/article/nope", "actions": []any{}, "expected_text": "Fibonacci"}))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.ErrorType != core.ErrWrongAnswer || !strings.Contains(tr.Steps[0].Observation, "Status: 404") {
			t.Errorf("success=%v %s; observation %q", tr.Success, tr.ErrorType, tr.Steps[0].Observation)
		}
	})

	t.Run("file URL is blocked", func(t *testing.T) {
		tr, err := b.agent.Execute(ctx, webTask("read passwd", map[string]any{"start_url": "file:///etc/passwd"}))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.ErrorType != core.ErrBlockedURL || tr.Steps[0].ErrorType != core.ErrBlockedURL || strings.Contains(tr.Steps[0].Observation, "root:") {
			t.Errorf("success=%v %s steps=%+v", tr.Success, tr.ErrorType, tr.Steps)
		}
	})

	t.Run("private address outside the allow list is blocked", func(t *testing.T) {
		tr, err := b.agent.Execute(ctx, webTask("metadata", map[string]any{"start_url": "http://169.254.169.254/latest/meta-data/"}))
		if err != nil {
			t.Fatal(err)
		}
		if tr.ErrorType != core.ErrBlockedURL {
			t.Errorf("error_type = %s (%s)", tr.ErrorType, tr.ErrorMessage)
		}
	})

	t.Run("llm drives the actions", func(t *testing.T) {
		fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
			switch n {
			case 0:
				return 200, testsupport.ToolCallReply("1", "click", map[string]string{"selector": "text=Contact"})
			case 1:
				return 200, testsupport.ToolCallReply("2", "fill", map[string]string{"selector": "#name", "text": "Bob"})
			case 2:
				return 200, testsupport.ToolCallReply("3", "press", map[string]string{"selector": "#name", "key": "Enter"})
			default:
				return 200, testsupport.ToolCallReply("4", "finish", map[string]string{"answer": "done"})
			}
		})
		// The LLM_* defaults, of which the task overrides max_tokens and the seed.
		client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake", Temperature: new(0.3), TopP: new(0.9), MaxTokens: 256, Seed: new(int64(40))})
		if err != nil {
			t.Fatal(err)
		}
		a := *b.agent
		a.LLM, a.Cache = client, nil
		tk := webTask("Send a contact message as Bob", map[string]any{"start_url": b.site + "/", "expected_text": "Thank you, Bob"})
		tk.Samples, tk.SampleIndex, tk.Sampling = 3, 2, &core.Sampling{MaxTokens: new(64), Seed: new(int64(7))}
		tr, err := a.Execute(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		const sampling = `{"temperature":0.3,"top_p":0.9,"max_tokens":64,"seed":9}`
		for i, r := range fake.Requests() {
			if got := mustJSON(t, llm.Params{Temperature: r.Temperature, TopP: r.TopP, MaxTokens: r.MaxTokens, Seed: r.Seed}); got != sampling {
				t.Errorf("call %d sent %s, want %s", i, got, sampling)
			}
		}
		if tr.LLM == nil || mustJSON(t, llm.Params{Temperature: tr.LLM.Temperature, TopP: tr.LLM.TopP, MaxTokens: tr.LLM.MaxTokens, Seed: tr.LLM.Seed}) != sampling {
			t.Errorf("llm record %+v, want %s", tr.LLM, sampling)
		}
		if !tr.Success || tr.Metadata["source"] != string(rollout.SourceLLM) || len(tr.Steps) != 5 {
			t.Fatalf("success=%v %s %s steps=%d", tr.Success, tr.ErrorType, tr.ErrorMessage, len(tr.Steps))
		}
		reqs := fake.Requests()
		if !strings.Contains(reqs[0].Messages[1].Content, "ADP Demo Search") {
			t.Errorf("first observation not in the prompt: %q", reqs[0].Messages[1].Content)
		}
		if !strings.Contains(reqs[1].LastContent(), "Contact") {
			t.Errorf("click observation not fed back: %q", reqs[1].LastContent())
		}
	})
}

func TestQuery(t *testing.T) {
	for in, want := range map[string]string{
		"Search for information about topic 12": "topic 12",
		"search redis streams":                  "redis streams",
		"Find info on nsjail.":                  "nsjail",
		"Playwright":                            "Playwright",
	} {
		if got := query(in); got != want {
			t.Errorf("query(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVerificationOnALongPage: expected_text is checked against the whole
// final page, never the finish answer, and hidden text does not count.
func TestVerificationOnALongPage(t *testing.T) {
	b := setupSite(t, docSite())
	ctx := context.Background()
	long := b.site + "/library/stdtypes.html"
	finish := func(answer string) []map[string]any { return []map[string]any{{"action": "finish", "answer": answer}} }
	for _, tc := range []struct {
		name    string
		c       map[string]any
		success bool
		why     string
	}{
		{"text far below the fold verifies", map[string]any{"start_url": long, "actions": finish("x"),
			"expected_text": "return a copy of the original string"}, true, ""},
		{"the answer does not count for expected_text", map[string]any{"start_url": long, "actions": finish("Quux is here"),
			"expected_text": "Quux"}, false, `expected text "Quux" is not on the final page`},
		{"hidden text does not count", map[string]any{"start_url": long, "actions": finish("x"),
			"expected_text": "marmalade"}, false, "not on the final page"},
		{"answer_contains checks the answer", map[string]any{"start_url": long, "actions": finish("It is removeprefix."),
			"answer_contains": "removeprefix"}, true, ""},
		{"answer_contains fails a wrong answer", map[string]any{"start_url": long, "actions": finish("strip"),
			"answer_contains": "removeprefix"}, false, `answer "strip" does not contain "removeprefix"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := b.agent.Execute(ctx, webTask("verify", tc.c))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || !strings.Contains(tr.ErrorMessage, tc.why) {
				t.Errorf("success=%v %s %q, want success=%v and %q", tr.Success, tr.ErrorType, tr.ErrorMessage, tc.success, tc.why)
			}
			if !tc.success && (tr.ErrorType != core.ErrWrongAnswer || tr.Reward == nil || *tr.Reward != 0) {
				t.Errorf("a failed check: %s, reward %v", tr.ErrorType, tr.Reward)
			}
		})
	}
}

// TestRulesOnADocumentationSite: without a model, the rules open the URL
// in the description, use the visible search box (not the hidden one
// before it), click a result a script renders after load inside
// div[role=main], and the whole page verifies.
func TestRulesOnADocumentationSite(t *testing.T) {
	b := setupSite(t, docSite())
	ctx := context.Background()
	tr, err := b.agent.Execute(ctx, webTask("Search for removeprefix on "+b.site+"/.",
		map[string]any{"expected_text": "return a copy of the original string"}))
	if err != nil {
		t.Fatal(err)
	}
	var did []string
	for _, s := range tr.Steps {
		text, _ := s.ActionParams["text"].(string)
		u, _ := s.ActionParams["url"].(string)
		did = append(did, fmt.Sprint(s.ActionParams["action"], " ", text, u))
	}
	if !tr.Success || tr.Metadata[core.MetaSource] != string(rollout.SourceRules) {
		t.Fatalf("success=%v %s %s; steps %q", tr.Success, tr.ErrorType, tr.ErrorMessage, did)
	}
	want := []string{"goto " + b.site + "/", "fill_and_submit removeprefix", "click ", "finish "}
	if len(did) != len(want) {
		t.Fatalf("steps %q, want %q", did, want)
	}
	for i := range want {
		if !strings.HasPrefix(did[i], want[i]) {
			t.Errorf("step %d = %q, want %q", i, did[i], want[i])
		}
	}
	if !strings.Contains(tr.Metadata[core.MetaFinalURL].(string), "/library/stdtypes.html") {
		t.Errorf("final URL %v", tr.Metadata[core.MetaFinalURL])
	}

	t.Run("no page to work on fails with the reason", func(t *testing.T) {
		tr, err := b.agent.Execute(ctx, webTask("Search for removeprefix", nil))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.ExitReason != core.ExitNoSource || !strings.Contains(tr.ErrorMessage, "no page to work on") || len(tr.Steps) != 0 {
			t.Errorf("success=%v exit=%s %q, %d steps", tr.Success, tr.ExitReason, tr.ErrorMessage, len(tr.Steps))
		}
	})
}

// TestModelActsByRef: the model is shown refs and clicks the second of two
// identical buttons by its ref.
func TestModelActsByRef(t *testing.T) {
	b := setupSite(t, docSite())
	ref := regexp.MustCompile(`button "Previous" \[ref=(e[0-9]+)\]`)
	fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			m := ref.FindAllStringSubmatch(req.Messages[1].Content, -1)
			if len(m) != 2 {
				return 200, testsupport.ToolCallReply("1", "finish", map[string]string{"answer": "no refs"})
			}
			return 200, testsupport.ToolCallReply("1", "click", map[string]string{"ref": m[1][1]})
		}
		return 200, testsupport.ToolCallReply("2", "finish", map[string]string{"answer": "done"})
	})
	client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	a := *b.agent
	a.LLM = client
	tr, err := a.Execute(context.Background(), webTask("Press the second Previous button", map[string]any{
		"start_url": b.site + "/buttons", "expected_text": "second previous"}))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || len(tr.Steps) != 3 || tr.Steps[1].ActionParams["ref"] == nil {
		t.Fatalf("success=%v %s %s; steps %d, %v", tr.Success, tr.ErrorType, tr.ErrorMessage, len(tr.Steps), tr.Steps[1].ActionParams)
	}
}

// TestDialogAndTabActions: the dialog action answers the next prompt, a
// new tab is reported and switch_tab acts on it; each shows in the
// recorded observations.
func TestDialogAndTabActions(t *testing.T) {
	b := setupSite(t, docSite())
	tr, err := b.agent.Execute(context.Background(), webTask("Give your name, then open the buttons", map[string]any{
		"start_url": b.site + "/ask",
		"actions": []map[string]any{
			{"action": "dialog", "accept": true, "text": "Ada"},
			{"action": "click", "selector": "text=Ask"},
			{"action": "click", "selector": "text=open buttons in a new tab"},
			{"action": "switch_tab", "tab": 1},
			{"action": "finish", "answer": "done"},
		},
		"expected_text": "second", // not on /buttons: the final page must be tab 1's
		"expected_url":  "/buttons",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Steps) != 6 {
		t.Fatalf("%d steps: %s %s", len(tr.Steps), tr.ErrorType, tr.ErrorMessage)
	}
	if obs := tr.Steps[2].Observation; !strings.Contains(obs, "name=Ada") || !strings.Contains(obs, `Event: a prompt dialog said "Your name?"; it was accepted with "Ada"`) {
		t.Errorf("after the click:\n%s", obs)
	}
	var opened bool
	for _, s := range tr.Steps[3:5] { // the click's or switch_tab's
		opened = opened || strings.Contains(s.Observation, "Event: a new tab opened: tab 1")
	}
	if !opened {
		t.Errorf("no step reports the new tab:\n%s\n%s", tr.Steps[3].Observation, tr.Steps[4].Observation)
	}
	if obs := tr.Steps[4].Observation; !strings.Contains(obs, "/buttons (current)") || !strings.Contains(obs, "Previous") {
		t.Errorf("after switch_tab:\n%s", obs)
	}
	// expected_url passes (tab 1 is /buttons), expected_text does not:
	// the final page is the tab the agent switched to.
	if tr.Success || tr.Reward == nil || *tr.Reward != 0.5 {
		t.Errorf("success %v reward %v: %s", tr.Success, tr.Reward, tr.ErrorMessage)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
