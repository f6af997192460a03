package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// testTaskTimeout bounds every task of these tests: a hang fails the test
// instead of stalling it.
const testTaskTimeout = 60 * time.Second

// newTestPool starts a pool on the real Chromium with private addresses
// allowed (the test pages are on 127.0.0.1), closed at the end of the test.
func newTestPool(t testing.TB, adjust func(*Config)) *Pool {
	t.Helper()
	cfg := testPoolConfig(t, adjust)
	ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
	defer cancel()
	p, err := NewPool(ctx, cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// testPoolConfig is newTestPool's configuration.
func testPoolConfig(t testing.TB, adjust func(*Config)) Config {
	t.Helper()
	deps := testsupport.FindBrowser(t)
	cfg := Config{
		ExecutablePath:    deps.Chromium,
		DriverDir:         deps.DriverDir,
		NodePath:          deps.Node,
		MaxConcurrent:     4,
		NavigationTimeout: 15 * time.Second,
		ActionTimeout:     2 * time.Second,
		SettleTimeout:     3 * time.Second,
		Policy:            URLPolicy{AllowPrivate: true},
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if adjust != nil {
		adjust(&cfg)
	}
	return cfg
}

// acquire opens a session bounded by testTaskTimeout, closed at the end of
// the test.
func acquire(t *testing.T, p *Pool) (*Session, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
	t.Cleanup(cancel)
	s, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ctx
}

func observe(t *testing.T, ctx context.Context, s *Session) Observation {
	t.Helper()
	o, err := s.Observe(ctx)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return o
}

func wantClass(t *testing.T, err error, want core.ErrorType) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", want)
	}
	if got := Classify(err); got != want {
		t.Fatalf("error %q (%T) classified %q, want %q", err, err, got, want)
	}
}

// site is the test web site: every page the tests browse.
type site struct {
	*httptest.Server
	pixelHits    atomic.Int64
	hangStarted  chan struct{}
	releaseHangs chan struct{}
}

func newSite(t testing.TB) *site {
	t.Helper()
	s := &site{hangStarted: make(chan struct{}, 16), releaseHangs: make(chan struct{})}
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><head><title>%s</title></head><body>%s</body></html>", title, body)
	}
	mux.HandleFunc("/form", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Search", `<form action="/search" method="get"><label>Query <input id="q" name="q"></label></form>`)
	})
	mux.HandleFunc("/search", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Results", "<h1>Results for "+htmlEscape(r.URL.Query().Get("q"))+"</h1>")
	})
	mux.HandleFunc("/links", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Links", `<p>Start here.</p><a id="go" href="/target">Go to target</a>`)
	})
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Target", "<h1>Target page</h1><p>You followed the link.</p>")
	})
	mux.HandleFunc("/js", func(w http.ResponseWriter, r *http.Request) {
		page(w, "JS page", `<h1>JS page</h1><div id="app"></div>
<script>document.getElementById('app').textContent = 'rendered by script ' + (6 * 7);</script>
<script>fetch('/api').then(r => r.json()).then(d => {
  const p = document.createElement('p'); p.id = 'loaded'; p.textContent = d.msg; document.body.append(p);
});</script>
<noscript>NOSCRIPT-TEXT</noscript><style>.x { color: red } /* STYLE-TEXT */</style>`)
	})
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"msg": "data fetched by the page"}`)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>Hang</title><p>loading forever")
		w.(http.Flusher).Flush()
		select {
		case s.hangStarted <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-s.releaseHangs:
		}
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		page(w, "Not found", "<p>no such page here</p>")
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>Big</title><body>")
		// Enough text in the viewport to pass the text cap, then more
		// elements than the snapshot's cap (MaxSnapshotElements), in
		// small paragraphs: 20 MB of large ones took Chromium past its
		// navigation timeout on a loaded machine.
		para := []byte("<p>" + strings.Repeat("lorem ipsum dolor sit amet ", 36) + "</p>\n")
		for i := 0; i < 20; i++ {
			if _, err := w.Write(para); err != nil {
				return
			}
		}
		small := []byte(strings.Repeat("<p>lorem</p>", 100) + "\n")
		for i := 0; i < DefaultMaxSnapshotElements/100+10; i++ {
			if _, err := w.Write(small); err != nil {
				return
			}
		}
		fmt.Fprint(w, "</body>")
	})
	mux.HandleFunc("/hidden", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Hidden", `<div style="display:none"><button>START</button><input name=q placeholder="mobile"></div>
<p style="visibility:hidden">START hidden too</p><p>Visible words come first, then many more visible words after them.</p>
<ul><li><a href="/1">one link</a></li><li><a href="/2">two link</a></li><li><a href="/3">three link</a></li></ul>`)
	})
	mux.HandleFunc("/many", func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		for i := 0; i < 2000; i++ {
			fmt.Fprintf(&b, "<li><a href=\"/item/%d\">item number %d</a></li>", i, i)
		}
		page(w, "Many", "<h1>Many items</h1><ul>"+b.String()+"</ul>")
	})
	mux.HandleFunc("/cookie/set", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "who", Value: r.URL.Query().Get("v"), Path: "/"})
		page(w, "Set", "cookie set")
	})
	mux.HandleFunc("/cookie/get", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Get", "cookies=["+htmlEscape(r.Header.Get("Cookie"))+"]")
	})
	mux.HandleFunc("/dialogs", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Dialogs", `<script>alert('a'); const ok = confirm('b'); const name = prompt('c');</script>
<p id="after">after dialogs confirm=<span id="ok"></span></p><script>document.getElementById('ok').textContent = String(ok);</script>`)
	})
	mux.HandleFunc("/ask", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Ask", `<button id="ask" onclick="document.getElementById('out').textContent = 'name=' + prompt('Your name?')">ask</button><p id="out"></p>`)
	})
	mux.HandleFunc("/popup", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Popup", `<a id="newtab" target="_blank" href="/target">open in new tab</a>
<button id="open" onclick="window.open('/target')">window.open</button>`)
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="payload.bin"`)
		fmt.Fprint(w, "binary payload")
	})
	mux.HandleFunc("/download-link", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Download", `<a id="dl" href="/download">get the file</a>`)
	})
	mux.HandleFunc("/widgets", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Widgets", `<ul><li>one</li><li>two</li><li>three</li></ul>
<select id="color" onchange="document.getElementById('chosen').textContent = 'chose ' + this.value">
<option value="r">Red</option><option value="g">Green</option></select><p id="chosen"></p>
<input id="key" onkeydown="if (event.key === 'ArrowDown') document.getElementById('pressed').textContent = 'pressed down'">
<p id="pressed"></p><div style="height: 5000px">tall</div>`)
	})
	mux.HandleFunc("/img", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Image", `<img src="/pixel.png" alt="a pixel"><p>image page</p>`)
	})
	mux.HandleFunc("/pixel.png", func(w http.ResponseWriter, r *http.Request) {
		s.pixelHits.Add(1)
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n"))
	})
	mux.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Spin", `<p>spinning</p><script>setTimeout(() => { for (;;) {} }, 0);</script>`)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(s.releaseHangs)
		s.Close()
	})
	return s
}

// TestSession runs the agent's actions against the test site with one pool
// shared by the subtests (each subtest has its own session).
func TestSession(t *testing.T) {
	pool := newTestPool(t, nil)
	web := newSite(t)

	t.Run("form fill and submit", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/form"); err != nil {
			t.Fatal(err)
		}
		if err := s.FillAndSubmit(ctx, "#q", "golang pools"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if !strings.Contains(o.URL, "/search?q=golang+pools") || !strings.Contains(o.Text, "Results for golang pools") {
			t.Fatalf("after submit: %+v", o)
		}
		if o.Title != "Results" || o.Status != 200 {
			t.Fatalf("title %q status %d", o.Title, o.Status)
		}
		if !strings.Contains(o.AriaSnapshot, `heading "Results for golang pools"`) {
			t.Fatalf("aria snapshot lacks the heading:\n%s", o.AriaSnapshot)
		}
	})

	t.Run("fill then press Enter", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/form"); err != nil {
			t.Fatal(err)
		}
		if err := s.Fill(ctx, "input[name=q]", "pressed"); err != nil {
			t.Fatal(err)
		}
		if err := s.Press(ctx, "#q", "Enter"); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctx, s); !strings.Contains(o.Text, "Results for pressed") {
			t.Fatalf("after press: %q", o.Text)
		}
	})

	t.Run("follow a link", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/links"); err != nil {
			t.Fatal(err)
		}
		if err := s.Click(ctx, "text=Go to target"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if !strings.HasSuffix(o.URL, "/target") || o.Title != "Target" || !strings.Contains(o.Text, "You followed the link.") {
			t.Fatalf("after click: %+v", o)
		}
	})

	t.Run("JS-rendered content is observed", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/js"); err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(ctx, "#loaded"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		for _, want := range []string{"rendered by script 42", "data fetched by the page"} {
			if !strings.Contains(o.Text, want) {
				t.Errorf("text lacks %q: %q", want, o.Text)
			}
		}
		for _, unwanted := range []string{"NOSCRIPT-TEXT", "STYLE-TEXT", "createElement"} {
			if strings.Contains(o.Text, unwanted) {
				t.Errorf("text contains %q (scripts/styles/noscript must be removed): %q", unwanted, o.Text)
			}
		}
		if !strings.Contains(o.AriaSnapshot, "data fetched by the page") {
			t.Errorf("aria snapshot lacks the rendered paragraph:\n%s", o.AriaSnapshot)
		}
	})

	t.Run("404 is an observation, not an error", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/missing"); err != nil {
			t.Fatalf("Goto of a 404 page: %v", err)
		}
		o := observe(t, ctx, s)
		if o.Status != http.StatusNotFound || !strings.Contains(o.Text, "no such page here") {
			t.Fatalf("status %d text %q", o.Status, o.Text)
		}
		if !strings.Contains(o.String(), "Status: 404") {
			t.Fatalf("rendered observation lacks the status:\n%s", o)
		}
	})

	t.Run("infinite redirect is a network error", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		err := s.Goto(ctx, web.URL+"/loop")
		wantClass(t, err, core.ErrNetwork)
		var ne *NetworkError
		if !errors.As(err, &ne) || ne.Code != "ERR_TOO_MANY_REDIRECTS" {
			t.Fatalf("error %v, want net::ERR_TOO_MANY_REDIRECTS", err)
		}
	})

	t.Run("connection refused is a network error", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		err = s.Goto(ctx, "http://"+addr+"/")
		wantClass(t, err, core.ErrNetwork)
		var ne *NetworkError
		if !errors.As(err, &ne) || ne.Code != "ERR_CONNECTION_REFUSED" {
			t.Fatalf("error %v, want ERR_CONNECTION_REFUSED", err)
		}
		// The session is still usable.
		if err := s.Goto(ctx, web.URL+"/target"); err != nil {
			t.Fatalf("Goto after a network error: %v", err)
		}
	})

	t.Run("TLS error goes through the tunnel and is a network error", func(t *testing.T) {
		tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "tls page")
		}))
		tlsSrv.Config.ErrorLog = discardLogger // the handshake failure is the point
		tlsSrv.StartTLS()
		defer tlsSrv.Close()
		s, ctx := acquire(t, pool)
		// The self-signed certificate can only be seen if the CONNECT tunnel
		// reached the server.
		err := s.Goto(ctx, tlsSrv.URL)
		wantClass(t, err, core.ErrNetwork)
		if !strings.Contains(err.Error(), "ERR_CERT") {
			t.Fatalf("error %v, want a certificate error", err)
		}
	})

	t.Run("a page beyond the caps: observation capped, no hang", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/big"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if n := len([]rune(o.Text)); n == 0 || n > DefaultMaxTextChars || !o.TextTruncated {
			t.Fatalf("text: %d runes, truncated=%v", n, o.TextTruncated)
		}
		if !strings.HasPrefix(o.Text, "lorem ipsum") {
			t.Fatalf("text starts %q", o.Text[:min(len(o.Text), 80)])
		}
		if n := len([]rune(o.AriaSnapshot)); n > DefaultMaxSnapshotChars {
			t.Fatalf("aria snapshot %d runes, cap %d", n, DefaultMaxSnapshotChars)
		}
		// More paragraphs than MaxSnapshotElements: the snapshot
		// is skipped, and the observation says why.
		if o.AriaSnapshot != "" || !strings.Contains(o.SnapshotError, "too large") {
			t.Fatalf("snapshot %d chars, error %q", len(o.AriaSnapshot), o.SnapshotError)
		}
	})

	t.Run("long page: the observation follows the viewport, scroll and find", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/many"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if !strings.Contains(o.AriaSnapshot, `heading "Many items"`) || !strings.Contains(o.AriaSnapshot, `link "item number 0"`) ||
			strings.Contains(o.AriaSnapshot, `"item number 500"`) || !strings.Contains(o.AriaSnapshot, "[ref=e") {
			t.Fatalf("snapshot of the top:\n%s", o.AriaSnapshot)
		}
		if !strings.Contains(o.Text, "item number 0") || strings.Contains(o.Text, "item number 500") || o.ScrollY != 0 ||
			o.PageHeight <= o.ViewportHeight || !strings.Contains(o.Position(), "more below") {
			t.Fatalf("top: scroll %d of %d, %q; text %q", o.ScrollY, o.PageHeight, o.Position(), o.Text)
		}
		if err := s.Scroll(ctx, "down"); err != nil {
			t.Fatal(err)
		}
		down := observe(t, ctx, s)
		if down.ScrollY == 0 || down.Text == o.Text || strings.Contains(down.Text, "item number 0 ") || down.AriaSnapshot == o.AriaSnapshot {
			t.Fatalf("after a scroll: y=%d, text %q", down.ScrollY, down.Text)
		}
		if err := s.Find(ctx, "ITEM NUMBER 1500"); err != nil {
			t.Fatal(err)
		}
		found := observe(t, ctx, s)
		if !strings.HasPrefix(found.Text, "item number 1500") || !strings.Contains(found.AriaSnapshot, `link "item number 1500"`) ||
			!strings.Contains(found.Position(), "more above and below") {
			t.Fatalf("after find: y=%d %q, text %.80q", found.ScrollY, found.Position(), found.Text)
		}
		var ee *ElementError
		if err := s.Find(ctx, "no such words"); !errors.As(err, &ee) {
			t.Fatalf("find of absent text: %v", err)
		}
		if err := s.Scroll(ctx, "up"); err != nil {
			t.Fatal(err)
		}
		if up := observe(t, ctx, s); up.ScrollY >= found.ScrollY {
			t.Fatalf("scroll up: y %d -> %d", found.ScrollY, up.ScrollY)
		}
	})

	t.Run("observation: hidden elements left out, size configurable", func(t *testing.T) {
		small := newTestPool(t, func(c *Config) { c.MaxTextChars = 40; c.MaxSnapshotChars = 60 })
		s, ctx := acquire(t, small)
		if err := s.Goto(ctx, web.URL+"/hidden"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if strings.Contains(o.Text, "START") || strings.Contains(o.AriaSnapshot, "mobile") || !strings.Contains(o.Text, "Visible words") {
			t.Fatalf("hidden content observed: text %q, snapshot %q", o.Text, o.AriaSnapshot)
		}
		if !o.TextTruncated || len([]rune(o.Text)) > 40 || !o.SnapshotTruncated || len([]rune(o.AriaSnapshot)) > 60 {
			t.Fatalf("caps: text %d runes (%v), snapshot %d (%v)", len([]rune(o.Text)), o.TextTruncated, len([]rune(o.AriaSnapshot)), o.SnapshotTruncated)
		}
	})

	t.Run("widgets: select, press, extract, scroll, screenshot", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/widgets"); err != nil {
			t.Fatal(err)
		}
		if err := s.Select(ctx, "#color", "Green"); err != nil { // by label
			t.Fatal(err)
		}
		if got, err := s.Extract(ctx, "#chosen"); err != nil || got != "chose g" {
			t.Fatalf("after select: %q, %v", got, err)
		}
		if err := s.Press(ctx, "#key", "ArrowDown"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Extract(ctx, "#pressed"); err != nil || got != "pressed down" {
			t.Fatalf("after press: %q, %v", got, err)
		}
		if got, err := s.Extract(ctx, "li"); err != nil || got != "one\ntwo\nthree" {
			t.Fatalf("Extract(li) = %q, %v", got, err)
		}
		vp, err := s.page.Evaluate("() => [window.innerWidth, window.innerHeight]")
		if err != nil || fmt.Sprint(vp) != "[1280 720]" {
			t.Fatalf("viewport %v, %v; want 1280x720", vp, err)
		}
		if err := s.Scroll(ctx, ""); err != nil {
			t.Fatal(err)
		}
		y, err := s.page.Evaluate("() => window.scrollY")
		if err != nil || toInt(y) <= 0 {
			t.Fatalf("scrollY after Scroll = %v, %v", y, err)
		}
		shot := filepath.Join(t.TempDir(), "step.png")
		if err := s.Screenshot(ctx, shot); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(shot)
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Fatalf("screenshot: %d bytes, %v", len(data), err)
		}
	})

	t.Run("selector errors are runtime errors; waiting is a timeout", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/widgets"); err != nil {
			t.Fatal(err)
		}
		var ee *ElementError
		err := s.Click(ctx, "#does-not-exist")
		wantClass(t, err, core.ErrRuntime)
		if !errors.As(err, &ee) || !strings.Contains(ee.Reason, "no element matches") {
			t.Fatalf("Click on a missing element: %v", err)
		}
		_, err = s.Extract(ctx, "#does-not-exist")
		wantClass(t, err, core.ErrRuntime)
		err = s.Fill(ctx, "##not a selector", "x")
		wantClass(t, err, core.ErrRuntime)
		if !errors.As(err, &ee) || ee.Reason != "invalid selector" {
			t.Fatalf("Fill with a bad selector: %v", err)
		}
		wantClass(t, s.Wait(ctx, "#never-appears"), core.ErrTimeout)
		// None of this hurt the session.
		if got, err := s.Extract(ctx, "li"); err != nil || got == "" {
			t.Fatalf("Extract after errors: %q, %v", got, err)
		}
	})

	t.Run("dialogs are answered and reported", func(t *testing.T) {
		before := pool.Stats().DialogsDismissed
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/dialogs"); err != nil {
			t.Fatal(err)
		}
		o := observe(t, ctx, s)
		if !strings.Contains(o.Text, "after dialogs confirm=false") {
			t.Fatalf("page did not get past its dialogs (confirm must be dismissed): %q", o.Text)
		}
		if got := pool.Stats().DialogsDismissed - before; got != 3 {
			t.Fatalf("dialogs = %d, want 3", got)
		}
		want := []string{`a alert dialog said "a"; it was dismissed`, `a confirm dialog said "b"; it was dismissed`, `a prompt dialog said "c"; it was dismissed`}
		if !slices.Equal(o.Events, want) {
			t.Fatalf("events %q, want %q", o.Events, want)
		}
		if err := s.Goto(ctx, web.URL+"/ask"); err != nil {
			t.Fatal(err)
		}
		s.AnswerNextDialog(DialogAnswer{Accept: true, Text: "Ada"})
		if err := s.Click(ctx, "#ask"); err != nil {
			t.Fatal(err)
		}
		o = observe(t, ctx, s)
		if !strings.Contains(o.Text, "name=Ada") || len(o.Events) != 1 || !strings.Contains(o.Events[0], `accepted with "Ada"`) {
			t.Fatalf("accepted prompt: text %q, events %q", o.Text, o.Events)
		}
		if err := s.Click(ctx, "#ask"); err != nil { // the answer held for one dialog only
			t.Fatal(err)
		}
		if o = observe(t, ctx, s); !strings.Contains(o.Text, "name=null") || len(o.Events) != 1 || !strings.Contains(o.Events[0], "dismissed") {
			t.Fatalf("second prompt: text %q, events %q", o.Text, o.Events)
		}
	})

	t.Run("popups are tabs, listed and switchable", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/popup"); err != nil {
			t.Fatal(err)
		}
		waitTabs := func(n int) {
			t.Helper()
			// A click returns once dispatched: the popup it opens may be
			// reported later.
			deadline := time.Now().Add(10 * time.Second)
			for urls, _ := s.Tabs(); len(urls) < n && time.Now().Before(deadline); urls, _ = s.Tabs() {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if err := s.Click(ctx, "#newtab"); err != nil {
			t.Fatal(err)
		}
		waitTabs(2)
		if err := s.Click(ctx, "#open"); err != nil {
			t.Fatal(err)
		}
		waitTabs(3)
		o := observe(t, ctx, s)
		if !strings.HasSuffix(o.URL, "/popup") || len(o.Tabs) != 3 || o.Tab != 0 || len(o.Events) != 2 || !strings.Contains(o.Events[1], "new tab opened: tab 2") {
			t.Fatalf("the task's page %s; tabs %q (current %d); events %q", o.URL, o.Tabs, o.Tab, o.Events)
		}
		if err := s.SwitchTab(ctx, 1); err != nil {
			t.Fatal(err)
		}
		o = observe(t, ctx, s)
		if !strings.HasSuffix(o.URL, "/target") || o.Tab != 1 || !strings.Contains(o.Text, "You followed the link.") {
			t.Fatalf("tab 1: %s (current %d) %q", o.URL, o.Tab, o.Text)
		}
		var ee *ElementError
		if err := s.SwitchTab(ctx, 7); !errors.As(err, &ee) {
			t.Fatalf("switch to tab 7: %v", err)
		}
		if err := s.SwitchTab(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if o = observe(t, ctx, s); !strings.HasSuffix(o.URL, "/popup") {
			t.Fatalf("back on tab 0: %s", o.URL)
		}
	})

	t.Run("downloads are refused", func(t *testing.T) {
		before := pool.Stats().DownloadsRefused
		s, ctx := acquire(t, pool)
		err := s.Goto(ctx, web.URL+"/download")
		wantClass(t, err, core.ErrRuntime)
		var de *DownloadRefusedError
		if !errors.As(err, &de) {
			t.Fatalf("Goto of an attachment: %v, want *DownloadRefusedError", err)
		}
		if err := s.Goto(ctx, web.URL+"/download-link"); err != nil {
			t.Fatal(err)
		}
		if err := s.Click(ctx, "#dl"); err != nil {
			t.Fatalf("clicking a download link: %v", err)
		}
		if o := observe(t, ctx, s); !strings.HasSuffix(o.URL, "/download-link") || len(o.Events) == 0 || !strings.Contains(o.Events[len(o.Events)-1], `download of "payload.bin"`) {
			t.Fatalf("page moved to %s, or the refused download is not reported: %q", o.URL, o.Events)
		}
		if got := pool.Stats().DownloadsRefused - before; got < 1 {
			t.Fatalf("downloads refused = %d", got)
		}
	})

	t.Run("images are blocked", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/img"); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctx, s); !strings.Contains(o.Text, "image page") {
			t.Fatalf("text %q", o.Text)
		}
		if web.pixelHits.Load() != 0 {
			t.Fatalf("the image was fetched %d times", web.pixelHits.Load())
		}
	})

	t.Run("two concurrent tasks cannot see each other's cookies", func(t *testing.T) {
		a, ctxA := acquire(t, pool)
		b, ctxB := acquire(t, pool)
		for _, step := range []struct {
			s   *Session
			ctx context.Context
			v   string
		}{{a, ctxA, "alice"}, {b, ctxB, "bob"}} {
			if err := step.s.Goto(step.ctx, web.URL+"/cookie/set?v="+step.v); err != nil {
				t.Fatal(err)
			}
		}
		for _, step := range []struct {
			s        *Session
			ctx      context.Context
			want     string
			mustNot  string
			snapshot string
		}{{s: a, ctx: ctxA, want: "who=alice", mustNot: "bob"}, {s: b, ctx: ctxB, want: "who=bob", mustNot: "alice"}} {
			if err := step.s.Goto(step.ctx, web.URL+"/cookie/get"); err != nil {
				t.Fatal(err)
			}
			o := observe(t, step.ctx, step.s)
			if !strings.Contains(o.Text, "cookies=["+step.want+"]") || strings.Contains(o.Text, step.mustNot) {
				t.Fatalf("session sees %q, want only %s", o.Text, step.want)
			}
		}
		// A later session starts with no cookies at all.
		c, ctxC := acquire(t, pool)
		if err := c.Goto(ctxC, web.URL+"/cookie/get"); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctxC, c); !strings.Contains(o.Text, "cookies=[]") {
			t.Fatalf("fresh session sees %q", o.Text)
		}
	})

	t.Run("file:///etc/passwd is blocked even with AllowPrivate", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		for _, u := range []string{"file:///etc/passwd", "chrome://version", "javascript:alert(1)", "data:text/html,<p>x</p>"} {
			wantClass(t, s.Goto(ctx, u), core.ErrBlockedURL)
		}
		if o := observe(t, ctx, s); strings.Contains(o.Text, "root:") {
			t.Fatalf("file contents visible: %q", o.Text)
		}
	})

	t.Run("stats count contexts and navigation errors", func(t *testing.T) {
		st := pool.Stats()
		if st.ContextsCreated < 10 || st.BrowsersLaunched != 1 || !st.BrowserConnected || st.BrowserPID == 0 {
			t.Fatalf("stats %+v", st)
		}
		if st.NavigationErrors[core.ErrNetwork] < 2 || st.NavigationErrors[core.ErrBlockedURL] < 4 {
			t.Fatalf("navigation errors %v", st.NavigationErrors)
		}
		if st.MaxConcurrent != 4 || st.BrowserRestarts != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestTimeouts: a page that never finishes loading, the task's deadline, and
// a page stuck in an endless script.
func TestTimeouts(t *testing.T) {
	pool := newTestPool(t, func(c *Config) {
		c.NavigationTimeout = 2 * time.Second
		c.ActionTimeout = 2 * time.Second
		c.SettleTimeout = time.Second
	})
	web := newSite(t)

	t.Run("navigation timeout", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		err := s.Goto(ctx, web.URL+"/hang")
		wantClass(t, err, core.ErrTimeout)
		// The timeout ended the navigation, not the session.
		if err := s.Goto(ctx, web.URL+"/target"); err != nil {
			t.Fatalf("Goto after a timeout: %v", err)
		}
	})

	t.Run("a call's deadline bounds the call", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancelShort()
		wantClass(t, s.Goto(short, web.URL+"/hang"), core.ErrTimeout)
	})

	t.Run("the task's deadline bounds the session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wantClass(t, s.Goto(ctx, web.URL+"/hang"), core.ErrTimeout)
		<-ctx.Done()
		// The session ended with its task: even a call with a fresh context
		// fails, at once.
		_, err = s.Observe(context.Background())
		wantClass(t, err, core.ErrTimeout)
	})

	t.Run("cancelled task is a system error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() {
			<-web.hangStarted
			cancel()
		}()
		wantClass(t, s.Goto(ctx, web.URL+"/hang"), core.ErrSystem)
	})

	t.Run("endless script", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		_ = s.Goto(ctx, web.URL+"/spin") // may or may not finish before the loop starts
		_, err := s.Observe(ctx)
		wantClass(t, err, core.ErrTimeout)
	})

	t.Run("pool still serves", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, web.URL+"/target"); err != nil {
			t.Fatal(err)
		}
		if st := pool.Stats(); st.BrowserRestarts != 0 || !st.BrowserConnected {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestURLPolicyInBrowser runs with the policy on: one loopback server is
// explicitly allowed (AllowHosts), a second loopback server stands for the
// private network and must never receive a request.
func TestURLPolicyInBrowser(t *testing.T) {
	private := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<title>secret</title><p>INTERNAL SECRET</p>")
	})
	privURL := private.URL
	_, privPort, _ := net.SplitHostPort(hostOf(t, privURL))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<title>public</title><p>public page</p><a id="priv" href="`+privURL+`/admin">admin</a>
<script>fetch('`+privURL+`/api').catch(() => {});
fetch('http://localhost:`+privPort+`/by-name').catch(() => {});
try { new WebSocket('ws://127.0.0.1:`+privPort+`/ws'); } catch (e) {}
navigator.sendBeacon('`+privURL+`/beacon', 'x');
fetch('file:///etc/passwd').then(r => r.text()).then(t => document.body.append(t)).catch(() => {});</script>
<iframe src="file:///etc/passwd"></iframe>
<img src="`+privURL+`/pixel.png"><iframe src="`+privURL+`/frame"></iframe>`)
	})
	mux.HandleFunc("/redirect-private", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, privURL+"/secret", http.StatusFound)
	})
	mux.HandleFunc("/redirect-localhost", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+privPort+"/secret", http.StatusFound)
	})
	mux.HandleFunc("/redirect-https-private", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://127.0.0.1:"+privPort+"/secret", http.StatusFound)
	})
	mux.HandleFunc("/redirect-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	mux.HandleFunc("/redirect-link", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<a id="go" href="/redirect-private">innocent link</a>`)
	})
	public := httptest.NewServer(mux)
	t.Cleanup(public.Close)

	pool := newTestPool(t, func(c *Config) {
		c.Policy = URLPolicy{AllowHosts: []string{hostOf(t, public.URL)}}
		c.LoadImages = true // so the image request reaches the proxy
	})

	cases := []struct {
		name string
		url  string
	}{
		{"direct navigation to a private address", privURL + "/"},
		{"localhost by name", "http://localhost:" + privPort + "/"},
		{"metadata address", "http://169.254.169.254/latest/meta-data/"},
		{"redirect to a private address", public.URL + "/redirect-private"},
		{"redirect to localhost by name", public.URL + "/redirect-localhost"},
		{"redirect to https on a private address", public.URL + "/redirect-https-private"},
		{"redirect to the metadata address", public.URL + "/redirect-metadata"},
		{"file URL", "file:///etc/passwd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ctx := acquire(t, pool)
			err := s.Goto(ctx, tc.url)
			wantClass(t, err, core.ErrBlockedURL)
			if o, oerr := s.Observe(ctx); oerr == nil && (strings.Contains(o.Text, "INTERNAL SECRET") || strings.Contains(o.Text, "root:")) {
				t.Fatalf("blocked content visible: %q", o.Text)
			}
		})
	}

	t.Run("click that redirects to a private address", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		if err := s.Goto(ctx, public.URL+"/redirect-link"); err != nil {
			t.Fatal(err)
		}
		wantClass(t, s.Click(ctx, "#go"), core.ErrBlockedURL)
	})

	t.Run("allowed page loads; its private link, fetches, websocket, beacon, image and iframes do not", func(t *testing.T) {
		s, ctx := acquire(t, pool)
		before := pool.Stats().RequestsBlocked
		if err := s.Goto(ctx, public.URL+"/"); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctx, s); !strings.Contains(o.Text, "public page") || strings.Contains(o.Text, "root:") {
			t.Fatalf("allowed page: %q", o.Text)
		}
		// Two fetches, the WebSocket, the beacon, the image and the iframe
		// were each refused (by the router or the proxy), not just lost.
		const attempts = 6
		deadline := time.Now().Add(10 * time.Second)
		for pool.Stats().RequestsBlocked-before < attempts && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := pool.Stats().RequestsBlocked - before; got < attempts {
			t.Fatalf("%d requests blocked, want %d", got, attempts)
		}
		wantClass(t, s.Click(ctx, "#priv"), core.ErrBlockedURL)
	})

	if n := private.hits.Load(); n != 0 {
		t.Fatalf("the private server received %d requests", n)
	}
	if pool.Stats().RequestsBlocked < int64(len(cases)) {
		t.Fatalf("RequestsBlocked = %d", pool.Stats().RequestsBlocked)
	}
}

// TestAcquireBlocksAtMaxConcurrent: the semaphore holds the third task until
// a slot frees.
func TestAcquireBlocksAtMaxConcurrent(t *testing.T) {
	pool := newTestPool(t, func(c *Config) { c.MaxConcurrent = 2 })
	a, _ := acquire(t, pool)
	acquire(t, pool)
	if st := pool.Stats(); st.SessionsInUse != 2 || st.PagesInUse != 2 {
		t.Fatalf("stats %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := pool.Acquire(ctx)
	wantClass(t, err, core.ErrTimeout)

	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
		defer cancel()
		s, err := pool.Acquire(ctx)
		if err == nil {
			_ = s.Close()
		}
		got <- err
	}()
	_ = a.Close()
	if err := <-got; err != nil {
		t.Fatalf("Acquire after a slot freed: %v", err)
	}
}

func TestMissingDependencies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	deps := testsupport.FindBrowser(t)
	tests := []struct {
		name string
		cfg  Config
		what string
		fix  string
	}{
		{"chromium", Config{ExecutablePath: filepath.Join(dir, "no-chromium"), DriverDir: deps.DriverDir, NodePath: deps.Node},
			"chromium", "apt-get install chromium"},
		{"driver", Config{ExecutablePath: deps.Chromium, DriverDir: dir, NodePath: deps.Node},
			"playwright driver", "scripts/bootstrap.sh"},
		{"node", Config{ExecutablePath: deps.Chromium, DriverDir: deps.DriverDir, NodePath: filepath.Join(dir, "no-node")},
			"node", "PLAYWRIGHT_NODEJS_PATH"},
	}
	for _, tc := range tests {
		_, err := NewPool(context.Background(), tc.cfg)
		var me *MissingDependencyError
		if !errors.As(err, &me) || !strings.HasPrefix(me.What, tc.what) || !strings.Contains(me.Error(), tc.fix) {
			t.Errorf("%s: NewPool error %v, want a MissingDependencyError about %s saying %q", tc.name, err, tc.what, tc.fix)
		}
		if Classify(err) != core.ErrSystem {
			t.Errorf("%s: classified %s", tc.name, Classify(err))
		}
	}
	// Nothing was created in the empty "driver directory".
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("NewPool wrote into the driver directory: %v", entries)
	}
}
