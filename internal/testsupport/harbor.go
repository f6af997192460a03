package testsupport

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// HarborTask writes a Harbor task folder dir/name of files (path →
// content; a content starting with "#!" is executable) and returns its
// path.
func HarborTask(t testing.TB, dir, name string, files map[string]string) string {
	t.Helper()
	root := filepath.Join(dir, name)
	for p, body := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if len(body) > 1 && body[:2] == "#!" {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// HarborImageDataset is the shipped Harbor dataset examples/harbor-images:
// three task folders whose environment/Dockerfile builds on
// debian:bookworm-slim (a COPY, a RUN that installs a tool, a RUN that
// writes data) and whose checks need what the image adds, so that the
// oracle (solution/solve.sh) scores 1 on each only in its own image, and a
// no-op agent 0. The workspace is /workspace. Returns the dataset's
// directory and its task names, sorted.
func HarborImageDataset(t testing.TB) (string, []string) {
	t.Helper()
	root, ok := repoRoot()
	if !ok {
		t.Fatal("repository root not found")
	}
	ds := filepath.Join(root, "examples", "harbor-images")
	ents, err := os.ReadDir(ds)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return ds, names
}

// RequireWorkspaceImages skips the test unless core runs workspace tasks
// (test_command, actions: every Harbor task) in an image: until the
// wsimage work of issue 27 is merged, such a task line is refused.
func RequireWorkspaceImages(t testing.TB) {
	t.Helper()
	_, err := core.ParseTask([]byte(`{"task_id":"p","task_type":"code","description":"d","constraints":{"environment":"x:1","test_command":"true"}}`))
	if err != nil {
		t.Skipf("workspace tasks in an image are not supported on this branch yet (wsimage, issue 27): %v", err)
	}
}
