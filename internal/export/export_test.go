package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

const t0 = 1_760_000_000.0 // a fixed created_at

// openAIRecord is an openai line as a test reads it.
type openAIRecord struct {
	Messages []openAIMessage `json:"messages"`
	Tools    []llm.Tool      `json:"tools"`
}

// sample trajectories, one per case the exporter handles.

func codeTrajectory() *core.Trajectory {
	tr := &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "code_fib", TaskType: core.TaskCode,
		Description: "Print the 10th Fibonacci number", RuntimeID: "sandbox-1",
		Success: true, FinalResult: "55", TotalDuration: 1.5, CreatedAt: t0,
		Metadata: core.Metadata{"source": "llm", "cache_hit": false, "verified": true, "answer": "The 10th Fibonacci number is 55."},
	}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionCodeExecution,
		ActionParams: map[string]any{"code": "print(fib(10))", "language": "python", "purpose": "run", "stdin": "10\n", "exit_code": 1},
		Observation:  "exit_code: 1\nstderr:\nNameError: name 'fib' is not defined",
		ErrorType:    core.ErrRuntime, ErrorMessage: "NameError: name 'fib' is not defined", Timestamp: t0, Duration: 0.2})
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionCodeExecution,
		ActionParams: map[string]any{"code": "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\nif 1 < 2 and 3 > 2:\n    print(fib(10))", "language": "python", "purpose": "run", "stdin": "10\n", "exit_code": 0},
		Observation:  "exit_code: 0\nstdout:\n55\n", Success: true, Timestamp: t0 + 0.3, Duration: 0.2})
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionCodeExecution,
		ActionParams: map[string]any{"code": "...\nassert fib(10) == 55", "language": "python", "purpose": "verify", "exit_code": 0},
		Observation:  "exit_code: 0\nstdout:\n55\n", Success: true, Timestamp: t0 + 0.6, Duration: 0.2})
	return tr
}

func webTrajectory() *core.Trajectory {
	tr := &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "web_search", TaskType: core.TaskWeb,
		Description: `Find the title of the "Go" <article>`, RuntimeID: "web-1",
		Success: true, FinalResult: "The Go Programming Language", TotalDuration: 4, CreatedAt: t0 + 61,
		Metadata: core.Metadata{"source": "llm", "cache_hit": false},
	}
	step := func(params map[string]any, obs string) {
		tr.AddStep(core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params, Observation: obs, Success: true})
	}
	step(map[string]any{"action": "goto", "url": "http://127.0.0.1:8080/"}, "Demo search\n<form> Search: [____]")
	step(map[string]any{"action": "fill", "selector": "#q", "text": "golang"}, "filled")
	step(map[string]any{"action": "press", "selector": "#q", "key": "Enter"}, "Results for golang — 3 hits")
	step(map[string]any{"action": "extract", "selector": "h2.title"}, "The Go Programming Language")
	step(map[string]any{"action": "finish", "answer": "The Go Programming Language"}, "finished")
	return tr
}

func llmFailureTrajectory() *core.Trajectory {
	tr := &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "code_llm_down", TaskType: core.TaskCode,
		Description: "Print primes below 100", ErrorType: core.ErrNetwork, ErrorMessage: "llm: connection refused",
		TotalDuration: 0.1, CreatedAt: t0 + 62, Metadata: core.Metadata{"source": "llm"},
	}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionToolCall, ActionParams: map[string]any{"tool": "llm"},
		ErrorType: core.ErrNetwork, ErrorMessage: "llm: connection refused"})
	return tr
}

func webFailureTrajectory() *core.Trajectory {
	tr := &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "web_blocked", TaskType: core.TaskWeb,
		Description: "Open the admin page", ErrorType: core.ErrBlockedURL, ErrorMessage: "blocked: http://169.254.169.254/",
		TotalDuration: 2, CreatedAt: t0 + 125, Metadata: core.Metadata{},
	}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: map[string]any{"action": "goto", "url": "http://127.0.0.1:8080/"},
		Observation: "Home", Success: true})
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: map[string]any{"action": "goto", "url": "http://169.254.169.254/"},
		ErrorType: core.ErrBlockedURL, ErrorMessage: "blocked: http://169.254.169.254/"})
	return tr
}

func reasoningTrajectory() *core.Trajectory {
	return &core.Trajectory{
		SchemaVersion: core.SchemaVersion, TaskID: "reason_answer", TaskType: core.TaskReasoning,
		Description: "What is 6 times 7?", Success: true, FinalResult: "42", TotalDuration: 0.5, CreatedAt: t0 + 126,
		Steps: []core.ExecutionStep{}, Metadata: core.Metadata{"source": "llm"},
	}
}

type fixture struct {
	dir string
}

// setup writes the sample trajectories, an invalid file, a file without a
// task_id, and files that must be ignored.
func setup(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	w, err := trajectory.NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*core.Trajectory{codeTrajectory(), webTrajectory(), llmFailureTrajectory(), webFailureTrajectory(), reasoningTrajectory()} {
		if err := w.Write(tr); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"broken.json":         `{"task_id": "broken", "steps": [`,
		"no_task.json":        `{"success": true}`,
		".tmp-x.json-123":     `{"partial`,
		".hidden.json":        `{"partial`,
		"notes.txt":           "not a trajectory",
		"sub.json/inner.json": `{}`,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fixture{dir: dir}
}

func export(t *testing.T, dir string, f Format, opts Options) ([][]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := Write(&buf, dir, f, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if len(lines) != sum.Written {
		t.Errorf("%d lines, Summary.Written = %d", len(lines), sum.Written)
	}
	return lines, sum
}

// roundTrip decodes a line and encodes it again: the result must decode to
// the same value.
func roundTrip(t *testing.T, line []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var w map[string]any
	if err := json.Unmarshal(again, &w); err != nil || !reflect.DeepEqual(v, w) {
		t.Fatalf("round trip changed the record: %v", err)
	}
	return v
}

func TestWriteSummary(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	for _, f := range Formats {
		_, sum := export(t, fx.dir, f, Options{})
		if sum.Files != 7 || sum.Written != 4 || sum.Empty != 1 || sum.Filtered != 0 || len(sum.Invalid) != 2 {
			t.Errorf("%s: summary %+v; want 7 files, 4 written, 1 empty, 2 invalid", f, sum)
		}
		for _, inv := range sum.Invalid {
			base := filepath.Base(inv.Path)
			if base != "broken.json" && base != "no_task.json" {
				t.Errorf("%s: unexpected invalid file %s", f, inv)
			}
			if inv.Err == "" || strings.Contains(inv.Err, fx.dir) {
				t.Errorf("%s: error of %s should state the cause once, without the path: %q", f, base, inv.Err)
			}
		}
		_, sum = export(t, fx.dir, f, Options{OnlySuccess: true})
		if sum.Written != 3 || sum.Filtered != 2 || sum.Empty != 0 {
			t.Errorf("%s --only-success: summary %+v; want 3 written, 2 filtered", f, sum)
		}
	}
}

func TestWriteIsDeterministicAndSorted(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	for _, f := range Formats {
		var a, b bytes.Buffer
		if _, err := Write(&a, fx.dir, f, Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Write(&b, fx.dir, f, Options{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: two exports differ", f)
		}
	}
	lines, _ := export(t, fx.dir, FormatOpenAI, Options{})
	var users []string
	for _, l := range lines {
		v := roundTrip(t, l)
		users = append(users, v["messages"].([]any)[1].(map[string]any)["content"].(string))
	}
	// file order: code_fib, reason_answer, web_blocked, web_search
	want := []string{"Fibonacci", "6 times 7", "admin page", `"Go" <article>`}
	for i, w := range want {
		if i >= len(users) || !strings.Contains(users[i], w) {
			t.Errorf("line %d: user message %q, want it to mention %q (file-name order)", i, users, w)
		}
	}
}

func TestOpenAIRecords(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	lines, _ := export(t, fx.dir, FormatOpenAI, Options{})
	for i, line := range lines {
		if err := ValidateOpenAI(line); err != nil {
			t.Errorf("line %d invalid: %v\n%s", i, err, line)
		}
		roundTrip(t, line)
	}

	var rec openAIRecord
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatal(err)
	}
	roles := func(r openAIRecord) string {
		var s []string
		for _, m := range r.Messages {
			s = append(s, m.Role)
		}
		return strings.Join(s, ",")
	}
	// code_fib: two runs (the verify step is not a model action), the answer.
	if got, want := roles(rec), "system,user,assistant,tool,assistant,tool,assistant"; got != want {
		t.Errorf("code roles = %s, want %s", got, want)
	}
	if !strings.Contains(rec.Messages[1].Content, "standard input will be:\n10\n") {
		t.Errorf("user message lacks the stdin: %q", rec.Messages[1].Content)
	}
	call := rec.Messages[4].ToolCalls[0]
	var args map[string]any
	if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil {
		t.Fatal(err)
	}
	if call.Function.Name != "run_python" || len(args) != 1 || !strings.Contains(args["code"].(string), "if 1 < 2 and 3 > 2") {
		t.Errorf("second call = %+v; want run_python with only the code", call)
	}
	if !bytes.Contains(lines[0], []byte(`1 < 2 and 3 > 2`)) {
		t.Error("'<' and '>' are HTML-escaped in the output; want them readable")
	}
	if rec.Messages[4].ToolCalls[0].ID != rec.Messages[5].ToolCallID {
		t.Error("tool message does not answer the call before it")
	}
	if !strings.Contains(rec.Messages[3].Content, "NameError") {
		t.Errorf("failed run's observation = %q", rec.Messages[3].Content)
	}
	if got := rec.Messages[6].Content; got != "The 10th Fibonacci number is 55." {
		t.Errorf("final answer = %q, want metadata.answer", got)
	}
	if len(rec.Tools) != 1 || rec.Tools[0].Function.Name != "run_python" {
		t.Errorf("code tools = %+v, want run_python only", rec.Tools)
	}

	// web_search: the initial goto is the first observation, in the user message.
	if err := json.Unmarshal(lines[3], &rec); err != nil {
		t.Fatal(err)
	}
	if got, want := roles(rec), "system,user"+strings.Repeat(",assistant,tool", 4)+",assistant"; got != want {
		t.Errorf("web roles = %s, want %s", got, want)
	}
	if u, want := rec.Messages[1].Content, prompt.WebUser(`Find the title of the "Go" <article>`, "Demo search\n<form> Search: [____]", true); u != want {
		t.Errorf("user message = %q, want the web agent's prompt with the first observation %q", u, want)
	}
	var names []string
	for _, m := range rec.Messages {
		for _, c := range m.ToolCalls {
			names = append(names, c.Function.Name+c.Function.Arguments)
		}
	}
	want := []string{`fill{"selector":"#q","text":"golang"}`, `press{"key":"Enter","selector":"#q"}`,
		`extract{"selector":"h2.title"}`, `finish{"answer":"The Go Programming Language"}`}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("web calls = %q, want %q", names, want)
	}
	var toolNames []string
	for _, tl := range rec.Tools {
		toolNames = append(toolNames, tl.Function.Name)
	}
	var webTools []string
	for _, tl := range prompt.WebTools {
		webTools = append(webTools, tl.Function.Name)
	}
	if got, want := strings.Join(toolNames, ","), strings.Join(webTools, ","); got != want {
		t.Errorf("web tools = %s, want the web agent's %s", got, want)
	}

	// web_blocked: a failed model action, and a final message saying so.
	if err := json.Unmarshal(lines[2], &rec); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Messages); n != 5 || !strings.Contains(rec.Messages[3].Content, "error: blocked_url: blocked") ||
		!strings.Contains(rec.Messages[4].Content, "could not complete the task (blocked_url)") {
		t.Errorf("web failure record = %+v", rec.Messages)
	}

	// reason_answer: no tool call at all.
	if err := json.Unmarshal(lines[1], &rec); err != nil {
		t.Fatal(err)
	}
	if got := roles(rec); got != "system,user,assistant" || rec.Messages[2].Content != "42" {
		t.Errorf("reasoning record = %s %+v", got, rec.Messages)
	}
}

func TestShareGPTRecords(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	lines, _ := export(t, fx.dir, FormatShareGPT, Options{})
	for i, line := range lines {
		if err := ValidateShareGPT(line); err != nil {
			t.Errorf("line %d invalid: %v\n%s", i, err, line)
		}
		roundTrip(t, line)
		if !llamaFactoryAccepts(t, line) {
			t.Errorf("line %d would be dropped by LLaMA-Factory's converter:\n%s", i, line)
		}
	}
	var rec shareGPTRecord
	if err := json.Unmarshal(lines[3], &rec); err != nil { // web_search
		t.Fatal(err)
	}
	var froms []string
	for _, m := range rec.Conversations {
		froms = append(froms, m.From)
	}
	if got, want := strings.Join(froms, ","), "human"+strings.Repeat(",function_call,observation", 4)+",gpt"; got != want {
		t.Errorf("roles = %s, want %s", got, want)
	}
	if got, want := rec.Conversations[1].Value, `{"name":"fill","arguments":{"selector":"#q","text":"golang"}}`; got != want {
		t.Errorf("function_call value = %s, want %s", got, want)
	}
	if rec.System == "" || !strings.Contains(rec.Conversations[0].Value, "Demo search") {
		t.Errorf("system %q / human %q", rec.System, rec.Conversations[0].Value)
	}
	var tools []map[string]any
	if err := json.Unmarshal([]byte(rec.Tools), &tools); err != nil || len(tools) != len(prompt.WebTools) || tools[0]["name"] != "goto" {
		t.Errorf("tools = %s (%v)", rec.Tools, err)
	}
	if rec.Conversations[len(rec.Conversations)-1].Value != "The Go Programming Language" {
		t.Errorf("final gpt = %q", rec.Conversations[len(rec.Conversations)-1].Value)
	}
}

// llamaFactoryAccepts replays SharegptDatasetConverter's checks
// (src/llamafactory/data/converter.py): optional leading system message,
// then user/observation tags at even indexes and assistant/function tags at
// odd ones, an even count; and the function formatter's json.loads of a
// function_call value and of tools.
func llamaFactoryAccepts(t *testing.T, line []byte) bool {
	t.Helper()
	var ex map[string]any
	if err := json.Unmarshal(line, &ex); err != nil {
		return false
	}
	msgs, _ := ex["conversations"].([]any)
	if len(msgs) > 0 && msgs[0].(map[string]any)["from"] == "system" {
		msgs = msgs[1:]
	}
	accept := [2][]string{{"human", "observation"}, {"gpt", "function_call"}}
	for i, m := range msgs {
		mm := m.(map[string]any)
		from, _ := mm["from"].(string)
		if !contains(accept[i%2], from) {
			return false
		}
		if _, ok := mm["value"].(string); !ok {
			return false
		}
		if from == "function_call" {
			var fc struct {
				Name      string         `json:"name"`
				Arguments map[string]any `json:"arguments"`
			}
			if json.Unmarshal([]byte(mm["value"].(string)), &fc) != nil || fc.Name == "" {
				return false
			}
		}
	}
	if tools, ok := ex["tools"].(string); ok && tools != "" {
		var v []any
		if json.Unmarshal([]byte(tools), &v) != nil {
			return false
		}
	}
	return len(msgs)%2 == 0 && len(msgs) > 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	if _, err := Write(&bytes.Buffer{}, fx.dir, "jsonl", Options{}); err == nil || !strings.Contains(err.Error(), "openai or sharegpt") {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := Write(&bytes.Buffer{}, filepath.Join(fx.dir, "missing"), FormatOpenAI, Options{}); err == nil {
		t.Error("missing directory: no error")
	}
	if _, err := Write(failingWriter{}, fx.dir, FormatOpenAI, Options{}); err == nil {
		t.Error("failed write: no error")
	}
	if _, err := ParseFormat("sharegpt"); err != nil {
		t.Error(err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestRecordUnexportable(t *testing.T) {
	t.Parallel()
	tr := webTrajectory()
	tr.Steps[1].ActionParams["action"] = "fill and submit" // not a legal function name
	if _, err := Record(tr, FormatOpenAI, Options{}); err == nil || !strings.Contains(err.Error(), "cannot be exported") {
		t.Errorf("Record = %v, want a validation error", err)
	}
}

// TestRecordToolsAreTheAgents checks that a record of a trajectory without
// a recorded exchange offers the agents' own tools, byte for byte, with the
// calls' arguments cut to what those declare; a tool no agent offers is
// declared from its calls.
func TestRecordToolsAreTheAgents(t *testing.T) {
	t.Parallel()
	tr := webTrajectory()
	tr.Steps[3].ActionParams["screenshot"] = "web_search.step-4.png"
	tr.Steps = append(tr.Steps, core.ExecutionStep{ActionType: core.ActionToolCall,
		ActionParams: map[string]any{"tool": "calculator", "arguments": map[string]any{"expr": "1+1"}}, Observation: "2", Success: true})
	line, err := Record(tr, FormatOpenAI, Options{SystemPrompt: "custom"})
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Messages []struct {
			Role      string `json:"role"`
			Content   string `json:"content"`
			ToolCalls []struct {
				Function struct{ Name, Arguments string } `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []json.RawMessage `json:"tools"`
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Messages[0].Content != "custom" {
		t.Errorf("system = %q, want the option", rec.Messages[0].Content)
	}
	for _, m := range rec.Messages {
		for _, c := range m.ToolCalls {
			if c.Function.Name == "extract" && c.Function.Arguments != `{"selector":"h2.title"}` {
				t.Errorf("extract arguments = %s, want only the declared selector", c.Function.Arguments)
			}
		}
	}
	byName := map[string]string{}
	for _, raw := range rec.Tools {
		var tl struct {
			Function struct{ Name string } `json:"function"`
		}
		if err := json.Unmarshal(raw, &tl); err != nil {
			t.Fatal(err)
		}
		byName[tl.Function.Name] = string(raw)
	}
	for _, want := range prompt.WebTools {
		b, _ := json.Marshal(want)
		if got := byName[want.Function.Name]; canonical(t, got) != canonical(t, string(b)) {
			t.Errorf("tool %s = %s, want the web agent's %s", want.Function.Name, got, b)
		}
	}
	if got := byName["calculator"]; !strings.Contains(got, `"expr":{"type":"string"}`) {
		t.Errorf("calculator = %s, want a schema declaring expr", got)
	}
}

// canonical re-encodes a JSON text, so that two encodings of one value
// (escaped '<' or not) compare equal.
func canonical(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRecordedContentParts: a recorded message whose content is a list of
// parts (a WEB_VISION request's screenshot) is read as its text parts, not
// an error.
func TestRecordedContentParts(t *testing.T) {
	var m wireMessage
	raw := `{"role":"user","content":[{"type":"text","text":"the page"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}`
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m.Content != "the page" {
		t.Fatalf("content %q, err %v", m.Content, err)
	}
	if err := json.Unmarshal([]byte(`{"role":"user","content":"plain"}`), &m); err != nil || m.Content != "plain" {
		t.Fatalf("content %q, err %v", m.Content, err)
	}
	if err := json.Unmarshal([]byte(`{"role":"user","content":7}`), &m); err == nil {
		t.Fatal("a number accepted as content")
	}
}
