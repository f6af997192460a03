package webagent

import (
	"fmt"
	"net/http"
	"strings"
)

// docSite is a local stand-in for a Sphinx documentation site (the kind of
// site issue 26 was found on): a hidden mobile-menu search box before the
// visible one, search results a script renders after load inside
// div[role=main], and a long page whose interesting part is far below the
// fold.
func docSite() http.Handler {
	const head = `<!doctype html><html><head><meta charset="utf-8"><title>%s</title></head><body>
<div class="mobile-menu" style="display:none"><form action="/search.html"><input type="text" name="q" placeholder="mobile search"></form></div>
<nav><a href="/">Docs home</a> <form action="/search.html" role="search"><input type="text" name="q" aria-label="Quick search"><input type="submit" value="Go"></form></nav>
<div role="main">`
	const foot = `</div></body></html>`
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, head, title)
		fmt.Fprint(w, body, foot)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Python documentation", `<h1>Python documentation</h1><p>Welcome.</p>`)
	})
	mux.HandleFunc("GET /search.html", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Search", `<h1>Search</h1><p id="status">Searching…</p><ul class="search"></ul>
<script>
window.addEventListener('load', () => setTimeout(() => {
  const ul = document.querySelector('ul.search');
  ul.innerHTML = '<li><a href="/library/stdtypes.html#str.removeprefix">str.removeprefix</a></li>' +
                 '<li><a href="/library/stdtypes.html">Built-in Types</a></li>';
  document.getElementById('status').textContent = 'Search finished, found 2 pages.';
}, 300));
</script>`)
	})
	mux.HandleFunc("GET /buttons", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Buttons", `<p id="out">none</p><button onclick="out.textContent='first previous'">Previous</button>
<button onclick="out.textContent='second previous'">Previous</button>`)
	})
	mux.HandleFunc("GET /ask", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Ask", `<p id="out">none</p><button onclick="out.textContent = 'name=' + prompt('Your name?')">Ask</button>
<a href="/buttons" target="_blank">open buttons in a new tab</a>`)
	})
	mux.HandleFunc("GET /library/stdtypes.html", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Built-in Types", longPageBody())
	})
	return mux
}

// longPageBody is 300 filler paragraphs, then the method the tasks ask
// about: its text is far beyond any observation of the top of the page.
func longPageBody() string {
	var b strings.Builder
	b.WriteString(`<h1>Built-in Types</h1>`)
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&b, "<p>Paragraph %d of the filler that a reader scrolls past on the way down.</p>\n", i)
	}
	b.WriteString(`<dl><dt id="str.removeprefix">str.removeprefix(prefix, /)</dt>
<dd><p>If the string starts with the prefix string, return string[len(prefix):]. Otherwise, return a copy of the original string.</p></dd></dl>
<p id="end">End of the page.</p>
<p style="display:none">Hidden remark: the secret word is marmalade.</p>`)
	return b.String()
}
