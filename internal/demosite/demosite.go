// Package demosite is a small website the web runtime can work on without
// the internet: a search page, result lists, articles (some rendered by
// JavaScript) and a form. `make run`, the load test and the web tests serve
// it on loopback; the shipped tasks.jsonl points its web tasks at it.
package demosite

import (
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// DefaultAddr is where `make run` serves the site (ADP_DEMO_ADDR overrides).
const DefaultAddr = "127.0.0.1:8765"

// Host and TaskAddr are the name and the host:port the shipped tasks.jsonl
// uses for the site (http://demo-site:8765/): the demo-site service of
// docker-compose.yml, and under `make run` a forward (WEB_HOST_ALIASES
// demo-site:8765=<address>) on the web runtime to wherever the site is
// served, so that one task file works in both, at any address.
const (
	Host     = "demo-site"
	TaskAddr = Host + ":8765"
)

// Article is one page of the site.
type Article struct {
	Slug, Title, Body string
}

// articles are the fixed pages; "topic-N" pages are generated on demand.
var articles = []Article{
	{"agent-data-platform", "Agent Data Platform", "The Agent Data Platform turns a file of agent tasks into verified trajectories: the training data for LLM agents. A dispatcher feeds Redis Streams; a sandbox runtime runs Python under nsjail; a web runtime drives headless Chromium."},
	{"redis-streams", "Redis Streams", "Redis Streams are append-only logs with consumer groups. Entries stay pending until acknowledged, so a crashed consumer's work can be reclaimed by another."},
	{"nsjail", "nsjail", "nsjail is a process isolation tool for Linux using namespaces, resource limits and seccomp-bpf filters. It runs untrusted Python with no network and a read-only root."},
	{"playwright", "Playwright", "Playwright automates Chromium, Firefox and WebKit with a single API. Browser contexts isolate cookies and storage between tasks."},
	{"fibonacci", "Fibonacci numbers", "In the Fibonacci sequence each number is the sum of the two preceding ones: 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55. The 10th Fibonacci number is 55."},
}

func lookup(slug string) (Article, bool) {
	for _, a := range articles {
		if a.Slug == slug {
			return a, true
		}
	}
	if n, ok := strings.CutPrefix(slug, "topic-"); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 0 {
			return Article{slug, fmt.Sprintf("Topic %d", i), fmt.Sprintf("Topic %d is one of the generated pages of the demo site. Its code word is ADP-%d.", i, i*7)}, true
		}
	}
	return Article{}, false
}

// search returns the articles whose title or body contains every word of q.
func search(q string) []Article {
	words := strings.Fields(strings.ToLower(q))
	var out []Article
	cands := append([]Article(nil), articles...)
	// "topic 12" finds the generated page.
	for i, w := range words {
		if w == "topic" && i+1 < len(words) {
			if a, ok := lookup("topic-" + words[i+1]); ok {
				cands = append(cands, a)
			}
		}
	}
	type hit struct {
		a     Article
		score int
	}
	var hits []hit
	for _, a := range cands {
		title, body := strings.ToLower(a.Title), strings.ToLower(a.Body)
		matched, score := 0, 0
		for _, w := range words {
			inTitle, inBody := strings.Contains(title, w), strings.Contains(body, w)
			if inTitle || inBody {
				matched++
			}
			if inTitle {
				score += 2 // a title match ranks first
			}
			if inBody {
				score++
			}
		}
		if matched > 0 && matched*2 >= len(words) {
			hits = append(hits, hit{a, score})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].score > hits[j].score })
	for _, h := range hits {
		out = append(out, h.a)
	}
	return out
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:42rem;margin:2rem auto}</style></head>
<body><header><a href="/">ADP Demo</a> · <a href="/form">Contact</a></header>
<main>
<h1>{{.Title}}</h1>
{{if .Search}}<form action="/search" method="get" role="search">
<label for="q">Search</label> <input id="q" type="search" name="q" value="{{.Query}}" placeholder="Search the demo site">
<button type="submit">Search</button></form>{{end}}
{{if .Results}}<ol id="results">{{range .Results}}<li><a class="result" href="/article/{{.Slug}}">{{.Title}}</a></li>{{end}}</ol>{{end}}
{{if .NoResults}}<p id="no-results">No results for “{{.Query}}”.</p>{{end}}
{{if .Body}}<article><p>{{.Body}}</p></article>{{end}}
{{if .Dynamic}}<section id="dynamic"></section>
<script>document.getElementById("dynamic").textContent = "Rendered by JavaScript: " + {{.Dynamic}};</script>{{end}}
{{if .Form}}<form action="/thanks" method="post">
<label for="name">Name</label> <input id="name" name="name" required>
<label for="topic">Topic</label> <select id="topic" name="topic"><option value="general">General</option><option value="sales">Sales</option><option value="support">Support</option></select>
<button type="submit">Send</button></form>{{end}}
</main></body></html>`))

// ClickButtonPage follows MiniWoB++'s contract without its code: a START
// cover that starts the episode, an utterance that exists only after the
// start (core.getUtterance()), a 10 s episode timer that ends the episode
// with reward -1, and a reward the page's script computes into
// WOB_REWARD_GLOBAL: 1 for the button the utterance names, 0.75 for the
// "almost" button, -0.2 (a partial penalty) for the other. The seed picks
// the button, as Math.seedrandom does for MiniWoB.
const ClickButtonPage = `<!doctype html><html><head><meta charset="utf-8"><title>Click button</title><script>
var WOB_REWARD_GLOBAL = 0, WOB_DONE_GLOBAL = false, WOB_SEED = 1;
var core = {
  EPISODE_MAX_TIME: 10000, started: 0, timer: null,
  getUtterance() { return document.getElementById('query').textContent; },
  startEpisodeReal() {
    document.getElementById('sync-task-cover').style.display = 'none';
    core.started = Date.now();
    const target = WOB_SEED % 2 ? 'ONE' : 'TWO';
    document.getElementById('query').textContent = 'Click the button labelled ' + target + '.';
    document.getElementById('area').dataset.target = target;
    core.timer = setTimeout(() => core.endEpisode(-1), core.EPISODE_MAX_TIME);
  },
  endEpisode(reward) {
    if (WOB_DONE_GLOBAL) return;
    clearTimeout(core.timer);
    WOB_REWARD_GLOBAL = reward; WOB_DONE_GLOBAL = true;
    document.getElementById('reward-display').textContent = 'Last reward: ' + reward.toFixed(2);
  },
};
function press(label) {
  const target = document.getElementById('area').dataset.target;
  core.endEpisode(label === target ? 1 : label === 'ALMOST' ? 0.75 : -0.2);
}
</script></head><body>
<div id="sync-task-cover" onclick="core.startEpisodeReal()" style="position:fixed;inset:0;background:#eee">START</div>
<div id="query"></div>
<div id="area"><button onclick="press('ONE')">ONE</button> <button onclick="press('TWO')">TWO</button> <button onclick="press('ALMOST')">ALMOST</button></div>
<div id="reward-display"></div>
</body></html>`

type view struct {
	Title, Query, Body, Dynamic string
	Search, NoResults, Form     bool
	Results                     []Article
}

// Handler serves the site.
func Handler() http.Handler {
	mux := http.NewServeMux()
	render := func(w http.ResponseWriter, status int, v view) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = page.Execute(w, v)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		render(w, 200, view{Title: "ADP Demo Search", Search: true})
	})
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("q")
		res := search(q)
		render(w, 200, view{Title: "Results for " + q, Query: q, Search: true, Results: res, NoResults: len(res) == 0})
	})
	mux.HandleFunc("GET /article/{slug}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := lookup(r.PathValue("slug"))
		if !ok {
			render(w, 404, view{Title: "Not found", Body: "No such article."})
			return
		}
		render(w, 200, view{Title: a.Title, Body: a.Body, Dynamic: "more about " + a.Title})
	})
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		render(w, 200, view{Title: "Contact", Form: true})
	})
	mux.HandleFunc("POST /thanks", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		render(w, 200, view{Title: "Thank you", Body: fmt.Sprintf("Thank you, %s. Your %s message was received.", r.PostForm.Get("name"), r.PostForm.Get("topic"))})
	})
	mux.HandleFunc("GET /click-button", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(ClickButtonPage))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}
