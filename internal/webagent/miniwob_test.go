package webagent

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// miniwobSite serves the demo site's MiniWoB-like page
// (demosite.ClickButtonPage) as click-button.html.
func miniwobSite() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /click-button.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(demosite.ClickButtonPage))
	})
	return mux
}

// The BrowserGym-like setup: seed, timer off, start.
const (
	miniwobSetup       = `WOB_SEED = 3; core.EPISODE_MAX_TIME = 2147483647; core.startEpisodeReal();`
	miniwobInstruction = `return core.getUtterance();`
	miniwobReward      = `return WOB_DONE_GLOBAL ? WOB_REWARD_GLOBAL : 0;`
)

func TestPageDefinedReward(t *testing.T) {
	b := setupSite(t, miniwobSite())
	ctx := context.Background()
	page := func(actions ...map[string]any) map[string]any {
		return map[string]any{"start_url": b.site + "/click-button.html", "setup_script": miniwobSetup,
			"instruction_script": miniwobInstruction, "reward_script": miniwobReward, "actions": actions}
	}
	click := func(label string) map[string]any {
		return map[string]any{"action": "click", "selector": `text="` + label + `"`}
	}
	for _, tc := range []struct {
		name    string
		c       map[string]any
		reward  float64
		success bool
	}{
		{"the right button", page(click("ONE")), 1, true},
		{"a partial reward", page(click("ALMOST")), 0.75, true},
		{"a partial penalty", page(click("TWO")), -0.2, false},
		{"no action: the episode is not done", page(map[string]any{"action": "finish", "answer": ""}), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := b.agent.Execute(ctx, webTask("Do what the page says", tc.c))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Reward == nil || *tr.Reward != tc.reward || tr.Success != tc.success || tr.Metadata[core.MetaVerified] != tc.success {
				t.Fatalf("reward %v success %v verified %v (%s %s), want %v %v", tr.Reward, tr.Success, tr.Metadata[core.MetaVerified],
					tr.ErrorType, tr.ErrorMessage, tc.reward, tc.success)
			}
			if got := tr.Metadata[core.MetaPageInstruction]; got != "Click the button labelled ONE." {
				t.Errorf("page_instruction = %v", got)
			}
			first := tr.Steps[0]
			if first.ActionParams["setup"] != true || strings.Contains(first.Observation, "START") || !strings.Contains(first.Observation, "labelled ONE") {
				t.Errorf("start step after the setup: %v\n%s", first.ActionParams, first.Observation)
			}
		})
	}

	t.Run("without the setup the timer is on and START is the agent's", func(t *testing.T) {
		tr, err := b.agent.Execute(ctx, webTask("Do what the page says", map[string]any{
			"start_url": b.site + "/click-button.html", "reward_script": miniwobReward,
			"actions": []map[string]any{{"action": "click", "selector": "#sync-task-cover"}, click("ONE")}}))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Reward == nil || *tr.Reward != 1 || !tr.Success {
			t.Fatalf("reward %v success %v (%s)", tr.Reward, tr.Success, tr.ErrorMessage)
		}
	})

	t.Run("a reward from another page is not the task's", func(t *testing.T) {
		// The agent leaves the task's page for another of the site (here
		// the same page loaded again, where it solves a fresh episode):
		// that page's reward is not the task's.
		tr, err := b.agent.Execute(ctx, webTask("Do what the page says", page(
			map[string]any{"action": "goto", "url": b.site + "/click-button.html"},
			map[string]any{"action": "click", "selector": "#sync-task-cover"},
			click("ONE"), click("TWO"))))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.Reward == nil || *tr.Reward != 0 || !strings.Contains(tr.ErrorMessage, "not the task's page") {
			t.Fatalf("reward %v success %v: %s", tr.Reward, tr.Success, tr.ErrorMessage)
		}
	})

	t.Run("a failing setup makes the task invalid", func(t *testing.T) {
		c := page(click("ONE"))
		c["setup_script"] = "throw new Error('no such core')"
		tr, err := b.agent.Execute(ctx, webTask("x", c))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.ExitReason != core.ExitInvalidTask || !strings.Contains(tr.ErrorMessage, "no such core") {
			t.Errorf("success %v exit %s: %s", tr.Success, tr.ExitReason, tr.ErrorMessage)
		}
	})

	t.Run("a reward that is not a number is no reward", func(t *testing.T) {
		c := page(click("ONE"))
		c["reward_script"] = "return 'great'"
		tr, err := b.agent.Execute(ctx, webTask("x", c))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Success || tr.ErrorType != core.ErrWrongAnswer || (tr.Reward != nil && *tr.Reward != 0) {
			t.Errorf("success %v %s reward %v: %s", tr.Success, tr.ErrorType, tr.Reward, tr.ErrorMessage)
		}
	})

	t.Run("the model gets the instruction, never the scripts or the reward", func(t *testing.T) {
		fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
			if n == 0 {
				return 200, testsupport.ToolCallReply("1", "click", map[string]string{"selector": `text="ONE"`})
			}
			return 200, testsupport.ToolCallReply("2", "finish", map[string]string{"answer": "done"})
		})
		client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake"})
		if err != nil {
			t.Fatal(err)
		}
		a := *b.agent
		a.LLM, a.Cache = client, nil
		c := page()
		delete(c, "actions")
		tr, err := a.Execute(ctx, webTask("Do what the page says", c))
		if err != nil {
			t.Fatal(err)
		}
		if tr.Reward == nil || *tr.Reward != 1 || !tr.Success {
			t.Fatalf("reward %v success %v (%s)", tr.Reward, tr.Success, tr.ErrorMessage)
		}
		reqs := fake.Requests()
		if !strings.Contains(reqs[0].Messages[1].Content, "Click the button labelled ONE.") {
			t.Errorf("the instruction is not in the prompt: %q", reqs[0].Messages[1].Content)
		}
		for _, r := range reqs {
			for _, m := range r.Messages {
				for _, secret := range []string{"WOB_REWARD_GLOBAL", "EPISODE_MAX_TIME", "getUtterance"} {
					if strings.Contains(m.Content, secret) {
						t.Errorf("the model was shown %q", secret)
					}
				}
			}
		}
	})
}
