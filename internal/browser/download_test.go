package browser

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// downloadSite serves a page with download links: a link with a download
// attribute to a plain file, a Content-Disposition attachment that shows
// the page's cookie, and two files over a 1 KiB bound (one with a
// Content-Length, one streamed without).
func downloadSite(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cret", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Files</title>
<a id="attr" href="/notes" download="my notes.txt">notes</a>
<a id="attach" href="/attach">report</a>
<a id="big" href="/big">big</a>
<a id="stream" href="/stream">stream</a>`)
	})
	mux.HandleFunc("/notes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "the notes")
	})
	mux.HandleFunc("/attach", func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Cookie("sid")
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="report.csv"`)
		fmt.Fprintf(w, "a,b\n1,%v\n", c != nil && c.Value == "s3cret")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Disposition", `attachment; filename="big.bin"`)
		w.Header().Set("Content-Length", "2048")
		_, _ = w.Write(make([]byte, 2048))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Disposition", `attachment; filename="stream.bin"`)
		for range 4 {
			_, _ = w.Write(make([]byte, 512))
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDownloadsKept: kept downloads are saved under the name the session
// is given, bounded in size, and named in the next observation; one over
// the bound is refused and nothing of it is left.
func TestDownloadsKept(t *testing.T) {
	base := downloadSite(t)
	pool := newTestPool(t, func(c *Config) { c.MaxDownloadBytes = 1024 })
	dir := t.TempDir()
	s, ctx := acquire(t, pool)
	s.KeepDownloads(dir, func(n int, suggested string) string { return fmt.Sprintf("attempt.download-%d-%s", n, suggested) })
	if err := s.Goto(ctx, base+"/page"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		link, event, file, content string
	}{
		{"#attr", `download of "my notes.txt"`, "attempt.download-1-my_notes.txt", "the notes"},
		{"#attach", `download of "report.csv"`, "attempt.download-2-report.csv", "a,b\n1,true\n"},
		{"#big", `download of "big.bin"`, "", ""},
		{"#stream", `download of "stream.bin"`, "", ""},
	} {
		if err := s.Click(ctx, tc.link); err != nil {
			t.Fatalf("click %s: %v", tc.link, err)
		}
		o := observe(t, ctx, s)
		if len(o.Events) != 1 || !strings.Contains(o.Events[0], tc.event) {
			t.Fatalf("after %s: events %q, want one with %s", tc.link, o.Events, tc.event)
		}
		ev := o.Events[0]
		if tc.file == "" {
			if !strings.Contains(ev, "was refused: it is larger than 1024 bytes") {
				t.Errorf("over the bound: %q", ev)
			}
			continue
		}
		if want := fmt.Sprintf("was saved as %s (%d bytes)", tc.file, len(tc.content)); !strings.Contains(ev, want) {
			t.Errorf("event %q, want %q", ev, want)
		}
		got, err := os.ReadFile(filepath.Join(dir, tc.file))
		if err != nil || string(got) != tc.content {
			t.Errorf("%s: %q %v, want %q", tc.file, got, err, tc.content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files kept, want 2 (nothing of the refused ones): %v", len(entries), entries)
	}
	// A navigation that turns into a download keeps the page and the file.
	if err := s.Goto(ctx, base+"/attach"); err != nil {
		t.Fatalf("goto an attachment: %v", err)
	}
	if o := observe(t, ctx, s); !strings.HasSuffix(o.URL, "/page") || len(o.Events) != 1 || !strings.Contains(o.Events[0], "saved as attempt.download-5-report.csv") {
		t.Fatalf("after goto of an attachment: %s, %q", o.URL, o.Events)
	}
}
