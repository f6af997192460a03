package browser

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// actionsSite is a local page for each action that names an element by
// ref or acts without one.
func actionsSite(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><html><head><title>%s</title></head><body>%s</body></html>", title, body)
	}
	mux.HandleFunc("/actions", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Actions", `<p id="out">none</p>
<button onclick="say('first previous')">Previous</button> <button onclick="say('second previous')">Previous</button>
<div id="dbl" ondblclick="say('double-clicked')">double-click me</div>
<div id="hov" onmouseenter="say('hovered')">hover me</div>
<div id="item" draggable="true" ondragstart="event.dataTransfer.setData('text/plain', 'item')">drag me</div>
<div id="zone" style="width:200px;height:60px;border:1px solid" ondragover="event.preventDefault()" ondrop="event.preventDefault(); say('dropped ' + event.dataTransfer.getData('text/plain'))">drop here</div>
<div id="spot" style="position:fixed;left:600px;top:400px;width:40px;height:40px;background:#ccc" onclick="say('spot at ' + event.clientX + ',' + event.clientY)"></div>
<input id="field" value="" onkeydown="say('key ' + event.key)">
<a href="/next">next page</a>
<script>function say(s) { document.getElementById('out').textContent = s; }
document.addEventListener('keydown', (e) => { if (e.target === document.body) say('body key ' + e.key); });</script>`)
	})
	mux.HandleFunc("/next", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Next", `<p>The next page.</p>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// refOf returns the ref of the n-th (from 0) snapshot line that contains
// what.
func refOf(t *testing.T, snap, what string, n int) string {
	t.Helper()
	re := regexp.MustCompile(`\[ref=([a-z0-9]+)\]`)
	for _, l := range strings.Split(snap, "\n") {
		if !strings.Contains(l, what) {
			continue
		}
		if n > 0 {
			n--
			continue
		}
		if m := re.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no ref for %q in:\n%s", what, snap)
	return ""
}

func TestActionsByRefAndWithoutElement(t *testing.T) {
	pool := newTestPool(t, nil)
	site := actionsSite(t)
	s, ctx := acquire(t, pool)
	if err := s.Goto(ctx, site+"/actions"); err != nil {
		t.Fatal(err)
	}
	o := observe(t, ctx, s)
	out := func() string {
		t.Helper()
		text, err := s.Extract(ctx, "#out")
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"click the second of two identical buttons by ref", func() error {
			return s.Click(ctx, "aria-ref="+refOf(t, o.AriaSnapshot, `button "Previous"`, 1))
		}, "second previous"},
		{"dblclick", func() error { return s.DoubleClick(ctx, "#dbl") }, "double-clicked"},
		{"hover", func() error { return s.Hover(ctx, "#hov") }, "hovered"},
		{"drag onto a drop zone", func() error { return s.Drag(ctx, "#item", "#zone") }, "dropped item"},
		{"mouse click at coordinates", func() error { return s.MouseClick(ctx, 610, 410) }, "spot at 610,410"},
		{"fill and press by ref", func() error {
			ref := "aria-ref=" + refOf(t, o.AriaSnapshot, "textbox", 0)
			if err := s.Fill(ctx, ref, "abc"); err != nil {
				return err
			}
			return s.Press(ctx, ref, "ArrowLeft")
		}, "key ArrowLeft"},
		{"key on the focused element", func() error { return s.Key(ctx, "Home") }, "key Home"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			if got := out(); got != tc.want {
				t.Errorf("page says %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("a ref from no snapshot matches nothing", func(t *testing.T) {
		var ee *ElementError
		if err := s.Click(ctx, "aria-ref=e9999"); !errors.As(err, &ee) {
			t.Errorf("click of an unknown ref: %v", err)
		}
	})

	t.Run("mouse click outside the viewport is refused", func(t *testing.T) {
		var ee *ElementError
		if err := s.MouseClick(ctx, 5000, 10); !errors.As(err, &ee) {
			t.Errorf("mouse click at 5000,10: %v", err)
		}
	})

	t.Run("back", func(t *testing.T) {
		if err := s.Click(ctx, "text=next page"); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctx, s); !strings.HasSuffix(o.URL, "/next") {
			t.Fatalf("on %s", o.URL)
		}
		if err := s.Back(ctx); err != nil {
			t.Fatal(err)
		}
		if o := observe(t, ctx, s); !strings.HasSuffix(o.URL, "/actions") {
			t.Fatalf("back on %s", o.URL)
		}
	})

	t.Run("back with no history", func(t *testing.T) {
		s2, ctx2 := acquire(t, pool)
		if err := s2.Goto(ctx2, site+"/next"); err != nil {
			t.Fatal(err)
		}
		if err := s2.Back(ctx2); err != nil { // to the blank page the session opened on
			t.Fatal(err)
		}
		var ee *ElementError
		if err := s2.Back(ctx2); !errors.As(err, &ee) {
			t.Errorf("back with no history: %v", err)
		}
	})
}

// TestSettleObservesScriptRenderedContent: results a script fetches and
// renders after the load event, and content rendered in a chain of short
// timers, are in the observation after a goto or a click, with no
// explicit wait.
func TestSettleObservesScriptRenderedContent(t *testing.T) {
	pool := newTestPool(t, nil)
	mux := http.NewServeMux()
	release := make(chan struct{})
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Late</title></head><body><ul id="r"></ul><button onclick="more()">more</button>
<script>
addEventListener('load', () => fetch('/data').then((r) => r.text()).then((t) => {
  document.getElementById('r').innerHTML = '<li>' + t + '</li>';
}));
function more() {
  let i = 0;
  const tick = () => { const li = document.createElement('li'); li.textContent = 'chained ' + i; document.getElementById('r').append(li); if (++i < 5) setTimeout(tick, 40); };
  setTimeout(tick, 40);
}
</script></body></html>`)
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) {
		<-release // answered once the page has loaded and the step is settling
		fmt.Fprint(w, "Search finished: 3 results")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s, ctx := acquire(t, pool)
	go func() {
		// The fetch starts after load; the step is settling by then.
		time.Sleep(300 * time.Millisecond)
		close(release)
	}()
	if err := s.Goto(ctx, srv.URL+"/late"); err != nil {
		t.Fatal(err)
	}
	if o := observe(t, ctx, s); !strings.Contains(o.Text, "Search finished: 3 results") {
		t.Fatalf("fetched results not observed: %q", o.Text)
	}
	if err := s.Click(ctx, "text=more"); err != nil {
		t.Fatal(err)
	}
	if o := observe(t, ctx, s); !strings.Contains(o.Text, "chained 4") {
		t.Fatalf("chained rendering not observed to its end: %q", o.Text)
	}
}

// TestFrames: a same-origin iframe's content is in the snapshot with refs
// that reach into it, and in the page text verification reads.
func TestFrames(t *testing.T) {
	pool := newTestPool(t, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/outer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Outer</title></head><body><p>outer text</p><iframe src="/inner" width="400" height="200"></iframe></body></html>`)
	})
	mux.HandleFunc("/inner", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><body><p id="msg">inner text</p><button onclick="document.getElementById('msg').textContent = 'inner clicked'">Inner button</button></body></html>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s, ctx := acquire(t, pool)
	if err := s.Goto(ctx, srv.URL+"/outer"); err != nil {
		t.Fatal(err)
	}
	o := observe(t, ctx, s)
	ref := refOf(t, o.AriaSnapshot, `button "Inner button"`, 0)
	if !strings.HasPrefix(ref, "f") {
		t.Fatalf("the frame's button has ref %q, want a frame ref (f…)", ref)
	}
	if err := s.Click(ctx, "aria-ref="+ref); err != nil {
		t.Fatal(err)
	}
	text, err := s.PageText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "outer text") || !strings.Contains(text, "inner clicked") {
		t.Fatalf("page text %q lacks the frame's", text)
	}
	if o := observe(t, ctx, s); !strings.Contains(o.AriaSnapshot, "inner clicked") {
		t.Fatalf("snapshot after the click:\n%s", o.AriaSnapshot)
	}
}
