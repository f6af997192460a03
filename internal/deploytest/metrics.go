package deploytest

import "strings"

// MetricType is the Prometheus type of a metric.
type MetricType string

// Metric types.
const (
	Counter   MetricType = "counter"
	Gauge     MetricType = "gauge"
	Histogram MetricType = "histogram"
)

// Metric is one metric the platform exports: its name, type and label names.
type Metric struct {
	Name   string
	Type   MetricType
	Labels []string
	// Exporter is the binary that exports it: dispatcher, sandbox-runtime,
	// web-runtime, or "runtimes" for both runtimes.
	Exporter string
}

// Metrics lists every metric the dashboard and the alert rules may use. It is
// the contract between the binaries' registries and configs/: a test of the
// binaries can compare it with what their /metrics endpoints expose.
var Metrics = []Metric{
	{"tasks_submitted_total", Counter, []string{"task_type", "runtime"}, "dispatcher"},
	{"tasks_rejected_total", Counter, nil, "dispatcher"},
	{"tasks_duplicate_total", Counter, nil, "dispatcher"},
	{"queue_size", Gauge, []string{"queue_name"}, "dispatcher"},
	{"pending_lag_seconds", Gauge, []string{"runtime"}, "dispatcher"},
	{"dead_letter_size", Gauge, nil, "dispatcher"},
	{"tasks_completed_total", Counter, []string{"runtime", "status"}, "runtimes"},
	{"tasks_failed_total", Counter, []string{"runtime", "error_type"}, "runtimes"},
	{"task_duration_seconds", Histogram, []string{"runtime"}, "runtimes"},
	{"active_tasks", Gauge, []string{"runtime"}, "runtimes"},
	{"tasks_redelivered_total", Counter, []string{"runtime"}, "runtimes"},
	{"tasks_dead_lettered_total", Counter, []string{"runtime"}, "runtimes"},
	{"cache_hits_total", Counter, []string{"cache_type"}, "runtimes"},
	{"cache_misses_total", Counter, []string{"cache_type"}, "runtimes"},
	{"runtime_health", Gauge, []string{"runtime"}, "runtimes"},
	{"trajectories_written_total", Counter, []string{"runtime"}, "runtimes"},
	{"llm_requests_total", Counter, []string{"runtime", "status"}, "runtimes"},
	{"llm_tokens_total", Counter, []string{"runtime", "kind"}, "runtimes"},
	{"sandbox_exec_duration_seconds", Histogram, nil, "sandbox-runtime"},
	{"sandbox_jail_failures_total", Counter, nil, "sandbox-runtime"},
	{"browser_pages_in_use", Gauge, nil, "web-runtime"},
	{"browser_restarts_total", Counter, nil, "web-runtime"},
	{"browser_navigation_errors_total", Counter, []string{"kind"}, "web-runtime"},
}

// ScrapeSeries are series Prometheus itself attaches to every target; rules
// may use them too.
var ScrapeSeries = []string{"up"}

// KnownSeries reports whether name is a series the platform's targets expose:
// a metric of Metrics (for a histogram, one of its _bucket, _sum and _count
// series) or one of ScrapeSeries.
func KnownSeries(name string) bool {
	for _, s := range ScrapeSeries {
		if name == s {
			return true
		}
	}
	for _, m := range Metrics {
		if m.Type != Histogram {
			if name == m.Name {
				return true
			}
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if name == m.Name+suffix {
				return true
			}
		}
	}
	return false
}

// MetricOf returns the metric a series name belongs to (a histogram's
// _bucket/_sum/_count series map to the histogram).
func MetricOf(series string) (Metric, bool) {
	for _, m := range Metrics {
		if series == m.Name {
			return m, true
		}
		if m.Type == Histogram {
			rest, ok := strings.CutPrefix(series, m.Name)
			if ok && (rest == "_bucket" || rest == "_sum" || rest == "_count") {
				return m, true
			}
		}
	}
	return Metric{}, false
}
