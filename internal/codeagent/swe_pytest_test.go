package codeagent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The real repository of the SWE-style tests: iso8601 1.0.2
// (https://github.com/micktwomey/pyiso8601, MIT), as Debian's
// python3-iso8601 installs it, its pytest suite (parametrize,
// pytest.raises) included.
const (
	sweRepoPackage = "python3-iso8601"
	sweSource      = "iso8601/iso8601.py"
	sweUpstream    = "iso8601/test_iso8601.py"
	// The bug setup plants: negative offsets lose the sign of their minutes.
	sweGood = "        hours = -hours\n        minutes = -minutes\n"
	sweBad  = "        hours = -hours\n"
)

// sweRepo returns the repository's files without its tests, and the
// hidden test file: upstream's, importing the package rather than a
// sibling module, without the tests that need hypothesis (not in the
// image).
func sweRepo(t *testing.T) (repo map[string]string, hidden string) {
	t.Helper()
	files := testsupport.DebianPythonPackage(t, sweRepoPackage)
	repo = map[string]string{}
	for name, data := range files {
		if name != sweUpstream {
			repo[name] = string(data)
		}
	}
	test, ok := files[sweUpstream]
	if !ok || !strings.Contains(repo[sweSource], sweGood) {
		t.Skipf("%s is not iso8601 1.0.2's layout (no %s, or %s has changed)", sweRepoPackage, sweUpstream, sweSource)
	}
	var keep []string
	for _, line := range strings.SplitAfter(string(test), "\n") {
		if strings.HasPrefix(line, "@hypothesis.") {
			break // the property tests come last
		}
		if strings.HasPrefix(line, "import hypothesis") {
			continue
		}
		if line == "from . import iso8601\n" {
			line = "from iso8601 import iso8601\n"
		}
		keep = append(keep, line)
	}
	hidden = strings.Join(keep, "")
	for _, want := range []string{"import pytest\n", "@pytest.mark.parametrize", "pytest.raises", "FixedOffset(-5, -30"} {
		if !strings.Contains(hidden, want) {
			t.Fatalf("the hidden tests lack %q", want)
		}
	}
	return repo, hidden
}

// sweDocTask is docs/environments.md's SWE-style task line as printed;
// the test fills in what it elides (the files' contents, setup, actions).
func sweDocTask(t *testing.T) core.TaskSpec {
	t.Helper()
	for _, b := range testsupport.DocBlocks(t, "docs/environments.md", "text") {
		if !strings.Contains(b.Text, `"iso8601-tz-minutes"`) {
			continue
		}
		tk, err := core.ParseTask([]byte(strings.TrimSpace(b.Text)))
		if err != nil {
			t.Fatalf("docs/environments.md:%d: %v", b.Line, err)
		}
		return tk
	}
	t.Fatal("docs/environments.md prints no SWE-style task line (iso8601-tz-minutes)")
	return core.TaskSpec{}
}

// The cheats: a conftest.py that reports every test passed, and the
// same hook as a pytest plugin the workspace declares through an entry
// point (pytest loads every installed distribution's pytest11 plugins).
const (
	forcePass = "import pytest\n\n@pytest.hookimpl(hookwrapper=True)\ndef pytest_runtest_makereport(item, call):\n    out = yield\n    out.get_result().outcome = \"passed\"\n"
	cheatMeta = "Metadata-Version: 2.1\nName: cheat\nVersion: 1.0\n"
	cheatEP   = "[pytest11]\ncheat = cheat_plugin\n"
)

// TestSWEPytest: a SWE-style task on a real repository (iso8601) in an
// image with pytest: setup plants a bug, the hidden upstream pytest suite
// at /tests checks the agent's fix; a right fix is rewarded 1, a wrong
// fix, no change and cheats that make pytest report passes 0; the right
// fix's patch applies with git apply to the state after setup and gives
// back upstream's file. The task is docs/environments.md's line, its
// elided contents filled in. Under every jail.
func TestSWEPytest(t *testing.T) {
	repo, hidden := sweRepo(t)
	// pytest.tar: PythonBaseLayer, ToolsLayer and PytestLayer.
	store := archiveStore(t, map[string]string{
		"pytest.tar": testsupport.PytestImageArchive(t, "test/pytest:1", v1.Config{Env: []string{"PATH=/usr/bin:/bin"}})})
	gitPath, gitErr := exec.LookPath("git")
	files := map[string]any{}
	for name, body := range repo {
		files[name] = body
	}
	setup := `python3 -c "
import pathlib
p = pathlib.Path('` + sweSource + `')
s = p.read_text()
assert s.count('minutes = -minutes\n') == 1
p.write_text(s.replace('        minutes = -minutes\n', ''))
"`
	backends(t, func(t *testing.T, j sandbox.Jail) {
		a := wsAgent(t, j, store)
		edit := func(newText string) map[string]any {
			return map[string]any{"action": "edit_file", "path": sweSource, "old": sweBad, "new": newText}
		}
		write := func(path, content string) map[string]any {
			return map[string]any{"action": "write_file", "path": path, "content": content}
		}
		for _, tc := range []struct {
			name    string
			acts    []map[string]any
			success bool
		}{
			{"right fix", []map[string]any{edit(sweGood)}, true},
			// Negates the minutes of every offset: -05:30 passes, +02:30 fails.
			{"wrong fix", []map[string]any{edit(sweBad + "    minutes = -minutes\n")}, false},
			{"no change", nil, false},
			{"conftest forces passes", []map[string]any{write("conftest.py", forcePass), write("iso8601/conftest.py", forcePass)}, false},
			{"entry-point plugin forces passes", []map[string]any{
				write("cheat_plugin.py", forcePass),
				write("cheat-1.0.dist-info/METADATA", cheatMeta),
				write("cheat-1.0.dist-info/entry_points.txt", cheatEP),
			}, false},
			{"pytest.ini names a plugin", []map[string]any{
				write("cheat_plugin.py", forcePass),
				write("pytest.ini", "[pytest]\naddopts = -p cheat_plugin\n"),
			}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var acts []map[string]any
				acts = append(acts, map[string]any{"action": "bash", "command": "python3 -m pytest --version && ls iso8601"})
				acts = append(acts, tc.acts...)
				acts = append(acts, map[string]any{"action": "finish"})
				tk := sweDocTask(t)
				c := map[string]any{}
				for k, v := range tk.Constraints {
					c[k] = v
				}
				c["files"], c["setup"], c["actions"] = files, []any{setup}, actions(acts...)
				c["test_files"] = map[string]any{"test_iso8601.py": hidden}
				tk.Constraints, tk.MaxSteps = c, 8
				tr, err := a.Execute(context.Background(), tk)
				if err != nil {
					t.Fatal(err)
				}
				verify := tr.Steps[len(tr.Steps)-1]
				if tr.Success != tc.success {
					t.Fatalf("success %v, want %v (%s: %s; steps %v)\nverify: %s", tr.Success, tc.success, tr.ErrorType, tr.ErrorMessage, stepTools(tr), verify.Observation)
				}
				want := 0.0
				if tc.success {
					want = 1
				}
				if tr.Reward == nil || *tr.Reward != want {
					t.Errorf("reward %v, want %v", tr.Reward, want)
				}
				if !tc.success && tr.ErrorType != core.ErrWrongAnswer {
					t.Errorf("error type %q, want wrong_answer (%s)", tr.ErrorType, tr.ErrorMessage)
				}
				// The hidden suite ran under pytest: its parametrized cases
				// pass or fail by the fix, not by an import error.
				if obs := verify.Observation; tc.success && !strings.Contains(obs, " passed") ||
					!tc.success && !strings.Contains(obs, "test_parse_valid_date[") {
					t.Errorf("the verify step's output is not pytest's verdict on the fix:\n%s", obs)
				}
				if !tc.success || gitErr != nil {
					return
				}
				// The patch applies to the state after setup (the bug
				// planted) and gives back upstream's source.
				diff, _ := tr.Metadata[core.MetaWorkspaceDiff].(string)
				if !strings.Contains(diff, "+        minutes = -minutes\n") {
					t.Fatalf("the patch is not the fix:\n%s", diff)
				}
				dir := t.TempDir()
				for name, body := range repo {
					if name == sweSource {
						body = strings.Replace(body, sweGood, sweBad, 1)
					}
					if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmd := exec.Command(gitPath, "apply", "--binary", "-")
				cmd.Dir, cmd.Stdin = dir, strings.NewReader(diff)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git apply: %v: %s\n%s", err, out, diff)
				}
				got, err := os.ReadFile(filepath.Join(dir, sweSource))
				if err != nil || string(got) != repo[sweSource] {
					t.Errorf("after git apply, %s is not upstream's (%v):\n%s", sweSource, err, got)
				}
			})
		}
	})
}
