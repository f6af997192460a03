package trajectory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestWriteIsAtomicAndIdempotent(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(filepath.Join(dir, "trajectories"))
	if err != nil {
		t.Fatal(err)
	}
	tr := core.NewTrajectory(core.TaskSpec{TaskID: "a", TaskType: core.TaskCode}, "r")
	if err := w.Write(tr); err != nil {
		t.Fatal(err)
	}
	tr.Success = true
	if err := w.Write(tr); err != nil { // a re-delivered task overwrites its own file
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(w.Dir())
	if len(entries) != 1 || entries[0].Name() != "a.json" {
		t.Fatalf("files = %v, want exactly a.json (no temp files left)", entries)
	}
	got, err := Read(w.Path("a", 0))
	if err != nil || !got.Success {
		t.Errorf("read back %+v, %v", got, err)
	}
}

// Each attempt has its own file; attempt 0 keeps the name of a task with one
// attempt, and rewriting an attempt replaces only its own file.
func TestWriteOneFilePerAttempt(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		tr := core.NewTrajectory(core.TaskSpec{TaskID: "fib", TaskType: core.TaskCode, Samples: 3, SampleIndex: k}, "r")
		tr.SampleIndex, tr.Samples = k, 3
		if err := w.Write(tr); err != nil {
			t.Fatal(err)
		}
		if k == 1 {
			if err := w.Write(tr); err != nil { // redelivery of attempt 1
				t.Fatal(err)
			}
		}
	}
	entries, _ := os.ReadDir(w.Dir())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "fib.json fib.sample-1.json fib.sample-2.json"; strings.Join(names, " ") != want {
		t.Fatalf("files = %q, want %q", names, want)
	}
	for k := range 3 {
		got, err := Read(w.Path("fib", k))
		if err != nil || got.TaskID != "fib" || got.SampleIndex != k || got.Samples != 3 {
			t.Errorf("attempt %d read back %+v, %v", k, got, err)
		}
	}
	if err := w.Write(&core.Trajectory{TaskID: "fib", SampleIndex: -1}); err == nil {
		t.Error("a negative sample index was written")
	}
}

func TestWriteRejectsUnsafeID(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewWriter(filepath.Join(dir, "t"))
	for _, id := range []string{"../escape", "a/b", ".hidden", ""} {
		err := w.Write(&core.Trajectory{TaskID: id})
		if err == nil || !strings.Contains(err.Error(), "task_id") {
			t.Errorf("Write(%q) = %v, want a task_id error", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.json")); err == nil {
		t.Error("a crafted id wrote outside the directory")
	}
}

func TestNewWriterSweepsStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".tmp-a.json-1")
	fresh := filepath.Join(dir, ".tmp-b.json-2")
	for _, f := range []string{stale, fresh} {
		os.WriteFile(f, []byte("{"), 0o644)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	if _, err := NewWriter(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file not removed: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temp file (a write in progress) was removed: %v", err)
	}
}
