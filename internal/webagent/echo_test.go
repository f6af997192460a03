package webagent

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// echoSite is a search page that repeats the query above its results: a
// query matching "lovelace" finds one page, any other finds nothing.
func echoSite() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("q")
		results := "<p>No results.</p>"
		if strings.Contains(strings.ToLower(q), "lovelace") {
			results = "<ol><li>Ada Lovelace wrote the first program</li></ol>"
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Search</title><form action="/"><input name="q" value="%s"><button>Go</button></form>
<h1>Results for %s</h1>%s`, html.EscapeString(q), html.EscapeString(q), results)
	})
	return mux
}

// TestExpectedTextIsNotAnEcho: a hostile model types the expected text
// into an echoing search page; the echo does not verify. An honest search
// whose result holds the text passes, and a pass whose text the model
// also typed is flagged.
func TestExpectedTextIsNotAnEcho(t *testing.T) {
	b := setupSite(t, echoSite())
	for _, tc := range []struct {
		name    string
		acts    []map[string]string // the model's calls before finish
		want    string
		success bool
		why     string
		flagged bool
	}{
		{"typing the expected text is not a success", []map[string]string{{"action": "fill", "selector": "input[name=q]", "text": "first program by Ada"}, {"action": "press", "selector": "input[name=q]", "key": "Enter"}},
			"first program", false, "only where it repeats what the agent typed", false},
		{"nor with other spacing", []map[string]string{{"action": "fill", "selector": "input[name=q]", "text": "first   program"}, {"action": "press", "selector": "input[name=q]", "key": "Enter"}},
			"first program", false, "only where it repeats what the agent typed", false},
		{"nor key by key", []map[string]string{{"action": "click", "selector": "input[name=q]"}, {"action": "key", "key": "f"}, {"action": "key", "key": "i"},
			{"action": "key", "key": "r"}, {"action": "key", "key": "s"}, {"action": "key", "key": "t"}, {"action": "key", "key": "Enter"}},
			"first", false, "only where it repeats what the agent typed", false},
		{"nor in the URL", []map[string]string{{"action": "goto", "url": "/?q=first+program"}},
			"first program", false, "only where it repeats what the agent typed", false},
		{"an honest search verifies", []map[string]string{{"action": "fill", "selector": "input[name=q]", "text": "Lovelace"}, {"action": "press", "selector": "input[name=q]", "key": "Enter"}},
			"first program", true, "", false},
		{"text found beyond the echo, but typed too, is flagged", []map[string]string{{"action": "fill", "selector": "input[name=q]", "text": "Lovelace first program"}, {"action": "press", "selector": "input[name=q]", "key": "Enter"}},
			"first program", true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts := tc.acts
			fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
				if n < len(acts) {
					a := map[string]string{}
					for k, v := range acts[n] {
						if k == "url" {
							v = b.site + v
						}
						a[k] = v
					}
					name := a["action"]
					delete(a, "action")
					return 200, testsupport.ToolCallReply(fmt.Sprint(n), name, a)
				}
				return 200, testsupport.ToolCallReply("f", "finish", map[string]string{"answer": "done"})
			})
			client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake"})
			if err != nil {
				t.Fatal(err)
			}
			a := *b.agent
			a.LLM = client
			task := webTask("Find who wrote the first program", map[string]any{"start_url": b.site + "/", "expected_text": tc.want})
			task.MaxSteps = 10
			tr, err := a.Execute(context.Background(), task)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tr.Steps {
				t.Logf("%v %v %s", s.ActionParams, s.Success, s.ErrorMessage)
			}
			for i, s := range tr.Steps {
				if !s.Success {
					t.Fatalf("step %d failed: %s %s", i, s.ErrorType, s.ErrorMessage)
				}
			}
			if tr.Success != tc.success || !strings.Contains(tr.ErrorMessage, tc.why) {
				t.Fatalf("success=%v %s %q, want %v and %q", tr.Success, tr.ErrorType, tr.ErrorMessage, tc.success, tc.why)
			}
			if _, f := tr.Metadata[core.MetaFlags]; f != tc.flagged {
				t.Errorf("flags %v, want flagged=%v", tr.Metadata[core.MetaFlags], tc.flagged)
			}
		})
	}
}

func TestTypedContains(t *testing.T) {
	for _, tc := range []struct {
		typed []string
		want  string
		in    bool
	}{
		{[]string{"Ada"}, "Thank you, Ada", false},
		{[]string{"first program"}, "First  Program", true},
		{[]string{"first", "program"}, "first program", true},
		{[]string{"first", "program"}, "firstprogram", true},
		{[]string{"second", "program"}, "first program", false},
	} {
		if got := typedContains(tc.typed, tc.want); got != tc.in {
			t.Errorf("typedContains(%q, %q) = %v, want %v", tc.typed, tc.want, got, tc.in)
		}
	}
}

// TestDownloadInTheTrajectory: a download the task's click starts is saved
// beside the trajectory, named by the attempt, and the step's recorded
// observation names it.
func TestDownloadInTheTrajectory(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Files</title><a id="dl" href="/notes" download="notes.txt">notes</a>`)
	})
	mux.HandleFunc("/notes", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "the notes") })
	b := setupSite(t, mux)
	task := webTask("Get the notes", map[string]any{"start_url": b.site + "/", "actions": []map[string]any{
		{"action": "click", "selector": "#dl"}, {"action": "finish", "answer": "done"}}})
	task.SampleIndex = 2
	tr, err := b.agent.Execute(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	name := core.AttemptName(task.TaskID, 2) + ".download-1-notes.txt"
	if !tr.Success || len(tr.Steps) != 3 || !strings.Contains(tr.Steps[1].Observation, "was saved as "+name+" (9 bytes)") {
		t.Fatalf("success=%v %s; click step's observation: %q", tr.Success, tr.ErrorMessage, tr.Steps[1].Observation)
	}
	if got, err := os.ReadFile(filepath.Join(b.dir, name)); err != nil || string(got) != "the notes" {
		t.Fatalf("%s: %q %v", name, got, err)
	}
}
