package browser

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/core"
)

// hangGrace is how long past its own timeout a Playwright call may take
// before the session gives up on the browser answering (a page stuck in an
// endless script never answers an evaluate, which has no timeout of its own).
const hangGrace = 2 * time.Second

// errUnresponsive aborts a session whose page stopped answering.
var errUnresponsive = errors.New("the page stopped responding")

// Session is one task's browser: a fresh browser context (isolated cookies,
// storage and cache) with one page, all its traffic through the session's
// egress proxy, which enforces the URL policy. Methods are meant to be
// called from one goroutine (the task's agent loop); Close may be called
// from anywhere.
//
// Every method returns errors that Classify maps to a step's error_type.
// After a navigation or an action the step also fails when the main frame's
// navigation it started was blocked (blocked_url) or failed below HTTP
// (network_error); an HTTP error status such as 404 is not a failure: it is
// in Observation.Status.
//
// Dialogs (alert, confirm, prompt) are answered as they open (dismissed,
// unless AnswerNextDialog said otherwise), popups and new tabs are kept as
// tabs (up to maxTabs; SwitchTab acts on one), and downloads are kept
// (KeepDownloads, bounded) or refused, so none of them can stall a task;
// each is an event of the next observation.
type Session struct {
	pool      *Pool
	inst      *instance
	ctx       context.Context
	stopWatch func() bool
	proxy     *egressProxy
	bctx      playwright.BrowserContext
	page      playwright.Page

	mu        sync.Mutex
	mainFrame playwright.Frame
	navErr    error // first failure of a main-frame navigation in the current step
	// tabs are the context's open pages, the first one first; page is the
	// current one (switch_tab). Written on the agent's goroutine under mu,
	// read by the handlers under mu.
	tabs []playwright.Page
	// events are what happened beside the page since the last observation
	// (a dialog and its answer, a new tab, a download kept or refused).
	events []string
	// dialogAnswer is how the next dialog is answered (the dialog action);
	// nil: dismissed.
	dialogAnswer *DialogAnswer
	// settledN and settledElements are the content counter and element
	// count settle saw when it found the page quiet (settledValid), for
	// the observation that follows.
	settledN, settledElements int
	settledValid              bool
	// navigated says whether the main frame navigated in the current step
	// (settle then trusts the new document's own record of its changes).
	navigated bool
	status    int // HTTP status of the last main-frame navigation response
	abortErr  error
	crashed   bool
	// inflight are the page's requests not yet finished or failed, with
	// when each started (settle waits for them).
	inflight map[playwright.Request]time.Time
	// dlDir and dlName say where downloads are kept (KeepDownloads);
	// dlN counts them, dlPending are being fetched. dlCtx ends with the
	// session.
	dlDir          string
	dlName         DownloadName
	dlN, dlPending int
	dlCtx          context.Context
	dlCancel       context.CancelFunc
	closed         bool
	closeOnce      sync.Once
}

func newSession(ctx context.Context, p *Pool, inst *instance) (*Session, error) {
	s := &Session{pool: p, inst: inst, ctx: ctx}
	s.dlCtx, s.dlCancel = context.WithCancel(context.WithoutCancel(ctx))
	proxy, err := startEgressProxy(&p.cfg.Policy, p.id, func(*BlockedURLError) { p.stats.blocked.Add(1) })
	if err != nil {
		return nil, &BrowserError{Op: "new session", Err: err}
	}
	s.proxy = proxy
	limit := p.cfg.ActionTimeout + p.cfg.CloseTimeout
	err = bounded(ctx, limit, "new session", s.open, func() {
		if s.bctx != nil {
			_ = s.bctx.Close()
		}
	})
	if err != nil {
		proxy.Close()
		s.dlCancel()
		var te *TimeoutError
		if errors.As(err, &te) || errors.Is(err, context.Canceled) {
			return nil, err
		}
		if isConnectionLost(err.Error()) {
			p.instanceLost(inst, "driver connection closed")
		}
		return nil, &BrowserError{Op: "new session", Err: err}
	}
	s.stopWatch = context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
	return s, nil
}

// open creates the browser context and its page and wires the handlers.
func (s *Session) open() error {
	cfg := s.pool.cfg
	bctx, err := s.inst.browser.NewContext(playwright.BrowserNewContextOptions{
		Viewport:        &playwright.Size{Width: viewportWidth, Height: viewportHeight},
		AcceptDownloads: playwright.Bool(false),
		// Everything through the egress proxy, loopback included: Chromium
		// connects to 127.0.0.1 and localhost directly unless told
		// "<-loopback>" (Playwright adds it too, unless an environment
		// variable of the driver says otherwise).
		Proxy:          &playwright.Proxy{Server: s.proxy.URL(), Bypass: playwright.String("<-loopback>")},
		ServiceWorkers: playwright.ServiceWorkerPolicyBlock, // a worker outlives the task's page
	})
	if err != nil {
		return err
	}
	s.bctx = bctx
	bctx.SetDefaultTimeout(float64(cfg.ActionTimeout.Milliseconds()))
	bctx.SetDefaultNavigationTimeout(float64(cfg.NavigationTimeout.Milliseconds()))
	bctx.OnDialog(s.onDialog)
	if err := bctx.AddInitScript(playwright.Script{Content: playwright.String(fmt.Sprintf(pageStateJS, s.pool.stateKey))}); err != nil {
		_ = bctx.Close()
		return err
	}
	page, err := bctx.NewPage()
	if err != nil {
		_ = bctx.Close()
		return err
	}
	s.inflight = map[playwright.Request]time.Time{}
	s.mu.Lock()
	s.page = page
	s.mainFrame = page.MainFrame()
	s.tabs = []playwright.Page{page}
	s.mu.Unlock()
	s.watch(page)
	bctx.OnPage(s.onPage) // registered after NewPage: every later page is a popup
	return nil
}

// watch wires a tab's handlers; those of a tab that is not the current
// one ignore what they see (a tab's navigation outcome is its own).
func (s *Session) watch(page playwright.Page) {
	page.OnRequest(s.onRequest)
	page.OnFrameNavigated(s.onFrameNavigated)
	page.OnRequestFinished(s.requestDone)
	page.OnResponse(s.onResponse)
	page.OnRequestFailed(s.onRequestFailed)
	page.OnCrash(func(pg playwright.Page) {
		s.mu.Lock()
		if pg == s.page {
			s.crashed = true
		}
		s.mu.Unlock()
	})
	page.OnDownload(s.onDownload)
}

// Close closes the browser context (all its pages, cookies and cache go
// with it) and frees the session's slot. It never fails; when the browser
// does not answer within CloseTimeout the browser is killed and replaced.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.dlCancel()
		s.waitDownloads(context.Background())
		err := bounded(context.Background(), s.pool.cfg.CloseTimeout, "close context", func() error { return s.bctx.Close() }, nil)
		var te *TimeoutError
		if errors.As(err, &te) && !s.inst.isDead() {
			// A browser that cannot close a context is wedged: replace it.
			s.pool.instanceLost(s.inst, "a browser context did not close within "+s.pool.cfg.CloseTimeout.String())
		}
		s.proxy.Close()
		s.pool.forget(s)
		s.pool.release(s.inst)
		<-s.pool.sem
	})
	return nil
}

// abort closes the session's context and proxy so that any call in flight
// ends; later calls fail with an error derived from cause.
func (s *Session) abort(cause error) {
	s.mu.Lock()
	if s.abortErr != nil || s.closed {
		s.mu.Unlock()
		return
	}
	s.abortErr = cause
	s.mu.Unlock()
	s.proxy.Close()
	go func() { _ = s.bctx.Close() }()
}

// URL returns the page's current URL.
func (s *Session) URL() string { return s.page.URL() }

// Goto navigates to rawURL and waits for the DOM (DOMContentLoaded), then up
// to SettleTimeout for the load event. The URL is checked against the policy
// before the browser sees it; redirects are checked by the egress proxy.
func (s *Session) Goto(ctx context.Context, rawURL string) error {
	err := s.gotoURL(ctx, rawURL)
	s.pool.countNavError(err)
	return err
}

func (s *Session) gotoURL(ctx context.Context, rawURL string) error {
	if err := s.usable("goto"); err != nil {
		return err
	}
	if err := s.pool.cfg.Policy.Check(ctx, rawURL); err != nil {
		var b *BlockedURLError
		if errors.As(err, &b) {
			s.pool.stats.blocked.Add(1)
			return b
		}
		// A resolution failure is not a denial: the proxy resolves again
		// and reports what it finds.
	}
	s.beginStep()
	var resp playwright.Response
	err := s.run(ctx, "goto", s.pool.cfg.NavigationTimeout, func(ms *float64) error {
		var err error
		resp, err = s.page.Goto(rawURL, playwright.PageGotoOptions{
			Timeout:   ms,
			WaitUntil: playwright.WaitUntilStateDomcontentloaded,
		})
		return err
	})
	if err != nil {
		return s.navFailure(rawURL, err)
	}
	if resp != nil {
		s.mu.Lock()
		s.status = resp.Status()
		s.mu.Unlock()
		if err := s.proxyVerdict(resp.URL(), resp.Headers()); err != nil {
			return err
		}
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	return s.stepNavErr()
}

// Click clicks the first element matching selector (a Playwright selector:
// CSS, text=..., role=...), waiting up to ActionTimeout for it to be visible,
// enabled and stable, and then for the navigation it started, if any.
func (s *Session) Click(ctx context.Context, selector string) error {
	return s.act(ctx, "click", selector, func(l playwright.Locator, ms *float64) error {
		return l.Click(playwright.LocatorClickOptions{Timeout: ms})
	})
}

// DoubleClick double-clicks the first element matching selector.
func (s *Session) DoubleClick(ctx context.Context, selector string) error {
	return s.act(ctx, "dblclick", selector, func(l playwright.Locator, ms *float64) error {
		// A click of count 2 is what Dblclick sends; playwright-go's
		// Dblclick options carry a field the 1.60 driver rejects.
		return l.Click(playwright.LocatorClickOptions{ClickCount: playwright.Int(2), Timeout: ms})
	})
}

// Hover moves the mouse over the first element matching selector.
func (s *Session) Hover(ctx context.Context, selector string) error {
	return s.act(ctx, "hover", selector, func(l playwright.Locator, ms *float64) error {
		return l.Hover(playwright.LocatorHoverOptions{Timeout: ms})
	})
}

// Drag drags the first element matching selector onto the first matching
// target (mouse down, move, up: HTML5 drag and drop and mouse-event
// sortables both see it).
func (s *Session) Drag(ctx context.Context, selector, target string) error {
	if strings.TrimSpace(target) == "" {
		return &ElementError{Op: "drag", Selector: target, Reason: "empty target"}
	}
	to := s.page.Locator(target).First()
	return s.act(ctx, "drag", selector, func(l playwright.Locator, ms *float64) error {
		return l.DragTo(to, playwright.LocatorDragToOptions{Timeout: ms})
	})
}

// MouseClick clicks at viewport coordinates (CSS pixels), whatever is
// there.
func (s *Session) MouseClick(ctx context.Context, x, y float64) error {
	if err := s.usable("mouse_click"); err != nil {
		return err
	}
	vw, vh := float64(viewportWidth), float64(viewportHeight)
	if x < 0 || y < 0 || x >= vw || y >= vh {
		return &ElementError{Op: "mouse_click", Selector: fmt.Sprintf("%g,%g", x, y),
			Reason: fmt.Sprintf("outside the %gx%g viewport", vw, vh)}
	}
	return s.input(ctx, "mouse_click", func() error { return s.page.Mouse().Click(x, y) })
}

// Key presses a key (or a chord such as "Control+A") on whatever has the
// focus.
func (s *Session) Key(ctx context.Context, key string) error {
	if strings.TrimSpace(key) == "" {
		return &ElementError{Op: "key", Reason: "empty key"}
	}
	if err := s.usable("key"); err != nil {
		return err
	}
	return s.input(ctx, "key", func() error { return s.page.Keyboard().Press(key) })
}

// Back goes back in the page's history, like the browser's back button.
// With no history to go back to it is an *ElementError.
func (s *Session) Back(ctx context.Context) error {
	if err := s.usable("back"); err != nil {
		return err
	}
	s.beginStep()
	from := s.page.URL()
	var resp playwright.Response
	err := s.run(ctx, "back", s.pool.cfg.NavigationTimeout, func(ms *float64) error {
		var err error
		resp, err = s.page.GoBack(playwright.PageGoBackOptions{Timeout: ms, WaitUntil: playwright.WaitUntilStateDomcontentloaded})
		return err
	})
	if err != nil {
		return s.navFailure(s.page.URL(), err)
	}
	if resp == nil && s.stepNavErr() == nil && s.page.URL() == from {
		return &ElementError{Op: "back", Reason: "no page to go back to"}
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	return s.stepNavErr()
}

// input runs a mouse or keyboard call that names no element, then settles
// like an action.
func (s *Session) input(ctx context.Context, op string, fn func() error) error {
	s.beginStep()
	if err := s.run(ctx, op, s.pool.cfg.ActionTimeout, func(*float64) error { return fn() }); err != nil {
		if navErr := s.stepNavErr(); navErr != nil {
			s.pool.countNavError(navErr)
			return navErr
		}
		return err
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	if navErr := s.stepNavErr(); navErr != nil {
		s.pool.countNavError(navErr)
		return navErr
	}
	return nil
}

// Fill replaces the value of the first input matching selector with text.
func (s *Session) Fill(ctx context.Context, selector, text string) error {
	return s.act(ctx, "fill", selector, func(l playwright.Locator, ms *float64) error {
		return l.Fill(text, playwright.LocatorFillOptions{Timeout: ms})
	})
}

// Press focuses the first element matching selector and presses key
// ("Enter", "Tab", "ArrowDown", "Control+A").
func (s *Session) Press(ctx context.Context, selector, key string) error {
	return s.act(ctx, "press", selector, func(l playwright.Locator, ms *float64) error {
		return l.Press(key, playwright.LocatorPressOptions{Timeout: ms})
	})
}

// FillAndSubmit fills the first input matching selector and presses Enter:
// the blueprint's fill_and_submit.
func (s *Session) FillAndSubmit(ctx context.Context, selector, text string) error {
	return s.act(ctx, "fill_and_submit", selector, func(l playwright.Locator, ms *float64) error {
		start := time.Now()
		if err := l.Fill(text, playwright.LocatorFillOptions{Timeout: ms}); err != nil {
			return err
		}
		// Both steps share the action's time.
		left := math.Max(1, *ms-float64(time.Since(start).Milliseconds()))
		return l.Press("Enter", playwright.LocatorPressOptions{Timeout: &left})
	})
}

// Select chooses the option whose value or label is value in the first
// <select> matching selector.
func (s *Session) Select(ctx context.Context, selector, value string) error {
	return s.act(ctx, "select", selector, func(l playwright.Locator, ms *float64) error {
		_, err := l.SelectOption(playwright.SelectOptionValues{ValuesOrLabels: &[]string{value}},
			playwright.LocatorSelectOptionOptions{Timeout: ms})
		return err
	})
}

// Scroll scrolls the page by 90% of the viewport height: down, or up when
// direction is "up". The next observation shows the part scrolled to.
func (s *Session) Scroll(ctx context.Context, direction string) error {
	sign := 1
	switch direction {
	case "", "down":
	case "up":
		sign = -1
	default:
		return &ElementError{Op: "scroll", Reason: fmt.Sprintf("direction %q is neither up nor down", direction)}
	}
	if err := s.usable("scroll"); err != nil {
		return err
	}
	return s.run(ctx, "scroll", s.pool.cfg.ActionTimeout, func(*float64) error {
		_, err := s.page.Evaluate(`(sign) => { window.scrollBy(0, sign * Math.round(window.innerHeight * 0.9)); return window.scrollY; }`, sign)
		return err
	})
}

// findJS scrolls to the next visible occurrence of a text (case-insensitive)
// after the top of the viewport, wrapping around to the page's start, and
// reports whether there was one.
const findJS = `(needle) => {
  needle = needle.toLowerCase();
  const hits = [];
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  let n = 0;
  while (walker.nextNode() && ++n < 500000) {
    const t = walker.currentNode;
    const e = t.parentElement;
    if (!e || !t.data.toLowerCase().includes(needle)) continue;
    if (['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE'].includes(e.tagName)) continue;
    if (e.checkVisibility && !e.checkVisibility({ visibilityProperty: true })) continue;
    hits.push(e);
  }
  if (!hits.length) return false;
  const next = hits.find((e) => e.getBoundingClientRect().top > 1) || hits[0];
  next.scrollIntoView({ block: 'start' });
  return true;
}`

// Find scrolls to the next visible occurrence of text on the page (case
// insensitive; after the top of the viewport, then from the start): the
// next observation shows it near the top. No occurrence is an
// *ElementError.
func (s *Session) Find(ctx context.Context, text string) error {
	if strings.TrimSpace(text) == "" {
		return &ElementError{Op: "find", Reason: "empty text"}
	}
	if err := s.usable("find"); err != nil {
		return err
	}
	var found bool
	err := s.run(ctx, "find", s.pool.cfg.ActionTimeout, func(*float64) error {
		v, err := s.page.Evaluate(findJS, text)
		found = v == true
		return err
	})
	if err != nil {
		return err
	}
	if !found {
		return &ElementError{Op: "find", Selector: text, Reason: "the text is not on the page (hidden text does not count)"}
	}
	return nil
}

// Wait waits up to ActionTimeout for an element matching selector to be
// visible. Not appearing in time is a timeout (unlike the other actions,
// where a selector that matches nothing is a runtime_error).
func (s *Session) Wait(ctx context.Context, selector string) error {
	if strings.TrimSpace(selector) == "" {
		return &ElementError{Op: "wait", Selector: selector, Reason: "empty selector"}
	}
	if err := s.usable("wait"); err != nil {
		return err
	}
	err := s.run(ctx, "wait", s.pool.cfg.ActionTimeout, func(ms *float64) error {
		return s.page.Locator(selector).First().WaitFor(playwright.LocatorWaitForOptions{
			State: playwright.WaitForSelectorStateVisible, Timeout: ms,
		})
	})
	if err != nil && isSelectorSyntaxError(err) {
		return &ElementError{Op: "wait", Selector: selector, Reason: "invalid selector", Err: err}
	}
	return err
}

// Extract returns the visible text of every element matching selector, one
// per line, whitespace collapsed, capped at MaxTextChars. It waits up to
// ActionTimeout for a first match; none is a runtime_error.
func (s *Session) Extract(ctx context.Context, selector string) (string, error) {
	if strings.TrimSpace(selector) == "" {
		return "", &ElementError{Op: "extract", Selector: selector, Reason: "empty selector"}
	}
	if err := s.usable("extract"); err != nil {
		return "", err
	}
	max := s.pool.cfg.MaxTextChars
	loc := s.page.Locator(selector)
	var text string
	err := s.run(ctx, "extract", s.pool.cfg.ActionTimeout, func(ms *float64) error {
		if err := loc.First().WaitFor(playwright.LocatorWaitForOptions{
			State: playwright.WaitForSelectorStateAttached, Timeout: ms,
		}); err != nil {
			return err
		}
		v, err := loc.EvaluateAll(extractJS, max)
		if err != nil {
			return err
		}
		text, _ = v.(string)
		return nil
	})
	if err != nil {
		return "", s.elementFailure(ctx, "extract", selector, loc, err)
	}
	text, _ = capRunes(text, max)
	return text, nil
}

const extractJS = `(els, max) => {
  const out = []; let n = 0;
  for (const e of els) {
    const t = (e.innerText ?? e.textContent ?? '').replace(/\s+/g, ' ').trim();
    if (!t) continue;
    out.push(t); n += t.length + 1;
    if (n > max) break;
  }
  return out.join('\n');
}`

// Screenshot saves a PNG of the viewport to path.
func (s *Session) Screenshot(ctx context.Context, path string) error {
	if err := s.usable("screenshot"); err != nil {
		return err
	}
	return s.run(ctx, "screenshot", s.pool.cfg.ActionTimeout, func(ms *float64) error {
		_, err := s.page.Screenshot(playwright.PageScreenshotOptions{
			Path: playwright.String(path), Timeout: ms, Type: playwright.ScreenshotTypePng,
		})
		return err
	})
}

// act runs one element action: it resolves the selector to its first match,
// runs fn, waits for any navigation fn started to settle, and reports that
// navigation's failure.
func (s *Session) act(ctx context.Context, op, selector string, fn func(playwright.Locator, *float64) error) error {
	if strings.TrimSpace(selector) == "" {
		return &ElementError{Op: op, Selector: selector, Reason: "empty selector"}
	}
	if err := s.usable(op); err != nil {
		return err
	}
	s.beginStep()
	loc := s.page.Locator(selector).First()
	err := s.run(ctx, op, s.pool.cfg.ActionTimeout, func(ms *float64) error { return fn(loc, ms) })
	if err != nil {
		if navErr := s.stepNavErr(); navErr != nil {
			// The navigation the action started failed: that is the story.
			s.pool.countNavError(navErr)
			return navErr
		}
		return s.elementFailure(ctx, op, selector, loc, err)
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	if navErr := s.stepNavErr(); navErr != nil {
		s.pool.countNavError(navErr)
		return navErr
	}
	return nil
}

// elementFailure explains a failed action: a Playwright timeout with no
// element matching is an *ElementError (runtime_error), as is a selector
// Playwright cannot parse.
func (s *Session) elementFailure(ctx context.Context, op, selector string, loc playwright.Locator, err error) error {
	if isSelectorSyntaxError(err) {
		return &ElementError{Op: op, Selector: selector, Reason: "invalid selector", Err: err}
	}
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, playwright.ErrTimeout) || ctx.Err() != nil || s.usable(op) != nil {
		return err
	}
	var n int
	cerr := s.run(ctx, "count", s.pool.cfg.ActionTimeout, func(*float64) error {
		var err error
		n, err = loc.Count()
		return err
	})
	if cerr == nil && n == 0 {
		return &ElementError{Op: op, Selector: selector,
			Reason: fmt.Sprintf("no element matches (waited %s)", s.pool.cfg.ActionTimeout), Err: err}
	}
	return err
}

func isSelectorSyntaxError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"is not a valid selector", "Unexpected token", "Unknown engine", "SyntaxError", "Unsupported token"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// settle waits, up to SettleTimeout in all, for the load event and then
// for the page to be quiet: no request in flight (but those older than
// SettleTimeout), and no change of its content for QuietWindow, counted
// from the action at the earliest when the action did not navigate; a new
// document that has not changed since its load event is quiet at once (a
// static page costs no wait). Results a
// script renders after load are then in the next observation. Not getting
// there is fine (a slow image, an endless animation); only a dead session
// is an error.
func (s *Session) settle(ctx context.Context) error {
	cfg := s.pool.cfg
	begin := time.Now()
	deadline := begin.Add(cfg.SettleTimeout)
	err := s.run(ctx, "wait for load", cfg.SettleTimeout, func(ms *float64) error {
		return s.page.WaitForLoadState(playwright.PageWaitForLoadStateOptions{
			State: playwright.LoadStateLoad, Timeout: ms,
		})
	})
	if err != nil && !(errors.Is(err, playwright.ErrTimeout) && ctx.Err() == nil && s.usable("settle") == nil) {
		switch Classify(err) {
		case core.ErrTimeout, core.ErrBrowser, core.ErrSystem:
			return err
		}
		return nil
	}
	quiet := float64(cfg.QuietWindow.Milliseconds())
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		var st pageQuiet
		err := s.run(ctx, "wait for quiet", left, func(*float64) error {
			v, err := s.page.Evaluate(quietJS, s.pool.stateKey)
			m, _ := v.(map[string]any)
			st = pageQuiet{since: toFloat(m["since"]), changedAfterLoad: m["afterLoad"] == true, known: m["known"] == true,
				n: toInt(m["n"]), elements: toInt(m["elements"])}
			return err
		})
		switch {
		case err == nil:
		case isContextDestroyed(err):
			st = pageQuiet{known: true, changedAfterLoad: true} // navigating: wait for the new document
		case ctx.Err() != nil || s.usable("settle") != nil:
			return err
		default:
			return nil
		}
		s.mu.Lock()
		navigated := s.navigated
		s.mu.Unlock()
		if !navigated {
			// The same document: a script the action started may change
			// it in a moment, so quiet counts from the action.
			st.since = min(st.since, float64(time.Since(begin).Milliseconds()))
			st.changedAfterLoad = true
		}
		wait := 20 * time.Millisecond
		switch {
		case !st.known || !st.changedAfterLoad || st.since >= quiet:
			// A new document that has not changed since its load event, or
			// one quiet for the window: settled once no request is open.
			if s.requestsInFlight(time.Now().Add(-cfg.SettleTimeout)) == 0 {
				if st.known {
					s.mu.Lock()
					s.settledN, s.settledElements, s.settledValid = st.n, st.elements, true
					s.mu.Unlock()
				}
				return nil
			}
		default:
			wait = max(wait, time.Duration((quiet-st.since)*float64(time.Millisecond)))
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctxError("settle", ctx.Err())
		case <-t.C:
		}
	}
}

// pageQuiet is what quietJS reports: how many milliseconds ago the page's
// content last changed, whether it changed after its load event, and
// whether the page has the page state at all (about:blank does not).
type pageQuiet struct {
	since            float64
	changedAfterLoad bool
	known            bool
	n, elements      int // the content counter and the element count
}

// quietJS reads the page state for settle.
const quietJS = `(k) => {
  const st = window[k];
  if (!st) return { known: false };
  return { known: true, since: performance.now() - st.last, afterLoad: st.loadAt === 0 || st.last > st.loadAt,
    n: st.n, elements: document.getElementsByTagName('*').length };
}`

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case float64:
		return n
	}
	return -1
}

// run calls fn, which makes one Playwright call with the timeout it is
// given: the smaller of limit and what is left of ctx and the session's ctx.
// It also stops waiting (and aborts the session) if the call outlives that
// timeout by hangGrace, and when ctx is done. Errors come back typed:
// *TimeoutError, *BrowserError, ErrPoolClosed, context.Canceled, or
// Playwright's own error for the caller to interpret.
func (s *Session) run(ctx context.Context, op string, limit time.Duration, fn func(timeoutMs *float64) error) error {
	return s.runGrace(ctx, op, limit, hangGrace, fn)
}

// runGrace is run with a chosen grace: calls whose work Playwright cannot
// interrupt (a snapshot of a big page) get more.
func (s *Session) runGrace(ctx context.Context, op string, limit, grace time.Duration, fn func(timeoutMs *float64) error) error {
	d := limit
	for _, c := range []context.Context{ctx, s.ctx} {
		if dl, ok := c.Deadline(); ok {
			if r := time.Until(dl); r < d {
				d = r
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return ctxError(op, err)
	}
	if d <= 0 {
		return &TimeoutError{Op: op, Err: context.DeadlineExceeded}
	}
	ms := math.Max(1, float64(d.Milliseconds()))
	if ctx != s.ctx {
		stop := context.AfterFunc(ctx, func() { s.abort(ctx.Err()) })
		defer stop()
	}
	done := make(chan error, 1)
	go func() { done <- fn(&ms) }()
	t := time.NewTimer(d + grace)
	defer t.Stop()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		return s.wrap(ctx, op, err)
	case <-t.C:
		s.abort(errUnresponsive)
		return &TimeoutError{Op: op, Err: fmt.Errorf("%w (no answer within %s)", errUnresponsive, d+grace)}
	}
}

// wrap types a Playwright error by what happened to the session.
func (s *Session) wrap(ctx context.Context, op string, err error) error {
	s.mu.Lock()
	aborted, crashed := s.abortErr, s.crashed
	s.mu.Unlock()
	switch {
	case aborted != nil:
		return abortedError(op, aborted)
	case ctx.Err() != nil:
		return ctxError(op, ctx.Err())
	case s.ctx.Err() != nil:
		return ctxError(op, s.ctx.Err())
	case crashed:
		return &BrowserError{Op: op, Err: fmt.Errorf("page crashed: %w", err)}
	case s.inst.isDead():
		return &BrowserError{Op: op, Err: fmt.Errorf("browser disconnected: %w", err)}
	case isConnectionLost(err.Error()):
		s.pool.instanceLost(s.inst, "driver connection closed")
		return &BrowserError{Op: op, Err: err}
	case errors.Is(err, playwright.ErrTargetClosed), isBrowserGoneMessage(err.Error()):
		return &BrowserError{Op: op, Err: err}
	case errors.Is(err, playwright.ErrTimeout):
		return &TimeoutError{Op: op, Err: err}
	}
	return err
}

// usable reports why the session can no longer be used, or nil.
func (s *Session) usable(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrSessionClosed
	case s.abortErr != nil:
		return abortedError(op, s.abortErr)
	case s.crashed:
		return &BrowserError{Op: op, Err: errors.New("page crashed")}
	}
	if s.inst.isDead() {
		return &BrowserError{Op: op, Err: errors.New("browser disconnected")}
	}
	return nil
}

func abortedError(op string, cause error) error {
	switch {
	case errors.Is(cause, ErrPoolClosed):
		return fmt.Errorf("%s: %w", op, ErrPoolClosed)
	case errors.Is(cause, context.DeadlineExceeded), errors.Is(cause, errUnresponsive):
		return &TimeoutError{Op: op, Err: cause}
	case errors.Is(cause, context.Canceled):
		return fmt.Errorf("%s: %w", op, cause)
	}
	return &BrowserError{Op: op, Err: cause}
}

// navFailure explains a failed Goto.
func (s *Session) navFailure(rawURL string, err error) error {
	var (
		te *TimeoutError
		be *BrowserError
	)
	if errors.As(err, &te) || errors.As(err, &be) || errors.Is(err, ErrPoolClosed) || errors.Is(err, context.Canceled) {
		return err
	}
	if navErr := s.stepNavErr(); navErr != nil {
		return navErr
	}
	msg := err.Error()
	switch code := netErrorCode(msg); {
	case strings.Contains(msg, "Download is starting"):
		if s.keepsDownloads() {
			return nil // the page stays; the download event says what was kept
		}
		return &DownloadRefusedError{URL: rawURL}
	case code == "ERR_BLOCKED_BY_CLIENT":
		return &BlockedURLError{URL: rawURL, Reason: "blocked by the browser"}
	case code == "ERR_TUNNEL_CONNECTION_FAILED":
		if perr := s.proxy.lastRefusal(hostPort(rawURL)); perr != nil {
			return perr
		}
		return &NetworkError{URL: rawURL, Code: code, Err: err}
	case code != "":
		return &NetworkError{URL: rawURL, Code: code, Err: err}
	}
	return err
}

// beginStep forgets the previous step's navigation outcome.
func (s *Session) beginStep() {
	s.mu.Lock()
	s.navErr = nil
	s.navigated = false
	s.settledValid = false
	s.mu.Unlock()
}

// takeSettled returns (and forgets) what settle saw of a quiet page.
func (s *Session) takeSettled() (n, elements int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, elements, ok = s.settledN, s.settledElements, s.settledValid
	s.settledValid = false
	return n, elements, ok
}

// onFrameNavigated notes a navigation of the main frame. It runs on the
// driver's dispatch goroutine.
func (s *Session) onFrameNavigated(f playwright.Frame) {
	if !s.isMainFrame(f) {
		return
	}
	s.mu.Lock()
	s.navigated = true
	s.mu.Unlock()
}

func (s *Session) stepNavErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.navErr
}

func (s *Session) setNavErr(err error) {
	s.mu.Lock()
	if s.navErr == nil {
		s.navErr = err
	}
	s.mu.Unlock()
}

func (s *Session) isMainFrame(f playwright.Frame) bool {
	if f == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mainFrame != nil && f == s.mainFrame
}

// onResponse records the outcome of main-frame navigations. It runs on the
// driver's dispatch goroutine: it must not call back into Playwright.
func (s *Session) onResponse(resp playwright.Response) {
	req := resp.Request()
	if !req.IsNavigationRequest() || !s.isMainFrame(resp.Frame()) {
		return
	}
	s.mu.Lock()
	s.status = resp.Status()
	s.mu.Unlock()
	if err := s.proxyVerdict(resp.URL(), resp.Headers()); err != nil {
		s.setNavErr(err)
	}
}

// onRequest and requestDone track the requests in flight. They run on the
// driver's dispatch goroutine.
func (s *Session) onRequest(req playwright.Request) {
	s.mu.Lock()
	s.inflight[req] = time.Now()
	s.mu.Unlock()
}

func (s *Session) requestDone(req playwright.Request) {
	s.mu.Lock()
	delete(s.inflight, req)
	s.mu.Unlock()
}

// requestsInFlight counts the requests in flight that started after since
// (older ones are long polls or streams: they never end).
func (s *Session) requestsInFlight(since time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.inflight {
		if t.After(since) {
			n++
		}
	}
	return n
}

func (s *Session) onRequestFailed(req playwright.Request) {
	s.requestDone(req)
	if !req.IsNavigationRequest() || !s.isMainFrame(req.Frame()) {
		return
	}
	f := req.Failure()
	if f == nil {
		return
	}
	switch code := netErrorCode(f.Error()); code {
	case "", "ERR_ABORTED":
		// Superseded by another navigation, stopped, or a refused download.
	case "ERR_BLOCKED_BY_CLIENT":
		s.setNavErr(&BlockedURLError{URL: req.URL(), Reason: "blocked by the browser"})
	case "ERR_TUNNEL_CONNECTION_FAILED":
		if perr := s.proxy.lastRefusal(hostPort(req.URL())); perr != nil {
			s.setNavErr(perr)
			return
		}
		s.setNavErr(&NetworkError{URL: req.URL(), Code: code})
	default:
		s.setNavErr(&NetworkError{URL: req.URL(), Code: code})
	}
}

// proxyVerdict turns the egress proxy's made-up responses back into errors.
// The header values start with the pool's random id, so a site cannot forge
// them.
func (s *Session) proxyVerdict(u string, headers map[string]string) error {
	for k, v := range headers {
		rest, ok := strings.CutPrefix(v, s.pool.id+" ")
		if !ok {
			continue
		}
		switch {
		case strings.EqualFold(k, headerBlocked):
			return &BlockedURLError{URL: u, Reason: rest}
		case strings.EqualFold(k, headerProxyError):
			code, detail, _ := strings.Cut(rest, ": ")
			return &NetworkError{URL: u, Code: code, Err: errors.New(detail)}
		}
	}
	return nil
}

// DialogAnswer is how the session answers the next dialog (alert,
// confirm, prompt): accept (with Text as a prompt's value) or dismiss.
type DialogAnswer struct {
	Accept bool
	Text   string
}

// AnswerNextDialog sets how the next dialog is answered; dialogs after it
// are dismissed again. A dialog is never left open: it would stall the
// page.
func (s *Session) AnswerNextDialog(a DialogAnswer) {
	s.mu.Lock()
	s.dialogAnswer = &a
	s.mu.Unlock()
}

func (s *Session) onDialog(d playwright.Dialog) {
	s.pool.stats.dialogs.Add(1)
	if d.Type() == "beforeunload" {
		_ = d.Accept() // let the navigation proceed
		return
	}
	s.mu.Lock()
	a := s.dialogAnswer
	s.dialogAnswer = nil
	s.mu.Unlock()
	what := fmt.Sprintf("a %s dialog said %q", d.Type(), d.Message())
	switch {
	case a != nil && a.Accept && d.Type() == "prompt":
		_ = d.Accept(a.Text)
		s.event(fmt.Sprintf("%s; it was accepted with %q", what, a.Text))
	case a != nil && a.Accept:
		_ = d.Accept()
		s.event(what + "; it was accepted")
	default:
		_ = d.Dismiss()
		s.event(what + "; it was dismissed")
	}
}

// event records something that happened beside the page for the next
// observation (at most maxEvents of them).
func (s *Session) event(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) < maxEvents {
		s.events = append(s.events, e)
	}
}

// maxTabs bounds the tabs a session keeps open; a page that opens more has
// them closed (and the observation says so).
const (
	maxTabs   = 5
	maxEvents = 20
)

func (s *Session) onPage(pg playwright.Page) {
	s.pool.stats.popups.Add(1)
	s.mu.Lock()
	if slices.Contains(s.tabs, pg) {
		s.mu.Unlock()
		return
	}
	if len(s.tabs) >= maxTabs || s.closed {
		s.mu.Unlock()
		s.event(fmt.Sprintf("a new tab was closed: %d tabs are open, the most a task may have", maxTabs))
		s.pool.stats.popupsOpen.Add(1)
		go func() {
			defer s.pool.stats.popupsOpen.Add(-1)
			_ = pg.Close()
		}()
		return
	}
	s.tabs = append(s.tabs, pg)
	n := len(s.tabs) - 1
	s.mu.Unlock()
	s.pool.stats.popupsOpen.Add(1)
	s.watch(pg)
	pg.OnClose(func(p playwright.Page) {
		s.pool.stats.popupsOpen.Add(-1)
		s.mu.Lock()
		s.tabs = slices.DeleteFunc(s.tabs, func(t playwright.Page) bool { return t == p })
		s.mu.Unlock()
	})
	s.event(fmt.Sprintf("a new tab opened: tab %d (switch_tab to act on it)", n))
}

// Tabs returns the URLs of the open tabs and the index of the current one.
func (s *Session) Tabs() (urls []string, current int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range s.tabs {
		urls = append(urls, t.URL())
		if t == s.page {
			current = i
		}
	}
	return urls, current
}

// takeEvents returns and forgets the events since the last call.
func (s *Session) takeEvents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.events
	s.events = nil
	return e
}

// hostPort returns the host:port a URL connects to.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") || strings.EqualFold(u.Scheme, "wss") {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// SwitchTab makes tab i (0 is the task's first page) the page the session
// acts on and observes.
func (s *Session) SwitchTab(ctx context.Context, i int) error {
	if err := s.usable("switch_tab"); err != nil {
		return err
	}
	// A tab the last action opened may be reported a moment after the
	// action returned: wait for it, up to ActionTimeout.
	deadline := time.Now().Add(s.pool.cfg.ActionTimeout)
	s.mu.Lock()
	for i >= len(s.tabs) && i < maxTabs && time.Now().Before(deadline) && ctx.Err() == nil {
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		s.mu.Lock()
	}
	if i < 0 || i >= len(s.tabs) {
		n := len(s.tabs)
		s.mu.Unlock()
		return &ElementError{Op: "switch_tab", Selector: fmt.Sprint(i), Reason: fmt.Sprintf("no such tab (%d open)", n)}
	}
	pg := s.tabs[i]
	s.page = pg
	s.mainFrame = pg.MainFrame()
	s.settledValid = false
	s.mu.Unlock()
	return s.run(ctx, "switch_tab", s.pool.cfg.ActionTimeout, func(*float64) error { return pg.BringToFront() })
}

// Eval runs body as the body of an async JavaScript function in the page
// and returns its result (JSON values: numbers are int or float64). A task's
// own scripts use it (setup, instruction, reward); the agent cannot.
func (s *Session) Eval(ctx context.Context, body string) (any, error) {
	if err := s.usable("eval"); err != nil {
		return nil, err
	}
	var v any
	err := s.run(ctx, "eval", s.pool.cfg.ActionTimeout, func(*float64) error {
		var err error
		v, err = s.page.Evaluate("async () => {\n" + body + "\n}")
		return err
	})
	return v, err
}
