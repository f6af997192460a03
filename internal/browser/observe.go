package browser

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/playwright-community/playwright-go"
)

// Observation is what the agent sees after a step: the part of the page in
// the viewport (the agent scrolls or finds text to see more), read at one
// moment.
type Observation struct {
	URL   string `json:"url"`
	Title string `json:"title"`
	// Status is the HTTP status of the document's main-frame response (a
	// 404 page is Status 404, not an error); 0 when unknown (about:blank,
	// a browser error page).
	Status int `json:"status"`
	// Text is the visible text in the viewport, in document order, without
	// scripts, styles, noscript, templates and hidden elements, whitespace
	// collapsed, capped at MaxTextChars.
	Text          string `json:"text"`
	TextTruncated bool   `json:"text_truncated,omitempty"`
	// AriaSnapshot is Playwright's accessibility snapshot of the page in
	// its "ai" mode (YAML: roles, names, states, and an element ref
	// [ref=eN] that actions take as ref: "eN"; same-origin and cross-origin
	// frames included, their refs fN…), cut to the elements in the viewport
	// and their ancestors, capped at MaxSnapshotChars on a line boundary.
	AriaSnapshot      string `json:"aria_snapshot"`
	SnapshotTruncated bool   `json:"snapshot_truncated,omitempty"`
	// SnapshotError says why AriaSnapshot is empty when it could not be
	// taken (a huge page that did not finish in ActionTimeout). The rest of
	// the observation is still valid.
	SnapshotError string `json:"snapshot_error,omitempty"`
	// ScrollY, PageHeight and ViewportHeight say which part of the page is
	// observed (CSS pixels): rows ScrollY to ScrollY+ViewportHeight of
	// PageHeight.
	ScrollY        int `json:"scroll_y"`
	PageHeight     int `json:"page_height"`
	ViewportHeight int `json:"viewport_height"`
	// Changing is set when the page's content kept changing while it was
	// read (text and snapshot may then show different moments).
	Changing bool `json:"changing,omitempty"`
	// Tabs are the URLs of the open tabs when there is more than one, and
	// Tab the index of the observed one.
	Tabs []string `json:"tabs,omitempty"`
	Tab  int      `json:"tab,omitempty"`
	// Events are what happened beside the page since the last
	// observation: dialogs and how they were answered, new tabs, refused
	// downloads.
	Events []string `json:"events,omitempty"`
}

// Position describes the observed part of the page for the agent: where
// it is and whether there is more below or above.
func (o Observation) Position() string {
	if o.ViewportHeight <= 0 || o.PageHeight <= 0 {
		return ""
	}
	bottom := min(o.ScrollY+o.ViewportHeight, o.PageHeight)
	s := fmt.Sprintf("Viewport: rows %d-%d of %d px", o.ScrollY, bottom, o.PageHeight)
	switch {
	case o.ScrollY > 0 && bottom < o.PageHeight:
		s += " (more above and below: scroll or find to read it)"
	case bottom < o.PageHeight:
		s += " (more below: scroll or find to read it)"
	case o.ScrollY > 0:
		s += " (more above)"
	}
	return s
}

// String renders the observation as the text recorded in a trajectory step
// and shown to the LLM.
func (o Observation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "URL: %s\nTitle: %s\nStatus: %d\n", o.URL, o.Title, o.Status)
	if p := o.Position(); p != "" {
		b.WriteString(p + "\n")
	}
	fmt.Fprintf(&b, "\n%s", o.Text)
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

// pageStateJS is the init script of every page (run before the page's own
// scripts, under a key of the pool's, not enumerable): it stamps each
// change of the page's content (nodes added or removed, text changed; not
// attributes, which animations change all the time) with a counter and the
// time, and notes when the load event came. Settling waits until the stamp
// is old enough; an observation compares the counter before and after it
// is taken.
const pageStateJS = `((k) => {
  if (Object.prototype.hasOwnProperty.call(window, k)) return;
  const st = { n: 0, last: 0, loadAt: 0 };
  Object.defineProperty(window, k, { value: st });
  const mark = () => { st.n++; st.last = performance.now(); };
  // From DOMContentLoaded on: the parser's own insertions are not changes
  // anyone waits for, and recording them costs a big page dearly.
  const watch = () => new MutationObserver(mark).observe(document, { subtree: true, childList: true, characterData: true });
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch, { once: true }); else watch();
  addEventListener('load', () => { st.loadAt = performance.now(); });
})(%q);`

// observeJS collects the visible text in the viewport: a walk over text
// nodes that skips script, style, noscript and template subtrees and
// hidden elements, keeps the text nodes with a box in the viewport, puts a
// space at block boundaries, and stops once it has enough (or has walked
// 200,000 nodes). The status comes from Navigation Timing; n is the page
// state's content counter.
const observeJS = `([max, k]) => {
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE']);
  const BLOCK = new Set(['ADDRESS', 'ARTICLE', 'ASIDE', 'BLOCKQUOTE', 'BR', 'BUTTON', 'CAPTION', 'DD', 'DIV',
    'DL', 'DT', 'FIELDSET', 'FIGCAPTION', 'FIGURE', 'FOOTER', 'FORM', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6',
    'HEADER', 'HR', 'LABEL', 'LI', 'MAIN', 'NAV', 'OL', 'OPTION', 'P', 'PRE', 'SECTION', 'SELECT', 'TABLE',
    'TD', 'TEXTAREA', 'TH', 'TR', 'UL']);
  const vw = window.innerWidth, vh = window.innerHeight;
  const root = document.body || document.documentElement;
  const range = document.createRange();
  const inView = (n) => {
    range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      if (r.bottom >= 0 && r.top <= vh && r.right >= 0 && r.left <= vw) return true;
    }
    return false;
  };
  let text = '', truncated = false;
  if (root) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
      acceptNode(n) {
        if (n.nodeType === 1) {
          if (SKIP.has(n.tagName)) return NodeFilter.FILTER_REJECT;
          if (n.checkVisibility && !n.checkVisibility({ visibilityProperty: true })) return NodeFilter.FILTER_REJECT;
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
      if (!n.data.trim() || !inView(n)) continue;
      const t = n.data.replace(/\s+/g, ' ');
      parts.push(t);
      chars += t.length;
      if (chars > max + 1000) { truncated = true; break; }
    }
    text = parts.join('').replace(/\s+/g, ' ').trim();
    if (text.length > max) { text = text.slice(0, max); truncated = true; }
  }
  const nav = performance.getEntriesByType('navigation')[0];
  const st = window[k];
  const se = document.scrollingElement || document.documentElement;
  return {
    url: location.href,
    title: String(document.title || '').slice(0, 1000),
    text, truncated,
    status: nav && nav.responseStatus ? nav.responseStatus : 0,
    hasBody: !!document.body,
    elements: document.getElementsByTagName('*').length,
    n: st ? st.n : -1,
    scrollY: Math.round(window.scrollY), vw, vh,
    height: se ? Math.round(se.scrollHeight) : 0,
  };
}`

// changeCountJS reads the page state's content counter.
const changeCountJS = `(k) => { const st = window[k]; return st ? st.n : -1; }`

// maxObserveTries is how often Observe reads a page whose content changes
// while it is read before it gives up and marks the observation Changing.
const maxObserveTries = 2

// Observe reads the page: URL, title, status, and the viewport's text and
// accessibility snapshot, taken at one moment: when the page's content
// changed between the two, they are read again (once), else the
// observation says Changing. A page that is navigating is waited for
// (DOMContentLoaded).
func (s *Session) Observe(ctx context.Context) (Observation, error) {
	if err := s.usable("observe"); err != nil {
		return Observation{}, err
	}
	o, err := s.observeSteady(ctx)
	if err != nil {
		return o, err
	}
	if urls, cur := s.Tabs(); len(urls) > 1 {
		o.Tabs, o.Tab = urls, cur
	}
	s.waitDownloads(ctx)
	o.Events = s.takeEvents()
	return o, nil
}

// observeSteady reads the page until its content did not change while it
// was read, at most maxObserveTries times.
func (s *Session) observeSteady(ctx context.Context) (Observation, error) {
	if n0, elements, ok := s.takeSettled(); ok && elements <= s.pool.cfg.MaxSnapshotElements {
		o, ok, err := s.observeAfterSettle(ctx, n0, elements)
		if err != nil || ok {
			return o, err
		}
	}
	for try := 1; ; try++ {
		o, before, err := s.observeOnce(ctx)
		if err != nil || before < 0 || o.AriaSnapshot == "" {
			return o, err
		}
		var after int
		err = s.run(ctx, "observe", s.pool.cfg.ActionTimeout, func(*float64) error {
			v, err := s.page.Evaluate(changeCountJS, s.pool.stateKey)
			after = toInt(v)
			return err
		})
		if err != nil && !isContextDestroyed(err) {
			return o, err
		}
		if err == nil && after == before {
			return o, nil
		}
		if try == maxObserveTries {
			o.Changing = true
			return o, nil
		}
	}
}

// observeOnce reads the page once, text first; n is the content counter
// when the text was read (-1 when the page has no state, e.g.
// about:blank).
func (s *Session) observeOnce(ctx context.Context) (Observation, int, error) {
	r, err := s.readText(ctx)
	if err != nil {
		return Observation{}, -1, err
	}
	o := r.o
	switch {
	case !r.hasBody:
	case r.elements > s.pool.cfg.MaxSnapshotElements:
		o.SnapshotError = tooLarge(r.elements, s.pool.cfg.MaxSnapshotElements)
	default:
		snap, err := s.snapshot(ctx)
		if err := o.setSnapshot(s, ctx, snap, err, r.vw); err != nil {
			return o, r.n, err
		}
	}
	return o, r.n, nil
}

// observeAfterSettle reads a page settle has just seen quiet, snapshot
// first: when the content counter is the same after the text as settle
// saw, nothing changed from before the snapshot to after the text, and one
// evaluate is saved. ok is false when it changed (read again).
func (s *Session) observeAfterSettle(ctx context.Context, n0, elements int) (o Observation, ok bool, err error) {
	snap, serr := s.snapshot(ctx)
	if serr != nil && (s.usable("observe") != nil || ctx.Err() != nil) {
		return Observation{}, false, serr
	}
	r, err := s.readText(ctx)
	if err != nil || r.n != n0 || !r.hasBody || r.n < 0 {
		return Observation{}, false, err
	}
	o = r.o
	if err := o.setSnapshot(s, ctx, snap, serr, r.vw); err != nil {
		return o, false, err
	}
	return o, true, nil
}

func tooLarge(elements, limit int) string {
	return fmt.Sprintf("page too large for an accessibility snapshot (%d elements, limit %d)", elements, limit)
}

// setSnapshot puts a snapshot (or why there is none) into o; an error
// only when the session is gone.
func (o *Observation) setSnapshot(s *Session, ctx context.Context, snap string, err error, vw int) error {
	switch {
	case err == nil:
		snap = inViewport(snap, vw, o.ViewportHeight)
		o.AriaSnapshot, o.SnapshotTruncated = capLines(snap, s.pool.cfg.MaxSnapshotChars)
	case s.usable("observe") != nil || ctx.Err() != nil:
		return err // the session is gone: not a partial observation
	default:
		o.SnapshotError = firstLine(err.Error())
	}
	return nil
}

// snapshot takes the page's ai-mode snapshot with boxes.
func (s *Session) snapshot(ctx context.Context) (string, error) {
	cfg := s.pool.cfg
	var snap string
	// Playwright computes the whole snapshot in one go and cannot stop it
	// at its timeout: give it more time before calling the page hung.
	err := s.runGrace(ctx, "aria snapshot", cfg.ActionTimeout, cfg.ActionTimeout+hangGrace, func(ms *float64) error {
		var err error
		snap, err = s.page.AriaSnapshot(playwright.PageAriaSnapshotOptions{
			Mode: playwright.AriaSnapshotModeAi, Boxes: playwright.Bool(true), Timeout: ms,
		})
		return err
	})
	return snap, err
}

// textRead is what observeJS returned.
type textRead struct {
	o               Observation
	n, elements, vw int
	hasBody         bool
}

// readText runs observeJS.
func (s *Session) readText(ctx context.Context) (textRead, error) {
	cfg := s.pool.cfg
	var raw map[string]any
	err := s.run(ctx, "observe", cfg.ActionTimeout, func(ms *float64) error {
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			var v any
			v, err = s.page.Evaluate(observeJS, []any{cfg.MaxTextChars, s.pool.stateKey})
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
		return textRead{}, err
	}
	o := Observation{
		URL:            str(raw["url"]),
		TextTruncated:  raw["truncated"] == true,
		ScrollY:        toInt(raw["scrollY"]),
		PageHeight:     toInt(raw["height"]),
		ViewportHeight: toInt(raw["vh"]),
	}
	n := -1
	if _, ok := raw["n"]; ok {
		n = toInt(raw["n"])
	}
	o.Title, _ = capRunes(str(raw["title"]), maxTitleChars)
	var cut bool
	o.Text, cut = capRunes(str(raw["text"]), cfg.MaxTextChars)
	o.TextTruncated = o.TextTruncated || cut
	if st := toInt(raw["status"]); st > 0 {
		o.Status = st
	} else {
		s.mu.Lock()
		o.Status = s.status
		s.mu.Unlock()
	}
	return textRead{o: o, n: n, elements: toInt(raw["elements"]), vw: toInt(raw["vw"]), hasBody: raw["hasBody"] == true}, nil
}

// snapshotBox is the [box=x,y,width,height] Playwright appends to a
// snapshot line when asked for boxes (viewport coordinates; inside a frame,
// the frame's).
var snapshotBox = regexp.MustCompile(` \[box=(-?[0-9.]+),(-?[0-9.]+),(-?[0-9.]+),(-?[0-9.]+)\]`)

// inViewport keeps the snapshot lines of elements whose box meets the
// viewport (w×h), the lines without a box under them (text, a link's
// /url), and the ancestors of all these; inside a frame, what the frame's
// line decided. The boxes themselves are removed.
func inViewport(snap string, w, h int) string {
	if w <= 0 || h <= 0 {
		return snapshotBox.ReplaceAllString(snap, "")
	}
	lines := strings.Split(snap, "\n")
	type open struct {
		indent, line int
		visible      bool
		frame        bool
	}
	keep := make([]bool, len(lines))
	var stack []open
	for i, l := range lines {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		visible, inFrame := true, false
		if n := len(stack); n > 0 {
			visible, inFrame = stack[n-1].visible, stack[n-1].frame
		}
		if m := snapshotBox.FindStringSubmatch(l); m != nil && !inFrame {
			x, _ := strconv.ParseFloat(m[1], 64)
			y, _ := strconv.ParseFloat(m[2], 64)
			bw, _ := strconv.ParseFloat(m[3], 64)
			bh, _ := strconv.ParseFloat(m[4], 64)
			visible = y+bh >= 0 && y <= float64(h) && x+bw >= 0 && x <= float64(w) && (bw > 0 || bh > 0)
		}
		frame := inFrame || strings.HasPrefix(strings.TrimLeft(l, " "), "- iframe")
		stack = append(stack, open{indent: indent, line: i, visible: visible, frame: frame})
		if visible {
			keep[i] = true
			for _, a := range stack {
				keep[a.line] = true
			}
		}
	}
	var b strings.Builder
	for i, l := range lines {
		if keep[i] {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(snapshotBox.ReplaceAllString(l, ""))
		}
	}
	return b.String()
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
