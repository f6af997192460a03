package webagent

import (
	"context"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/agentdataplatform/adp/internal/core"
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

func (r *run) withRules(ctx context.Context) bool {
	if u := urlIn(r.task.Description); u != "" && !sameURL(u, r.e.lastObs.URL) {
		if step := r.do(ctx, Action{Action: "goto", URL: u}); !step.Success {
			return true // the failed step is the reason
		}
	}
	if len(r.tr.Steps) == 0 {
		r.tr.Fail(core.ErrSystem, "no LLM is configured (set LLM_BASE_URL) and the rules have no page to work on: "+
			"give the task a start_url, a URL in its description, or constraints.actions")
		return false
	}
	snap := r.e.lastObs.AriaSnapshot
	if strings.Contains(snap, "searchbox") || strings.Contains(snap, "textbox") {
		if step := r.do(ctx, Action{Action: "fill_and_submit", Selector: searchBoxSelector, Text: query(r.task.Description)}); !step.Success {
			return true
		}
		if len(r.tr.Steps) < r.task.MaxSteps {
			// The click waits (up to the action timeout) for a result to
			// appear: results a script renders after load count.
			if step := r.do(ctx, Action{Action: "click", Selector: resultSelector}); !step.Success {
				return true
			}
		}
	}
	r.do(ctx, Action{Action: "finish", Answer: r.e.lastObs.Title + ": " + firstSentence(r.e.lastObs.Text)})
	return true
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
