package deploytest

import (
	"slices"
	"testing"
)

func TestSeriesNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`queue_size`, []string{"queue_size"}},
		{`max by (queue_name) (queue_size{queue_name="tasks:code"})`, []string{"queue_size"}},
		{`sum(rate(tasks_completed_total{status="success"}[5m])) by (runtime)`, []string{"tasks_completed_total"}},
		{`histogram_quantile(0.95, sum by (runtime, le) (rate(task_duration_seconds_bucket[5m])))`, []string{"task_duration_seconds_bucket"}},
		{`a / (a + b)`, []string{"a", "b"}},
		{`x > 0.5 unless on (runtime) (y > 0)`, []string{"x", "y"}},
		{`x and ignoring(instance) y or z offset 5m`, []string{"x", "y", "z"}},
		{`x * on(job) group_left(runtime) y`, []string{"x", "y"}},
		{`label_replace(absent(up{job="web-runtime"} == 1), "job", "web-runtime", "", "")`, []string{"up"}},
		{`max_over_time(x[1h:1m]) > bool 1e3`, []string{"x"}},
		{`{__name__="hidden"}`, nil},
		{`delta(dead_letter_size[15m]) > Inf`, []string{"dead_letter_size"}},
		{`sum by (runtime) (rate(tasks_failed_total{error_type=~"system_error|browser_error"}[10m]))`, []string{"tasks_failed_total"}},
	}
	for _, tt := range tests {
		if got := SeriesNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("SeriesNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestKnownSeries(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"up":                                true,
		"queue_size":                        true,
		"task_duration_seconds_bucket":      true,
		"task_duration_seconds_count":       true,
		"task_duration_seconds":             false, // a histogram has no series of its bare name
		"tasks_completed_total_bucket":      false,
		"sandbox_exec_duration_seconds_sum": true,
		"tasks_completed":                   false,
	} {
		if got := KnownSeries(name); got != want {
			t.Errorf("KnownSeries(%q) = %v, want %v", name, got, want)
		}
	}
}
