package deploytest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
)

// RepoRoot returns the repository's root directory: the nearest directory
// above this source file that holds go.mod.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("deploytest: cannot locate source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("deploytest: go.mod not found above " + filepath.Dir(file))
		}
		dir = parent
	}
}
