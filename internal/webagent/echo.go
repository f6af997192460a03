package webagent

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// flagTypedExpectedText is the metadata.flags entry of a web attempt that
// passed expected_text while the agent had typed that text itself.
const flagTypedExpectedText = "typed_expected_text: the agent typed the expected text (or its pieces), so the page may show it only as an echo of the agent's input"

// maxEchoChars bounds a typed value looked for as an echo (a longer one
// is still flagged, never stripped).
const maxEchoChars = 10000

// noteTyped records what a is about to send to the site (see Environment.typed).
func (e *Environment) noteTyped(a Action) {
	add := func(v string) {
		if strings.TrimSpace(v) != "" {
			e.typed = append(e.typed, v)
		}
	}
	switch a.Action {
	case "fill", "fill_and_submit":
		add(a.Text)
	case "select":
		add(a.Value)
	case "dialog":
		add(a.Text)
	case "goto":
		add(a.URL)
		if u, err := url.Parse(a.URL); err == nil {
			add(u.Path)
			add(u.Fragment)
			for _, vs := range u.Query() {
				for _, v := range vs {
					add(v)
				}
			}
		}
	case "key", "press":
		switch k := a.Key; {
		case k == "Space":
			e.keys.WriteByte(' ')
		case utf8.RuneCountInString(k) == 1:
			e.keys.WriteString(k)
		default:
			e.endKeys()
		}
		return
	}
	e.endKeys()
}

// endKeys ends a run of single-character keys: it is one typed value.
func (e *Environment) endKeys() {
	if e.keys.Len() > 0 {
		if v := e.keys.String(); strings.TrimSpace(v) != "" {
			e.typed = append(e.typed, v)
		}
		e.keys.Reset()
	}
}

// typedSoFar is Environment.typed with the keys pressed last.
func (e *Environment) typedSoFar() []string {
	if e.keys.Len() == 0 {
		return e.typed
	}
	return append(append([]string{}, e.typed...), e.keys.String())
}

// normalize folds case and runs of white space, as echoes are compared.
func normalize(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// withoutEchoes removes from page every occurrence of each typed value
// that contains want (ignoring case and white space): what is left is the
// page as the site wrote it. echoed says whether there was such a value.
func withoutEchoes(page, want string, typed []string) (rest string, echoed bool) {
	w := normalize(want)
	rest = page
	for _, t := range typed {
		if !strings.Contains(normalize(t), w) {
			continue
		}
		echoed = true
		if len(t) > maxEchoChars {
			continue
		}
		fields := strings.Fields(t)
		for i, f := range fields {
			fields[i] = regexp.QuoteMeta(f)
		}
		re, err := regexp.Compile(`(?i)` + strings.Join(fields, `\s+`))
		if err != nil {
			continue
		}
		rest = re.ReplaceAllString(rest, "\x00")
	}
	return rest, echoed
}

// typedContains says whether the agent typed want, in one value or across
// several (joined with or without a space).
func typedContains(typed []string, want string) bool {
	w := normalize(want)
	if w == "" {
		return false
	}
	for _, t := range typed {
		if strings.Contains(normalize(t), w) {
			return true
		}
	}
	joined := normalize(strings.Join(typed, " "))
	return strings.Contains(joined, w) || strings.Contains(strings.ReplaceAll(joined, " ", ""), strings.ReplaceAll(w, " ", ""))
}
