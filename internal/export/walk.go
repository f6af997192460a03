package export

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// FileError names a trajectory file that was skipped and says why.
type FileError struct {
	Path string `json:"path"`
	Err  string `json:"error"`
}

func (e FileError) Error() string { return e.Path + ": " + e.Err }

// Walk calls fn for every trajectory file in dir, in file-name order, so
// that every reader of the directory (export, stats, report) is
// deterministic. Only regular files named *.json count; names starting with
// '.' are temporary files of trajectory.Writer (or hidden files) and are
// ignored, as are subdirectories.
//
// A file that cannot be read or decoded, or that has no task_id, is passed
// to fn with tr == nil and a non-nil readErr: the caller decides whether it
// is fatal. Walk stops at the first error fn returns and returns it. The only
// other error is a directory that cannot be listed.
func Walk(dir string, fn func(path string, tr *core.Trajectory, readErr error) error) error {
	names, err := trajectoryFiles(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		path := filepath.Join(dir, name)
		tr, err := read(path)
		if err := fn(path, tr, err); err != nil {
			return err
		}
	}
	return nil
}

// trajectoryFiles lists the names of dir's trajectory files in name order:
// regular files (or links to them) named *.json, not starting with '.'.
func trajectoryFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by file name
	if err != nil {
		return nil, fmt.Errorf("read trajectory directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") && isRegular(filepath.Join(dir, name), e) {
			names = append(names, name)
		}
	}
	return names, nil
}

// isRegular follows symlinks: a linked trajectory file is still a trajectory.
func isRegular(path string, e os.DirEntry) bool {
	if e.Type().IsRegular() {
		return true
	}
	if e.Type()&os.ModeSymlink == 0 {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func read(path string) (*core.Trajectory, error) {
	tr, err := trajectory.Read(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err // the path is reported by the caller
		}
		// trajectory.Read prefixes "decode trajectory <path>: "; keep the cause.
		if _, cause, ok := strings.Cut(err.Error(), path+": "); ok {
			return nil, errors.New("invalid JSON: " + cause)
		}
		return nil, err
	}
	if tr.TaskID == "" {
		return nil, errors.New("no task_id: not a trajectory file")
	}
	return tr, nil
}

// ResolveDir returns the trajectory directory that dir names: dir itself
// when it holds trajectory files, or its trajectories/ subdirectory (dir is
// then the OUTPUT_DIR). A directory with no trajectory file is an error
// that says where trajectories were looked for: an export, statistics or a
// report of nothing is a mistake, not a result.
func ResolveDir(dir string) (string, error) {
	n, err := countFiles(dir)
	if err != nil {
		return "", err
	}
	if n > 0 {
		return dir, nil
	}
	sub := core.TrajectoriesPath(dir)
	if st, err := os.Stat(sub); err == nil && st.IsDir() {
		if m, err := countFiles(sub); err == nil && m > 0 {
			return sub, nil
		}
		return "", fmt.Errorf("no trajectory files in %s or %s", dir, sub)
	}
	return "", fmt.Errorf("no trajectory files in %s (trajectories are <task_id>.json files, in OUTPUT_DIR/%s)", dir, core.TrajectoriesDir)
}

func countFiles(dir string) (int, error) {
	names, err := trajectoryFiles(dir)
	return len(names), err
}
