package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInitRuntimeExportsZeroSeries(t *testing.T) {
	s := New()
	s.InitRuntime("sandbox", []string{"timeout", "compile_error"}, "code", "reasoning")
	want := `
# HELP tasks_failed_total Failed tasks by error type.
# TYPE tasks_failed_total counter
tasks_failed_total{error_type="compile_error",runtime="sandbox"} 0
tasks_failed_total{error_type="timeout",runtime="sandbox"} 0
`
	if err := testutil.GatherAndCompare(s.Registry, strings.NewReader(want), "tasks_failed_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(s.CacheMisses); n != 2 {
		t.Errorf("cache_misses_total series = %d, want 2", n)
	}
	if n := testutil.CollectAndCount(s.TasksCompleted); n != 2 {
		t.Errorf("tasks_completed_total series = %d, want 2", n)
	}
}
