// Package trajectory writes trajectory files: one JSON file per attempt of
// a task (core.TrajectoryFileName: <task_id>.json for attempt 0,
// <task_id>.sample-<k>.json for attempt k >= 1), replaced atomically so that
// a reader never sees a truncated file.
package trajectory

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// Writer writes $OUTPUT_DIR/trajectories/<task_id>.json (and
// <task_id>.sample-<k>.json for attempts k >= 1).
type Writer struct {
	dir string
}

// NewWriter creates dir if needed and returns a Writer for it.
func NewWriter(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create trajectory dir %s: %w", dir, err)
	}
	sweepTemp(dir, staleTempAge)
	return &Writer{dir: dir}, nil
}

// staleTempAge is the age past which a temporary file is a leftover of a
// writer killed mid-write (a live write takes milliseconds).
const staleTempAge = 10 * time.Minute

// sweepTemp removes temporary files older than age: a process killed between
// creating its temp file and renaming it leaves one behind.
func sweepTemp(dir string, age time.Duration) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && time.Since(st.ModTime()) > age {
			_ = os.Remove(m)
		}
	}
}

// Dir returns the directory the Writer writes to.
func (w *Writer) Dir() string { return w.dir }

// Path returns the file of attempt k of a task id. The id must have passed
// core.ValidateTaskID, so the path cannot leave Dir.
func (w *Writer) Path(taskID string, k int) string {
	return filepath.Join(w.dir, core.TrajectoryFileName(taskID, k))
}

// Write stores tr durably: a temporary file in the same directory (names
// starting with '.' never collide with a task id), fsync, rename over the
// final name, fsync of the directory. The file is the attempt's
// (tr.TaskID, tr.SampleIndex). A re-delivered task replaces its own file, so
// there is exactly one file per attempt. Only after Write returns nil
// may the queue entry be acknowledged.
func (w *Writer) Write(tr *core.Trajectory) error {
	if err := core.ValidateTaskID(tr.TaskID); err != nil {
		return fmt.Errorf("write trajectory: task_id %q: %w", tr.TaskID, err)
	}
	if tr.SampleIndex < 0 {
		return fmt.Errorf("write trajectory %s: sample_index %d is negative", tr.TaskID, tr.SampleIndex)
	}
	data, err := Encode(tr) // ends in a newline
	if err != nil {
		return err
	}
	final := w.Path(tr.TaskID, tr.SampleIndex)
	if err := WriteFileAtomic(final, data, 0o644); err != nil {
		return fmt.Errorf("write trajectory %s: %w", core.AttemptName(tr.TaskID, tr.SampleIndex), err)
	}
	return nil
}

// WriteFileAtomic replaces path with data: temp file in the same directory,
// fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Read loads the trajectory file at path.
func Read(path string) (*core.Trajectory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tr core.Trajectory
	if err := json.Unmarshal(data, &tr); err != nil {
		return nil, fmt.Errorf("decode trajectory %s: %w", path, err)
	}
	return &tr, nil
}
