package adpctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// harborFolder is a Harbor task folder whose check wants hi in
// hello.txt, with test.sh and solve.sh as given.
func harborFolder(test, solve string) map[string]string {
	return map[string]string{
		"instruction.md":         "Write hi to hello.txt.\n",
		"task.toml":              "[verifier]\ntimeout_sec = 30.0\n[agent]\ntimeout_sec = 30.0\n[environment]\ncpus = 1\nmemory_mb = 2048\n",
		"environment/Dockerfile": "FROM debian:bookworm-slim\n",
		"tests/test.sh":          test,
		"solution/solve.sh":      solve,
	}
}

const (
	harborTest  = "#!/bin/bash\nif [ \"$(cat /workspace/hello.txt 2>/dev/null)\" = hi ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n"
	harborSolve = "#!/bin/bash\nset -e\necho hi > hello.txt\n"
)

// backends are the jails present on this machine.
func backends(t *testing.T) []string {
	var out []string
	for _, b := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		if _, err := sandbox.New(b, sandbox.Config{}); err == nil {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Skip("no jail on this machine (run scripts/bootstrap.sh --test)")
	}
	return out
}

// TestValidate: a dataset of one good task, one whose oracle fails and
// one that a no-op agent passes; validate names the two bad ones and
// exits 1, under every jail; the good one alone exits 0; and the same
// tasks imported with --oracle validate alike from a file.
func TestValidate(t *testing.T) {
	ds := t.TempDir()
	testsupport.HarborTask(t, ds, "good", harborFolder(harborTest, harborSolve))
	testsupport.HarborTask(t, ds, "oracle-fails", harborFolder(harborTest, "#!/bin/bash\necho hello > hello.txt\n"))
	testsupport.HarborTask(t, ds, "noop-passes", harborFolder("#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n", harborSolve))
	for _, b := range backends(t) {
		t.Run(b, func(t *testing.T) {
			c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
			code, out, errOut := c.run("", "validate", "--backend", b, ds)
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "noop-passes: a no-op agent scored 1 (success)") ||
				!strings.HasPrefix(lines[1], "oracle-fails: the oracle scored 0 (wrong_answer") {
				t.Errorf("output:\n%s", out)
			}
			if !strings.Contains(errOut, "validated 3 tasks: 2 not valid") {
				t.Errorf("stderr: %s", errOut)
			}
			code, out, errOut = c.run("", "validate", "--backend", b, filepath.Join(ds, "good"))
			if code != 0 || out != "" {
				t.Errorf("the good task: exit %d\n%s%s", code, out, errOut)
			}
			// From task lines: import --oracle, then validate the file.
			file := filepath.Join(t.TempDir(), "tasks.jsonl")
			if code, _, errOut := c.run("", "import", "harbor", "--oracle", "--out", file, ds); code != 0 {
				t.Fatalf("import: exit %d: %s", code, errOut)
			}
			code, out, _ = c.run("", "validate", "--backend", b, file)
			if code != 1 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "oracle-fails:") || !strings.Contains(out, "noop-passes:") {
				t.Errorf("from the file: exit %d\n%s", code, out)
			}
		})
	}
}

// TestImportHarbor: import writes one line per folder that parses as a
// task, reports the refused folders by field on stderr and exits 1.
func TestImportHarbor(t *testing.T) {
	ds := t.TempDir()
	testsupport.HarborTask(t, ds, "good", harborFolder(harborTest, harborSolve))
	bad := harborFolder(harborTest, harborSolve)
	bad["task.toml"] = "[environment]\nallow_internet = true\n"
	testsupport.HarborTask(t, ds, "online", bad)
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	code, out, errOut := c.run("", "import", "harbor", ds)
	if code != 1 || !strings.Contains(errOut, "online: environment.allow_internet: true: jails have no network") || !strings.Contains(errOut, "imported 1 tasks, refused 1") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("lines:\n%s", out)
	}
	task, err := core.ParseTask([]byte(lines[0]))
	if err != nil || task.TaskID != "good" || task.Timeout != 60 {
		t.Errorf("task %+v: %v", task, err)
	}
	if c, err := task.Code(); err != nil || c.Actions != nil {
		t.Error("actions without --oracle")
	}
	file := filepath.Join(t.TempDir(), "out.jsonl")
	if code, _, _ := c.run("", "import", "harbor", "--out", file, filepath.Join(ds, "good")); code != 0 {
		t.Errorf("one folder: exit %d", code)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != lines[0]+"\n" {
		t.Errorf("--out wrote %q (%v)", b, err)
	}
	if code, _, _ := c.run("", "import", "csv", ds); code != 2 {
		t.Errorf("an unknown format: exit %d, want 2", code)
	}
}

// TestImportWithoutEngine: a Dockerfile that builds, with no engine to
// build it and no archive built before, is refused naming its line; the
// folders that need no image are still written.
func TestImportWithoutEngine(t *testing.T) {
	ds, names := testsupport.HarborImageDataset(t)
	notFound := func(string) (string, error) { return "", os.ErrNotExist }
	c := &cli{t: t, env: Env{LookPath: notFound}}
	code, out, errOut := c.run("", "import", "harbor", "--images", t.TempDir(), ds)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	for _, n := range names {
		if !strings.Contains(errOut, "refused "+filepath.Join(ds, n)+": environment/Dockerfile: line 2 ") || !strings.Contains(errOut, "no container engine") {
			t.Errorf("%s not refused by its line:\n%s", n, errOut)
		}
	}
}

// TestValidateImages: `adpctl validate DIR` on examples/harbor-images
// builds each task's image through the host's engine and runs the oracle
// (1) and a no-op agent (0) in it, under every jail; `import harbor` then
// writes lines naming the same archives, not built again.
func TestValidateImages(t *testing.T) {
	testsupport.RequireWorkspaceImages(t)
	engine, err := imagestore.FindEngine(t.Context(), "", nil)
	if err != nil {
		t.Skipf("no container engine to build the task images with: %v", err)
	}
	testsupport.RequireLocalImage(t, engine, "debian:bookworm-slim")
	ds, names := testsupport.HarborImageDataset(t)
	root := t.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil { // the jail's uid reaches the store
			t.Fatal(err)
		}
	}
	archives := filepath.Join(root, "archives")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends(t) {
		t.Run(b, func(t *testing.T) {
			c := &cli{t: t, env: Env{OutputDir: t.TempDir(), ImageStore: imagestore.Config{Dir: filepath.Join(root, "store")}}}
			code, out, errOut := c.run("", "validate", "--backend", b, "--images", archives, ds)
			if code != 0 || out != "" || !strings.Contains(errOut, "validated 3 tasks: 0 not valid") {
				t.Errorf("validate: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
	c := &cli{t: t, env: Env{LookPath: func(string) (string, error) { return "", os.ErrNotExist }}}
	code, out, errOut := c.run("", "import", "harbor", "--images", archives, ds)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(names) {
		t.Fatalf("lines:\n%s", out)
	}
	for i, n := range names {
		if !strings.Contains(lines[i], `"environment":"archive:harbor/`+n+"-") {
			t.Errorf("%s: %s", n, lines[i])
		}
	}
}
