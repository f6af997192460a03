package demosite

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestPages(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		method, path, body string
		status             int
		contains           []string
	}{
		{"GET", "/", "", 200, []string{`name="q"`, "ADP Demo Search"}},
		{"GET", "/search?q=redis+streams", "", 200, []string{`<li><a class="result" href="/article/redis-streams"`}},
		{"GET", "/search?q=topic+12", "", 200, []string{`href="/article/topic-12"`}},
		{"GET", "/search?q=zzzz", "", 200, []string{"No results"}},
		{"GET", "/article/topic-12", "", 200, []string{"ADP-84", "<script>"}},
		{"GET", "/article/nope", "", 404, []string{"Not found"}},
		{"POST", "/thanks", "name=Ada&topic=support", 200, []string{"Thank you, Ada. Your support message"}},
		{"GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "", 200, []string{"&lt;script&gt;alert(1)"}},
	}
	for _, tc := range tests {
		var resp *http.Response
		var err error
		if tc.method == "POST" {
			v, _ := url.ParseQuery(tc.body)
			resp, err = http.PostForm(srv.URL+tc.path, v)
		} else {
			resp, err = http.Get(srv.URL + tc.path)
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		for _, c := range tc.contains {
			if !strings.Contains(string(b), c) {
				t.Errorf("%s %s: body lacks %q", tc.method, tc.path, c)
			}
		}
	}
}
