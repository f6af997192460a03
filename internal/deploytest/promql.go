package deploytest

import (
	"regexp"
	"slices"
	"strings"
)

var (
	// String literals first: they may hold braces, brackets or names.
	rePromString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	// Label matchers {...}: label names, not metric names.
	rePromMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	// Range and subquery selectors [5m], [1h:1m].
	rePromRange = regexp.MustCompile(`\[[^\[\]]*\]`)
	// Grouping and vector-matching clauses with their label lists.
	rePromGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	rePromToken    = regexp.MustCompile(`[A-Za-z0-9_:.]+`)
)

// promKeywords are PromQL words that are neither functions nor metrics.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "atan2": true,
	"inf": true, "nan": true,
}

// SeriesNames returns the metric (series) names an expression selects, in
// order of first appearance, without duplicates. It is a lexical scan, not a
// parser: it drops string literals, label matchers, ranges, grouping clauses,
// keywords, numbers and function names (an identifier followed by "("), and
// keeps the remaining identifiers. Good enough for the expressions of the
// repository's dashboard and rules; promtool checks their syntax.
func SeriesNames(expr string) []string {
	s := rePromString.ReplaceAllString(expr, " ")
	s = rePromMatchers.ReplaceAllString(s, " ")
	s = rePromRange.ReplaceAllString(s, " ")
	s = rePromGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range rePromToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if c := tok[0]; c >= '0' && c <= '9' || c == '.' {
			continue // number or duration
		}
		if promKeywords[strings.ToLower(tok)] {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\r\n"), "(") {
			continue // function or aggregation
		}
		if !slices.Contains(names, tok) {
			names = append(names, tok)
		}
	}
	return names
}
