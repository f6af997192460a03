package localrun_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// docExample is one task line printed in the documentation.
type docExample struct {
	where string // file:line
	line  string
	task  core.TaskSpec
}

// quotedTask is a task printed inside a shell line: echo '{…}' >> file,
// adpctl submit --json '{…}', redis-cli xadd … task '{…}'.
var quotedTask = regexp.MustCompile(`'(\{"task_id".*?\})'`)

// docExamples returns every task the documentation prints: each line of a
// json block (but the trajectory example, which is not a task) and each
// task quoted in a sh block, of README.md and docs/*.md. Each must be one
// valid tasks.jsonl line as printed.
func docExamples(t *testing.T) []docExample {
	t.Helper()
	files := []string{"README.md"}
	docs, _ := filepath.Glob(filepath.Join(testsupport.RepoRoot(t), "docs", "*.md"))
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	var out []docExample
	seen := map[string]bool{}
	add := func(where, line string) {
		if seen[line] {
			return
		}
		seen[line] = true
		task, err := core.ParseTask([]byte(line))
		if err != nil {
			t.Errorf("%s: the example is not a valid tasks.jsonl line: %v\n%s", where, err, line)
			return
		}
		out = append(out, docExample{where, line, task})
	}
	for _, f := range files {
		for _, b := range testsupport.DocBlocks(t, f, "json") {
			if strings.Contains(b.Text, `"schema_version"`) {
				continue // docs/trajectories.md's trajectory
			}
			for i, l := range strings.Split(b.Text, "\n") {
				if strings.TrimSpace(l) != "" {
					add(fmt.Sprintf("%s:%d", f, b.Line+1+i), l)
				}
			}
		}
		for _, b := range testsupport.DocBlocks(t, f, "sh") {
			for _, c := range b.Commands() {
				for _, m := range quotedTask.FindAllStringSubmatch(c, -1) {
					add(fmt.Sprintf("%s:%d", f, b.Line), m[1])
				}
			}
		}
	}
	return out
}

// docBehaviour is what the documentation says an example does.
type docBehaviour struct {
	success bool
	exit    core.ExitReason
	reward  float64 // -1: no reward
}

// Without a model, and with one (the fake server), by task id. An example
// missing from both is an error: its behaviour must be written down here.
var (
	docWithoutModel = map[string]docBehaviour{
		"fib10":          {true, core.ExitRules, 1},
		"add-tested":     {true, core.ExitReplayed, 1},
		"fix-calc":       {true, core.ExitFinished, 1},
		"search":         {true, core.ExitRules, 1},
		"demo_fib":       {true, core.ExitRules, 1},
		"add":            {true, core.ExitReplayed, 1},
		"sum-stdin":      {false, core.ExitNoSource, -1}, // "it needs a model"
		"fix-add":        {true, core.ExitFinished, 1},
		"fix-add-hidden": {true, core.ExitReplayed, 1},
		"contact":        {true, core.ExitReplayed, 1},
		"click-button-3": {true, core.ExitReplayed, 1},
		"appended":       {true, core.ExitRules, 1},
		"submitted":      {true, core.ExitRules, 1},
		"manual_test":    {true, core.ExitRules, -1},
		"hello-world":    {true, core.ExitFinished, 1}, // docs/harbor.md's oracle
	}
	docWithModel = map[string]docBehaviour{
		"sum-stdin": {true, core.ExitAnswered, 1},
		"fib":       {true, core.ExitAnswered, 1}, // 8 sampled attempts
	}
)

// TestDocExamplesAreTaskLines: every task the documentation prints is one
// valid tasks.jsonl line as printed, and its behaviour is written down in
// this file's tables.
func TestDocExamplesAreTaskLines(t *testing.T) {
	examples := docExamples(t)
	if len(examples) < 10 {
		t.Fatalf("found %d examples in the documentation; the extraction is broken", len(examples))
	}
	var ids []string
	for _, e := range examples {
		ids = append(ids, e.task.TaskID)
		_, a := docWithoutModel[e.task.TaskID]
		_, b := docWithModel[e.task.TaskID]
		if !a && !b {
			t.Errorf("%s: example %s has no documented behaviour in docWithoutModel or docWithModel", e.where, e.task.TaskID)
		}
	}
	for _, m := range []map[string]docBehaviour{docWithoutModel, docWithModel} {
		for id := range m {
			if !slices.Contains(ids, id) {
				t.Errorf("the table names %s, which no documentation prints", id)
			}
		}
	}
}

// TestDocExamples runs every example the documentation prints through the
// whole pipeline, as `make run` would run a file of them, and checks that
// each does what the documentation says: without a model, then the ones
// that need a model against the fake model server.
func TestDocExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline twice; skipped with -short")
	}
	examples := docExamples(t)
	bins := testsupport.BuildBinaries(t)
	for _, pass := range []struct {
		name   string
		expect map[string]docBehaviour
		model  bool
	}{{"without a model", docWithoutModel, false}, {"with a model", docWithModel, true}} {
		t.Run(pass.name, func(t *testing.T) {
			var lines []string
			for _, e := range examples {
				if _, ok := pass.expect[e.task.TaskID]; ok {
					lines = append(lines, e.line)
				}
			}
			var env []string
			if pass.model {
				fake := testsupport.StartFakeLLM(t, docModel{}.reply)
				env = []string{"LLM_BASE_URL=" + fake.URL, "LLM_MODEL=doc-model"}
			}
			run := runPipeline(t, bins, []byte(strings.Join(lines, "\n")+"\n"), env)
			for _, tk := range run.tasks {
				want := pass.expect[tk.TaskID]
				for k := range tk.Samples {
					tr, err := trajectory.Read(filepath.Join(run.out, "trajectories", core.TrajectoryFileName(tk.TaskID, k)))
					if err != nil {
						t.Errorf("attempt %d of %s: %v", k, tk.TaskID, err)
						continue
					}
					if tr.Success != want.success || tr.ExitReason != want.exit {
						t.Errorf("%s attempt %d: success %v, exit_reason %s (%s); the documentation says success %v, %s",
							tk.TaskID, k, tr.Success, tr.ExitReason, tr.ErrorMessage, want.success, want.exit)
					}
					switch {
					case want.reward < 0 && tr.Reward != nil:
						t.Errorf("%s: reward %v, want none", tk.TaskID, *tr.Reward)
					case want.reward >= 0 && (tr.Reward == nil || *tr.Reward != want.reward):
						t.Errorf("%s: reward %v, want %v", tk.TaskID, tr.Reward, want.reward)
					}
				}
			}
		})
	}
}

// docModel is the fake model of the documentation's examples: it knows a
// program (or, for web tasks, the page) for each description it is asked
// about, and answers with it, then says it is done.
type docModel struct{}

// docPrograms are the programs docModel writes, by a word of the task's
// description.
var docPrograms = []struct{ about, program string }{
	{"Sum the integers on stdin", "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"},
	{"10th Fibonacci number", "a, b = 0, 1\nfor _ in range(10):\n    a, b = b, a + b\nprint(a)\n"},
	{"20th Fibonacci number", "a, b = 0, 1\nfor _ in range(20):\n    a, b = b, a + b\nprint(a)\n"},
	{"prime numbers below 100", "print([n for n in range(2, 100) if all(n % d for d in range(2, n))])\n"},
	{"factorial of 5", "import math\nprint(math.factorial(5))\n"},
}

// docPages are the pages docModel opens for a web task, by a word of its
// description.
var docPages = []struct{ about, url string }{
	{"Redis Streams", "http://demo-site:8765/article/redis-streams"},
}

func (docModel) reply(req testsupport.FakeLLMRequest, _ int) (int, any) {
	var task string
	turns := 0
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			if task == "" {
				task = m.Content
			}
		case "assistant":
			turns++
		}
	}
	for _, p := range docPrograms {
		if strings.Contains(task, p.about) {
			if turns > 0 {
				return 200, testsupport.AnswerReply("done")
			}
			return 200, testsupport.ToolCallReply("c1", "run_python", map[string]string{"code": p.program})
		}
	}
	for _, p := range docPages {
		if strings.Contains(task, p.about) {
			if turns > 0 {
				return 200, testsupport.ToolCallReply("c2", "finish", map[string]string{"answer": "found it"})
			}
			return 200, testsupport.ToolCallReply("c1", "goto", map[string]string{"url": p.url})
		}
	}
	b, _ := json.Marshal(req.Messages)
	return 400, testsupport.ErrorReply("the documentation's model knows no answer to " + string(b))
}

// TestQuickstartWithModel runs each of the README's "use your own model"
// lines (vLLM, OpenAI, Ollama) as `make run` runs them, with LLM_BASE_URL
// pointing at the fake model server instead of the real one: the shipped
// tasks.jsonl succeeds, every request names the line's model and carries
// its key (and none without one), and the trajectories record the model.
func TestQuickstartWithModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline three times; skipped with -short")
	}
	var lines []string
	for _, b := range testsupport.DocBlocks(t, "README.md", "sh") {
		for _, c := range b.Commands() {
			if strings.HasPrefix(c, "LLM_BASE_URL=") {
				lines = append(lines, c)
			}
		}
	}
	if len(lines) != 3 {
		t.Fatalf("README has %d quickstart lines (LLM_BASE_URL=… make run); want vLLM, OpenAI and Ollama", len(lines))
	}
	bins := testsupport.BuildBinaries(t)
	shipped, err := os.ReadFile(filepath.Join(testsupport.RepoRoot(t), "tasks.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		vars := map[string]string{}
		fields := strings.Fields(line)
		for len(fields) > 0 && strings.Contains(fields[0], "=") {
			k, v, _ := strings.Cut(fields[0], "=")
			vars[k] = v
			fields = fields[1:]
		}
		t.Run(vars["LLM_MODEL"], func(t *testing.T) {
			if strings.Join(fields, " ") != "make run" {
				t.Fatalf("%q: the command is %q, want make run", line, strings.Join(fields, " "))
			}
			for k := range vars {
				if k != "LLM_BASE_URL" && k != "LLM_MODEL" && k != "LLM_API_KEY" {
					t.Errorf("%q sets %s, not one of the three variables", line, k)
				}
			}
			if !strings.HasSuffix(vars["LLM_BASE_URL"], "/v1") || vars["LLM_MODEL"] == "" {
				t.Fatalf("%q: LLM_BASE_URL must end in /v1 and LLM_MODEL name a model", line)
			}
			fake := testsupport.StartFakeLLM(t, docModel{}.reply)
			env := []string{"LLM_BASE_URL=" + fake.URL, "LLM_MODEL=" + vars["LLM_MODEL"]}
			if key, ok := vars["LLM_API_KEY"]; ok {
				env = append(env, "LLM_API_KEY="+key)
			}
			run := runPipeline(t, bins, shipped, env)
			for _, tk := range run.tasks {
				tr, err := trajectory.Read(filepath.Join(run.out, "trajectories", core.TrajectoryFileName(tk.TaskID, 0)))
				if err != nil {
					t.Fatal(err)
				}
				if !tr.Success {
					t.Errorf("%s failed: %s %s", tk.TaskID, tr.ExitReason, tr.ErrorMessage)
				}
				if tr.LLM != nil && tr.LLM.Model != vars["LLM_MODEL"] {
					t.Errorf("%s: llm.model %q, want %q", tk.TaskID, tr.LLM.Model, vars["LLM_MODEL"])
				}
			}
			reqs := fake.Requests()
			if len(reqs) == 0 {
				t.Fatal("no request reached the model")
			}
			wantAuth := ""
			if key, ok := vars["LLM_API_KEY"]; ok {
				wantAuth = "Bearer " + key
			}
			for _, r := range reqs {
				if r.Model != vars["LLM_MODEL"] || r.Header.Get("Authorization") != wantAuth {
					t.Errorf("a request named model %q with Authorization %q; want %q and %q", r.Model, r.Header.Get("Authorization"), vars["LLM_MODEL"], wantAuth)
					break
				}
			}
		})
	}
}
