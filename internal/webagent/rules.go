package webagent

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/rollout"
)

// The blueprint's heuristics, used without an LLM: open the URL the
// description names (if any), search the site for the task's subject in
// the visible search box, open the first result in the page's main
// landmark, and finish with what the page says. A step that cannot be
// performed fails the attempt with its reason (no element matches, ...).

var searchPrefix = regexp.MustCompile(`(?i)^\s*(search|look|find)( the web| the site)?( for| up)?( information| info)?( about| on)?\s+`)

// describedURL finds an http(s) URL written in a description; trailing
// punctuation of the sentence is not part of it.
var describedURL = regexp.MustCompile(`https?://[^\s"'<>]+`)

// leadToURL is what leads to a URL in a description ("… on https://…").
var leadToURL = regexp.MustCompile(`(?i)\s+(on|at|in|from|of|via)( the page| the site)?\s*$`)

// urlIn returns the first URL of description, or "".
func urlIn(description string) string {
	return strings.TrimRight(describedURL.FindString(description), ".,;:!?)]'\"")
}

// query turns "Search for information about topic 12" into "topic 12";
// a URL in the description and the words leading to it ("on https://…")
// are not part of the query.
func query(description string) string {
	if u := urlIn(description); u != "" {
		before, after, _ := strings.Cut(description, u)
		before = leadToURL.ReplaceAllString(before, "")
		description = strings.TrimSpace(before + " " + strings.TrimLeft(after, ".,;:!?)]'\""))
	}
	q := searchPrefix.ReplaceAllString(description, "")
	q = strings.TrimRight(strings.TrimSpace(q), ".?!")
	if q == "" {
		return strings.TrimSpace(description)
	}
	return q
}

const (
	// searchBoxSelector finds the visible search box: a site often has a
	// second, hidden one (a mobile menu's) before it in the document.
	searchBoxSelector = `input[type=search]:visible, [role=searchbox]:visible, input[name=q]:visible, input[name=query]:visible, input[type=text]:visible`
	// resultSelector finds the first result link by the page's landmarks
	// (<main>, role=main as Sphinx writes it, a #results list), visible.
	resultSelector = `#results a:visible, main ol a:visible, main ul a:visible, [role=main] ol a:visible, [role=main] ul a:visible`
)

// searchRules are the heuristics as stages: given the page after the last
// step, the next action, until they have finished (rulesPolicy runs them).
type searchRules struct {
	task  core.TaskSpec
	stage int
}

// The stages of searchRules, in order.
const (
	rulesOpen   = iota // open the described URL, if any
	rulesSearch        // search, when the page has a search box
	rulesResult        // open the first result
	rulesFinish        // finish with what the page says
	rulesDone
)

// errNoPage is why the rules choose nothing: there is no page to work on.
var errNoPage = errors.New("no LLM is configured (set LLM_BASE_URL) and the rules have no page to work on: " +
	"give the task a start_url, a URL in its description, or constraints.actions")

// next is the action after the page obs, steps steps into the attempt;
// done when the rules have finished. The error is errNoPage.
func (p *searchRules) next(obs browser.Observation, steps int) (a Action, done bool, err error) {
	switch p.stage {
	case rulesOpen:
		p.stage = rulesSearch
		if u := urlIn(p.task.Description); u != "" && !sameURL(u, obs.URL) {
			return Action{Action: "goto", URL: u}, false, nil
		}
		fallthrough
	case rulesSearch:
		if steps == 0 {
			return Action{}, true, errNoPage
		}
		p.stage = rulesFinish
		if snap := obs.AriaSnapshot; strings.Contains(snap, "searchbox") || strings.Contains(snap, "textbox") {
			p.stage = rulesResult
			return Action{Action: "fill_and_submit", Selector: searchBoxSelector, Text: query(p.task.Description)}, false, nil
		}
		return p.next(obs, steps)
	case rulesResult:
		p.stage = rulesFinish
		if steps < p.task.MaxSteps {
			// The click waits (up to the action timeout) for a result to
			// appear: results a script renders after load count.
			return Action{Action: "click", Selector: resultSelector}, false, nil
		}
		return p.next(obs, steps)
	case rulesFinish:
		p.stage = rulesDone
		return Action{Action: "finish", Answer: obs.Title + ": " + firstSentence(obs.Text)}, false, nil
	}
	return Action{}, true, nil
}

// rulesPolicy is the rules as the attempt's policy: it reads the page the
// environment observed after the last step (the rendered observation is
// the model's; the rules read its parts).
type rulesPolicy struct {
	e      *Environment
	r      searchRules
	noPage bool
}

// rules is the blueprint's heuristics as the policy of e's attempt
// (rollout.Attempt.Rules): its End is NoSource when there is no page to
// work on.
func (e *Environment) rules() rollout.Policy { return &rulesPolicy{e: e, r: searchRules{task: e.task}} }

func (p *rulesPolicy) Source() rollout.Source                         { return rollout.SourceRules }
func (p *rulesPolicy) Reset(rollout.ActionSpace, rollout.Observation) {}

// Next is the rules' next action on the page after the last step.
func (p *rulesPolicy) Next(context.Context, rollout.Observation) (rollout.Action, bool) {
	a, done, err := p.r.next(p.e.lastObs, p.e.steps)
	if err != nil {
		p.noPage = true
		return rollout.Action{}, false
	}
	if done {
		return rollout.Action{}, false
	}
	return rollout.Action{Input: a}, true
}

// End is NoSource, with the reason, when the rules had no page.
func (p *rulesPolicy) End() rollout.PolicyEnd {
	if p.noPage {
		return rollout.PolicyEnd{NoSource: true, Failure: &rollout.Failure{Type: core.ErrSystem, Message: errNoPage.Error()}}
	}
	return rollout.PolicyEnd{}
}

// sameURL compares two URLs ignoring a trailing slash.
func sameURL(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

func firstSentence(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		// Cut at a character boundary: a byte cut can split a UTF-8
		// character and send invalid text to the page.
		cut := 300
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
