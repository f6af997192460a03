package webagent

import (
	"context"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The blueprint's heuristics, used without an LLM: search the site for the
// task's subject, open the first result, and finish with what the page says.

var searchPrefix = regexp.MustCompile(`(?i)^\s*(search|look|find)( the web| the site)?( for| up)?( information| info)?( about| on)?\s+`)

// query turns "Search for information about topic 12" into "topic 12".
func query(description string) string {
	q := searchPrefix.ReplaceAllString(description, "")
	q = strings.TrimRight(strings.TrimSpace(q), ".?!")
	if q == "" {
		return strings.TrimSpace(description)
	}
	return q
}

const (
	searchBoxSelector = `input[type=search], input[name=q], input[type=text]`
	resultSelector    = `#results a, main ol a, main ul a`
)

func (r *run) withRules(ctx context.Context) {
	if r.fatal != nil || len(r.tr.Steps) == 0 {
		r.do(ctx, Action{Action: "finish", Answer: ""}, false)
		return
	}
	snap := r.lastObs.AriaSnapshot
	if strings.Contains(snap, "searchbox") || strings.Contains(snap, "textbox") {
		if step := r.do(ctx, Action{Action: "fill_and_submit", Selector: searchBoxSelector, Text: query(r.task.Description)}, false); !step.Success {
			return
		}
		if strings.Contains(r.lastObs.AriaSnapshot, "- list") && len(r.tr.Steps) < r.task.MaxSteps {
			if step := r.do(ctx, Action{Action: "click", Selector: resultSelector}, false); !step.Success {
				return
			}
		}
	}
	r.do(ctx, Action{Action: "finish", Answer: r.lastObs.Title + ": " + firstSentence(r.lastObs.Text)}, false)
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
