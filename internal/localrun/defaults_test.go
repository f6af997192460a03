package localrun

import (
	"testing"
	"time"
)

// A local run's defaults are the binaries' (their env tags): the task file
// the dispatcher reads, the output directory they write, and the time a
// runtime gives its in-flight tasks to stop.
func TestDefaults(t *testing.T) {
	cfg := withDefaults(Config{})
	if cfg.TaskFile != "tasks.jsonl" || cfg.OutputDir != "output" || cfg.StopGrace != 30*time.Second {
		t.Errorf("defaults: task file %q, output %q, stop grace %s; want tasks.jsonl, output, 30s", cfg.TaskFile, cfg.OutputDir, cfg.StopGrace)
	}
	set := withDefaults(Config{TaskFile: "t.jsonl", OutputDir: "o", StopGrace: time.Second})
	if set.TaskFile != "t.jsonl" || set.OutputDir != "o" || set.StopGrace != time.Second {
		t.Errorf("set values replaced: %+v", set)
	}
}
