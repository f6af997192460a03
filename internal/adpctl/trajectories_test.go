package adpctl

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/export"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

func writeTrajectories(t *testing.T, dir string) {
	t.Helper()
	w, err := trajectory.NewWriter(filepath.Join(dir, "trajectories"))
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range []bool{true, true, false} {
		tr := core.NewTrajectory(core.TaskSpec{TaskID: "t" + string(rune('a'+i)), TaskType: core.TaskCode, Description: "print 4"}, "sandbox-x-1")
		step := core.ExecutionStep{ActionType: core.ActionCodeExecution, ActionParams: map[string]any{"code": "print(4)", "purpose": "run"}, Observation: "exit_code: 0\nstdout:\n4\n", Success: ok}
		if !ok {
			step.ErrorType = core.ErrRuntime
			tr.Fail(core.ErrRuntime, "boom")
		} else {
			tr.Success, tr.FinalResult = true, "4"
		}
		tr.AddStep(step)
		tr.TotalDuration = 0.5
		if err := w.Write(tr); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExportStatsReport(t *testing.T) {
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	writeTrajectories(t, c.env.OutputDir)

	for _, f := range []struct {
		format   string
		validate func([]byte) error
	}{{"openai", export.ValidateOpenAI}, {"sharegpt", export.ValidateShareGPT}} {
		code, out, errs := c.run("", "export", "--format", f.format, "--only-success")
		if code != 0 {
			t.Fatalf("export %s: %d %s", f.format, code, errs)
		}
		lines := 0
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines++
			if err := f.validate(sc.Bytes()); err != nil {
				t.Errorf("%s line %d invalid: %v", f.format, lines, err)
			}
		}
		if lines != 2 {
			t.Errorf("%s: %d lines, want the 2 successful trajectories", f.format, lines)
		}
	}
	out := filepath.Join(c.env.OutputDir, "train.jsonl")
	if code, _, errs := c.run("", "export", "--format", "openai", "--out", out); code != 0 {
		t.Fatalf("export --out: %s", errs)
	}
	if b, err := os.ReadFile(out); err != nil || strings.Count(string(b), "\n") != 3 {
		t.Errorf("export --out wrote %q, %v", b, err)
	}
	if code, _, _ := c.run("", "export", "--format", "alpaca"); code != 2 {
		t.Errorf("unknown format: exit %d, want 2", code)
	}

	code, js, errs := c.run("", "stats", "--json")
	if code != 0 {
		t.Fatalf("stats: %s", errs)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("stats --json: %v", err)
	}
	if !strings.Contains(js, `"runtime_error"`) {
		t.Errorf("stats lacks the failure by error type: %s", js)
	}
	if code, txt, _ := c.run("", "stats"); code != 0 || !strings.Contains(txt, "code") {
		t.Errorf("stats table: %s", txt)
	}

	html := filepath.Join(c.env.OutputDir, "report.html")
	if code, _, errs := c.run("", "report", "--out", html); code != 0 {
		t.Fatalf("report: %s", errs)
	}
	b, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("report is not an HTML page with charts: %v", err)
	}
}

func TestTrajectoryDirResolution(t *testing.T) {
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	writeTrajectories(t, c.env.OutputDir)
	// --dir may name the OUTPUT_DIR as well as its trajectories/.
	for _, dir := range []string{c.env.OutputDir, filepath.Join(c.env.OutputDir, "trajectories")} {
		code, out, errs := c.run("", "export", "--format", "openai", "--dir", dir)
		if code != 0 || strings.Count(out, "\n") != 3 {
			t.Errorf("export --dir %s: exit %d, %d lines (%s)", dir, code, strings.Count(out, "\n"), errs)
		}
	}
	empty := t.TempDir()
	for _, cmd := range [][]string{
		{"export", "--format", "openai", "--dir", empty},
		{"stats", "--dir", empty},
		{"report", "--out", filepath.Join(empty, "r.html"), "--dir", empty},
	} {
		code, _, errs := c.run("", cmd...)
		if code == 0 || !strings.Contains(errs, "no trajectory files in "+empty) {
			t.Errorf("%v on an empty directory: exit %d, stderr %q; want a failure naming the directory", cmd, code, errs)
		}
	}
}

// A sharegpt export to a file gets LLaMA-Factory's dataset_info.json entry
// beside it (other entries kept), naming the columns the records have and
// the roles they use; to stdout the entry is printed.
func TestExportShareGPTDatasetInfo(t *testing.T) {
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	writeTrajectories(t, c.env.OutputDir)
	dataDir := t.TempDir()
	info := filepath.Join(dataDir, "dataset_info.json")
	if err := os.WriteFile(info, []byte(`{"other": {"file_name": "other.json"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dataDir, "adp_train.jsonl")
	code, _, errs := c.run("", "export", "--format", "sharegpt", "--out", out)
	if code != 0 || !strings.Contains(errs, `dataset "adp_train"`) {
		t.Fatalf("export: %d %s", code, errs)
	}
	var entries map[string]struct {
		FileName   string            `json:"file_name"`
		Formatting string            `json:"formatting"`
		Columns    map[string]string `json:"columns"`
		Tags       map[string]string `json:"tags"`
	}
	b, err := os.ReadFile(info)
	if err != nil || json.Unmarshal(b, &entries) != nil {
		t.Fatalf("dataset_info.json: %v\n%s", err, b)
	}
	e, ok := entries["adp_train"]
	if _, kept := entries["other"]; !ok || !kept || e.FileName != "adp_train.jsonl" || e.Formatting != "sharegpt" {
		t.Fatalf("dataset_info.json = %s", b)
	}
	// LLaMA-Factory's loader reads the columns named by the entry and the
	// messages' role and content by its tags: every record has them.
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]bool{}
	for tag, v := range e.Tags {
		if strings.HasSuffix(tag, "_tag") && tag != "role_tag" && tag != "content_tag" {
			roles[v] = true
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		for _, col := range []string{"messages", "system", "tools"} {
			if _, ok := rec[e.Columns[col]]; !ok {
				t.Errorf("record %d lacks column %s (%q)", i, col, e.Columns[col])
			}
		}
		var msgs []map[string]string
		if err := json.Unmarshal(rec[e.Columns["messages"]], &msgs); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, ok := m[e.Tags["content_tag"]]; !ok || !roles[m[e.Tags["role_tag"]]] {
				t.Errorf("record %d: message %v has a role or content the tags do not name", i, m)
			}
		}
	}
	code, _, errs = c.run("", "export", "--format", "sharegpt")
	if code != 0 || !strings.Contains(errs, "dataset_info.json") || !strings.Contains(errs, `"tools": "tools"`) {
		t.Errorf("export to stdout: %d, stderr lacks the entry:\n%s", code, errs)
	}
}

// --trace adds each record's task and attempt; --trace-file writes them
// line for line beside records that stay exactly the format's.
func TestExportTrace(t *testing.T) {
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	writeTrajectories(t, c.env.OutputDir)
	for _, f := range []struct {
		format   string
		validate func([]byte) error
	}{{"openai", export.ValidateOpenAI}, {"sharegpt", export.ValidateShareGPT}} {
		code, plain, errs := c.run("", "export", "--format", f.format)
		if code != 0 {
			t.Fatalf("export: %s", errs)
		}
		code, withTrace, errs := c.run("", "export", "--format", f.format, "--trace")
		if code != 0 {
			t.Fatalf("export --trace: %s", errs)
		}
		traceFile := filepath.Join(t.TempDir(), "trace.jsonl")
		code, sidecar, errs := c.run("", "export", "--format", f.format, "--trace-file", traceFile)
		if code != 0 || sidecar != plain {
			t.Fatalf("export --trace-file: %d %s; records changed: %v", code, errs, sidecar != plain)
		}
		traces, err := os.ReadFile(traceFile)
		if err != nil {
			t.Fatal(err)
		}
		plainLines := strings.Split(strings.TrimSpace(plain), "\n")
		tracedLines := strings.Split(strings.TrimSpace(withTrace), "\n")
		traceLines := strings.Split(strings.TrimSpace(string(traces)), "\n")
		if len(tracedLines) != len(plainLines) || len(traceLines) != len(plainLines) || len(plainLines) != 3 {
			t.Fatalf("%s: %d plain, %d traced, %d trace lines", f.format, len(plainLines), len(tracedLines), len(traceLines))
		}
		for i, line := range tracedLines {
			var rec map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatal(err)
			}
			var tr export.Trace
			if err := json.Unmarshal(rec[export.TraceKey], &tr); err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			id := []string{"ta", "tb", "tc"}[i]
			want := export.Trace{TaskID: id, TaskType: core.TaskCode, SampleIndex: 0, File: id + ".json"}
			if tr != want || strings.TrimSpace(traceLines[i]) != string(rec[export.TraceKey]) {
				t.Errorf("line %d: trace %+v (file %s), want %+v", i, tr, traceLines[i], want)
			}
			// The record beside the trace is the plain one, which the
			// strict validator accepts; with the key it does not.
			delete(rec, export.TraceKey)
			var plainRec map[string]json.RawMessage
			if err := json.Unmarshal([]byte(plainLines[i]), &plainRec); err != nil {
				t.Fatal(err)
			}
			if len(rec) != len(plainRec) {
				t.Errorf("line %d: keys besides the trace %d, plain %d", i, len(rec), len(plainRec))
			}
			if f.validate([]byte(plainLines[i])) != nil || f.validate([]byte(line)) == nil {
				t.Errorf("line %d: validator accepts plain %v, traced %v", i, f.validate([]byte(plainLines[i])), f.validate([]byte(line)))
			}
		}
	}
	if code, _, _ := c.run("", "export", "--format", "groups", "--trace"); code == 0 {
		t.Error("groups --trace accepted")
	}
}
