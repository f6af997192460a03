package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDocsBoundsTable: docs/security.md's "What bounds what" table names
// the settings with the defaults and figures of this package.
func TestDocsBoundsTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "<!-- bounds table: checked by internal/sandbox TestDocsBoundsTable -->\n")
	if !ok {
		t.Fatal("docs/security.md has no bounds table")
	}
	rows := map[string][]string{}
	var order []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			t.Fatalf("row %q has %d cells, want 4", line, len(cells))
		}
		if cells[0] == "what" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		rows[cells[0]] = cells
		order = append(order, cells[0])
	}
	d := DefaultLimits()
	want := []struct {
		what, setting string
		contains      []string // in the cgroup cell, then in the other
	}{
		{"memory", fmt.Sprintf("`SANDBOX_MEMORY_MB` (%d)", d.MemoryBytes>>20), []string{
			fmt.Sprintf("plus `/tmp` (%d MiB)", d.TmpfsBytes>>20), "`RLIMIT_AS`",
			fmt.Sprintf("`SANDBOX_MAX_PROCS` × this (%d GiB)", int64(d.MaxProcs)*d.MemoryBytes>>30)}},
		{"threads", fmt.Sprintf("`SANDBOX_MAX_THREADS` (%d)", d.MaxThreads), []string{"`pids.max`", "`RLIMIT_NPROC`"}},
		{"processes", fmt.Sprintf("`SANDBOX_MAX_PROCS` (%d)", d.MaxProcs), []string{
			fmt.Sprintf("every %d ms", processPollInterval/time.Millisecond), "process limit exceeded"}},
		{"CPU time", fmt.Sprintf("`SANDBOX_RUN_TIMEOUT` (%s)", d.CPU), []string{"`RLIMIT_CPU`"}},
	}
	if len(order) != len(want) {
		t.Errorf("rows %q, want %d", order, len(want))
	}
	for _, w := range want {
		row, ok := rows[w.what]
		if !ok {
			t.Errorf("no row %q", w.what)
			continue
		}
		if row[1] != w.setting {
			t.Errorf("%s: setting %q, want %q", w.what, row[1], w.setting)
		}
		for _, c := range w.contains {
			if !strings.Contains(row[2], c) && !strings.Contains(row[3], c) {
				t.Errorf("%s: neither column says %q", w.what, c)
			}
		}
	}
}
