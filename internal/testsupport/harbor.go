package testsupport

import (
	"os"
	"path/filepath"
	"testing"
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
