package browser

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/playwright-community/playwright-go"
)

// Observation is what the agent sees after a step.
type Observation struct {
	URL   string `json:"url"`
	Title string `json:"title"`
	// Status is the HTTP status of the document's main-frame response (a
	// 404 page is Status 404, not an error); 0 when unknown (about:blank,
	// a browser error page).
	Status int `json:"status"`
	// Text is the page's text without scripts, styles, noscript and
	// templates, whitespace collapsed, capped at MaxTextChars.
	Text          string `json:"text"`
	TextTruncated bool   `json:"text_truncated,omitempty"`
	// AriaSnapshot is Playwright's accessibility snapshot of <body> (YAML:
	// roles, names, states), capped at MaxSnapshotChars on a line boundary.
	AriaSnapshot      string `json:"aria_snapshot"`
	SnapshotTruncated bool   `json:"snapshot_truncated,omitempty"`
	// SnapshotError says why AriaSnapshot is empty when it could not be
	// taken (a huge page that did not finish in ActionTimeout). The rest of
	// the observation is still valid.
	SnapshotError string `json:"snapshot_error,omitempty"`
}

// String renders the observation as the text recorded in a trajectory step
// and shown to the LLM.
func (o Observation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "URL: %s\nTitle: %s\nStatus: %d\n\n%s", o.URL, o.Title, o.Status, o.Text)
	if o.TextTruncated {
		b.WriteString(" [...]")
	}
	if o.AriaSnapshot != "" {
		b.WriteString("\n\nAccessibility snapshot:\n")
		b.WriteString(o.AriaSnapshot)
		if o.SnapshotTruncated {
			b.WriteString("\n[...]")
		}
	}
	return b.String()
}

// observeJS collects the page's text without laying it out (innerText would
// force a layout of the whole page): a walk over text nodes that skips
// script, style, noscript and template subtrees, puts a space at block
// boundaries, and stops once it has enough, so a 20 MB page costs no more
// than a small one. The status comes from Navigation Timing.
const observeJS = `(max) => {
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE']);
  const BLOCK = new Set(['ADDRESS', 'ARTICLE', 'ASIDE', 'BLOCKQUOTE', 'BR', 'BUTTON', 'CAPTION', 'DD', 'DIV',
    'DL', 'DT', 'FIELDSET', 'FIGCAPTION', 'FIGURE', 'FOOTER', 'FORM', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6',
    'HEADER', 'HR', 'LABEL', 'LI', 'MAIN', 'NAV', 'OL', 'OPTION', 'P', 'PRE', 'SECTION', 'SELECT', 'TABLE',
    'TD', 'TEXTAREA', 'TH', 'TR', 'UL']);
  const root = document.body || document.documentElement;
  let text = '', truncated = false;
  if (root) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
      acceptNode(n) {
        if (n.nodeType === 1) {
          if (SKIP.has(n.tagName)) return NodeFilter.FILTER_REJECT;
          return BLOCK.has(n.tagName) ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP;
        }
        return NodeFilter.FILTER_ACCEPT;
      },
    });
    const parts = [];
    let chars = 0, nodes = 0;
    while (walker.nextNode()) {
      if (++nodes > 200000) { truncated = true; break; }
      const n = walker.currentNode;
      if (n.nodeType === 1) { parts.push(' '); continue; }
      const t = n.data.replace(/\s+/g, ' ');
      parts.push(t);
      chars += t.length;
      if (chars > max + 1000) { truncated = true; break; }
    }
    text = parts.join('').replace(/\s+/g, ' ').trim();
    if (text.length > max) { text = text.slice(0, max); truncated = true; }
  }
  const nav = performance.getEntriesByType('navigation')[0];
  return {
    url: location.href,
    title: String(document.title || '').slice(0, 1000),
    text, truncated,
    status: nav && nav.responseStatus ? nav.responseStatus : 0,
    hasBody: !!document.body,
    elements: document.getElementsByTagName('*').length,
  };
}`

// Observe reads the page: URL, title, status, main text and accessibility
// snapshot. A page that is navigating is waited for (DOMContentLoaded).
func (s *Session) Observe(ctx context.Context) (Observation, error) {
	if err := s.usable("observe"); err != nil {
		return Observation{}, err
	}
	cfg := s.pool.cfg
	var raw map[string]any
	err := s.run(ctx, "observe", cfg.ActionTimeout, func(ms *float64) error {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			var v any
			v, err = s.page.Evaluate(observeJS, cfg.MaxTextChars)
			if err == nil {
				raw, _ = v.(map[string]any)
				return nil
			}
			if !isContextDestroyed(err) {
				return err
			}
			// The page navigated under us: observe the new document.
			_ = s.page.WaitForLoadState(playwright.PageWaitForLoadStateOptions{
				State: playwright.LoadStateDomcontentloaded, Timeout: ms,
			})
		}
		return err
	})
	if err != nil {
		return Observation{}, err
	}
	o := Observation{
		URL:           str(raw["url"]),
		TextTruncated: raw["truncated"] == true,
	}
	o.Title, _ = capRunes(str(raw["title"]), maxTitleChars)
	var cut bool
	o.Text, cut = capRunes(str(raw["text"]), cfg.MaxTextChars)
	o.TextTruncated = o.TextTruncated || cut
	if n := toInt(raw["status"]); n > 0 {
		o.Status = n
	} else {
		s.mu.Lock()
		o.Status = s.status
		s.mu.Unlock()
	}

	elements := toInt(raw["elements"])
	switch {
	case raw["hasBody"] != true:
	case elements > cfg.MaxSnapshotElements:
		o.SnapshotError = fmt.Sprintf("page too large for an accessibility snapshot (%d elements, limit %d)",
			elements, cfg.MaxSnapshotElements)
	default:
		var snap string
		// Playwright computes the whole snapshot in one go and cannot stop
		// it at its timeout: give it more time before calling the page hung.
		err := s.runGrace(ctx, "aria snapshot", cfg.ActionTimeout, cfg.ActionTimeout+hangGrace, func(ms *float64) error {
			var err error
			snap, err = s.page.Locator("body").AriaSnapshot(playwright.LocatorAriaSnapshotOptions{Timeout: ms})
			return err
		})
		switch {
		case err == nil:
			o.AriaSnapshot, o.SnapshotTruncated = capLines(snap, cfg.MaxSnapshotChars)
		case s.usable("observe") != nil || ctx.Err() != nil:
			return o, err // the session is gone: not a partial observation
		default:
			o.SnapshotError = firstLine(err.Error())
		}
	}
	return o, nil
}

func isContextDestroyed(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Execution context was destroyed") ||
		strings.Contains(msg, "Cannot find context with specified id") ||
		errors.Is(err, playwright.ErrTargetClosed) && strings.Contains(msg, "navigation")
}

// toInt reads a number from an evaluate result: playwright-go decodes
// integral numbers as int, others as float64.
func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// capRunes cuts s to at most max runes and reports whether it cut.
func capRunes(s string, max int) (string, bool) {
	if max <= 0 || len(s) <= max {
		return s, false
	}
	if utf8.RuneCountInString(s) <= max {
		return s, false
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i], true
		}
		n++
	}
	return s, false
}

// capLines cuts s to at most max runes, at a line boundary when there is one.
func capLines(s string, max int) (string, bool) {
	c, cut := capRunes(s, max)
	if !cut {
		return s, false
	}
	if i := strings.LastIndexByte(c, '\n'); i > 0 {
		c = c[:i]
	}
	return c, true
}

// maxPageTextChars bounds PageText: a page's whole text is read for
// verification, not shown to anyone, but a hostile page can be huge.
const maxPageTextChars = 5_000_000

// pageTextJS is the document's rendered text (innerText: what is laid out
// and visible, hidden elements left out) followed by that of its
// same-origin frames, depth first.
const pageTextJS = `(max) => {
  const out = []; let n = 0;
  const walk = (doc, depth) => {
    if (!doc || depth > 5 || n > max) return;
    const t = doc.body ? doc.body.innerText : (doc.documentElement ? doc.documentElement.textContent : '');
    if (t) { out.push(t); n += t.length; }
    for (const f of doc.querySelectorAll('iframe, frame')) {
      let d = null;
      try { d = f.contentDocument; } catch (e) {}
      walk(d, depth + 1);
    }
  };
  walk(document, 0);
  return String(document.title || '') + '\n' + out.join('\n').slice(0, max);
}`

// PageText returns the current page's title and whole rendered text
// (hidden elements left out, same-origin frames included), up to
// maxPageTextChars. Verification reads it: an observation shows only part
// of a long page.
func (s *Session) PageText(ctx context.Context) (string, error) {
	if err := s.usable("page text"); err != nil {
		return "", err
	}
	var text string
	err := s.run(ctx, "page text", s.pool.cfg.ActionTimeout, func(*float64) error {
		v, err := s.page.Evaluate(pageTextJS, maxPageTextChars)
		if err != nil {
			return err
		}
		text, _ = v.(string)
		return nil
	})
	if err != nil {
		return "", err
	}
	return text, nil
}
