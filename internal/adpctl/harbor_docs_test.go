package adpctl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

const harborDoc = "docs/harbor.md"

// TestHarborDoc follows docs/harbor.md as printed: the sh block that
// writes the task folder, then validate's report, the imported line of
// the json block, the refusal's form, and the broken oracle's line.
func TestHarborDoc(t *testing.T) {
	sh := testsupport.DocBlocks(t, harborDoc, "sh")
	texts := testsupport.DocBlocks(t, harborDoc, "text")
	js := testsupport.DocBlocks(t, harborDoc, "json")
	if len(sh) != 3 || len(texts) != 3 || len(js) != 1 {
		t.Fatalf("docs/harbor.md: %d sh, %d text, %d json blocks; the test follows 3, 3, 1", len(sh), len(texts), len(js))
	}
	work := t.TempDir()
	cmd := exec.Command("bash", "-euc", sh[0].Text)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s:%d: %v\n%s", harborDoc, sh[0].Line, err, out)
	}
	ds := filepath.Join(work, "datasets", "hello")
	// The commands of the second block are the ones run below.
	for _, want := range []string{"bin/adpctl validate datasets/hello", "bin/adpctl import harbor datasets/hello --out hello.jsonl", "make run TASKS=hello.jsonl"} {
		if !strings.Contains(sh[1].Text, want) {
			t.Errorf("%s:%d: no %q", harborDoc, sh[1].Line, want)
		}
	}
	c := &cli{t: t, env: Env{OutputDir: t.TempDir()}}
	code, out, errOut := c.run("", "validate", ds)
	if code != 0 || out != "" || errOut != texts[0].Text+"\n" {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; the doc prints %q", code, out, errOut, texts[0].Text)
	}
	code, out, _ = c.run("", "import", "harbor", "--oracle", ds)
	if code != 0 || out != js[0].Text+"\n" {
		t.Errorf("import --oracle: exit %d\n%s\nthe doc prints\n%s", code, out, js[0].Text)
	}
	// The broken oracle of the text.
	solve := filepath.Join(ds, "hello-world", "solution", "solve.sh")
	if err := os.WriteFile(solve, []byte("#!/bin/bash\necho \"Hello\" > hello.txt\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, _ = c.run("", "validate", ds)
	doc, err := os.ReadFile(filepath.Join(testsupport.RepoRoot(t), harborDoc))
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 || !strings.Contains(string(doc), "`"+strings.TrimSuffix(out, "\n")+"`") {
		t.Errorf("a broken oracle: exit %d, %q is not in the doc", code, out)
	}
	// Task images: the third block's commands are TestValidateImages' and
	// internal/localrun's TestHarborDataset; without an engine, the
	// refusal of the third text block.
	for _, want := range []string{"bin/adpctl validate --images images examples/harbor-images", "SANDBOX_IMAGE_ARCHIVES=images HARBOR_AGENT=oracle make run TASKS=examples/harbor-images"} {
		if !strings.Contains(sh[2].Text, want) {
			t.Errorf("%s:%d: no %q", harborDoc, sh[2].Line, want)
		}
	}
	t.Chdir(testsupport.RepoRoot(t))
	noEngine := &cli{t: t, env: Env{LookPath: func(string) (string, error) { return "", os.ErrNotExist }}}
	if _, _, errOut := noEngine.run("", "import", "harbor", "--images", t.TempDir(), "examples/harbor-images"); !strings.Contains(errOut, texts[2].Text+"\n") {
		t.Errorf("the refusal without an engine: %q; the doc prints %q", errOut, texts[2].Text)
	}
	// The refusal's form.
	online := harborFolder(harborTest, harborSolve)
	online["task.toml"] = "[environment]\nallow_internet = true\n"
	testsupport.HarborTask(t, filepath.Join(work, "datasets", "x"), "online", online)
	t.Chdir(work)
	_, _, errOut = c.run("", "import", "harbor", "datasets/x")
	if !strings.Contains(errOut, texts[1].Text+"\n") {
		t.Errorf("the refusal: %q; the doc prints %q", errOut, texts[1].Text)
	}
}
