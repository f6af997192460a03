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
