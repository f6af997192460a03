// Package metrics defines every Prometheus metric of the platform in one
// place, with the names and labels of the blueprint (the Grafana dashboard and
// the alert rules query them). Each binary registers the whole set on its own
// registry; a vector with no series is simply not exported.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Set holds every metric. Label values for `runtime` are core.RuntimeSandbox
// and core.RuntimeWeb.
type Set struct {
	Registry *prometheus.Registry

	// Dispatcher.
	TasksSubmitted *prometheus.CounterVec // task_type, runtime
	TasksRejected  prometheus.Counter
	TasksDuplicate prometheus.Counter

	// Queue state, refreshed by the queue monitor.
	QueueSize         *prometheus.GaugeVec // queue_name
	PendingLagSeconds *prometheus.GaugeVec // runtime
	DeadLetterSize    prometheus.Gauge

	// Consumers.
	TasksRedelivered    *prometheus.CounterVec // runtime
	TasksDeadLettered   *prometheus.CounterVec // runtime
	TasksCompleted      *prometheus.CounterVec // runtime, status
	TasksFailed         *prometheus.CounterVec // runtime, error_type
	TaskDuration        *prometheus.HistogramVec
	ActiveTasks         *prometheus.GaugeVec   // runtime
	TrajectoriesWritten *prometheus.CounterVec // runtime
	RuntimeHealth       *prometheus.GaugeVec   // runtime

	// Agents.
	CacheHits   *prometheus.CounterVec // cache_type
	CacheMisses *prometheus.CounterVec // cache_type
	LLMRequests *prometheus.CounterVec // runtime, status
	LLMTokens   *prometheus.CounterVec // runtime, kind

	// Sandbox.
	SandboxExecDuration prometheus.Histogram
	SandboxJailFailures prometheus.Counter

	// Web.
	BrowserPagesInUse       prometheus.Gauge
	BrowserRestarts         prometheus.Counter
	BrowserNavigationErrors *prometheus.CounterVec // kind
}

// durationBuckets spans a 50 ms jail run to a one-hour task.
var durationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// New creates the set on a fresh registry that also carries the Go and
// process collectors.
func New() *Set {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{r}
	return &Set{
		Registry:       r,
		TasksSubmitted: f.counterVec("tasks_submitted_total", "Task attempts enqueued by the dispatcher or adpctl (one stream entry each; a task of samples N is N attempts).", "task_type", "runtime"),
		TasksRejected:  f.counter("tasks_rejected_total", "Input lines rejected as invalid (see rejected.jsonl)."),
		TasksDuplicate: f.counter("tasks_duplicate_total", "Task attempts skipped because they were already dispatched (same task_id and attempt)."),

		QueueSize:         f.gaugeVec("queue_size", "Entries in a stream (backlog: acknowledged entries are deleted).", "queue_name"),
		PendingLagSeconds: f.gaugeVec("pending_lag_seconds", "Age of the oldest unacknowledged entry of the runtime's stream.", "runtime"),
		DeadLetterSize:    f.gauge("dead_letter_size", "Entries in the dead-letter stream tasks:dead."),

		TasksRedelivered:    f.counterVec("tasks_redelivered_total", "Entries reclaimed from a consumer whose lease expired.", "runtime"),
		TasksDeadLettered:   f.counterVec("tasks_dead_lettered_total", "Entries moved to tasks:dead.", "runtime"),
		TasksCompleted:      f.counterVec("tasks_completed_total", "Tasks finished with a trajectory, by outcome.", "runtime", "status"),
		TasksFailed:         f.counterVec("tasks_failed_total", "Failed tasks by error type.", "runtime", "error_type"),
		TaskDuration:        f.histogramVec("task_duration_seconds", "Wall time of a task, from start to trajectory written.", durationBuckets, "runtime"),
		ActiveTasks:         f.gaugeVec("active_tasks", "Tasks being executed now.", "runtime"),
		TrajectoriesWritten: f.counterVec("trajectories_written_total", "Trajectory files written.", "runtime"),
		RuntimeHealth:       f.gaugeVec("runtime_health", "1 when the runtime's last health check passed, else 0.", "runtime"),

		CacheHits:   f.counterVec("cache_hits_total", "Template cache hits.", "cache_type"),
		CacheMisses: f.counterVec("cache_misses_total", "Template cache misses.", "cache_type"),
		LLMRequests: f.counterVec("llm_requests_total", "LLM chat requests by outcome (ok, error, retry).", "runtime", "status"),
		LLMTokens:   f.counterVec("llm_tokens_total", "LLM tokens used (prompt, completion).", "runtime", "kind"),

		SandboxExecDuration: f.histogram("sandbox_exec_duration_seconds", "Wall time of one jailed program run.", durationBuckets),
		SandboxJailFailures: f.counter("sandbox_jail_failures_total", "Jail runs that failed to launch (system errors)."),

		BrowserPagesInUse:       f.gauge("browser_pages_in_use", "Browser contexts (one page each) in use by tasks."),
		BrowserRestarts:         f.counter("browser_restarts_total", "Chromium relaunches after a crash, disconnect or recycle."),
		BrowserNavigationErrors: f.counterVec("browser_navigation_errors_total", "Failed navigations by kind (timeout, network_error, blocked_url, browser_error).", "kind"),
	}
}

type factory struct{ r prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(h)
	return h
}

// InitRuntime creates the labelled series of a runtime at zero, so that
// dashboards and alerts see 0 rather than no data before the first event.
func (s *Set) InitRuntime(runtime string, errorTypes []string, cacheTypes ...string) {
	for _, st := range []string{"success", "failure"} {
		s.TasksCompleted.WithLabelValues(runtime, st)
	}
	for _, et := range errorTypes {
		s.TasksFailed.WithLabelValues(runtime, et)
	}
	s.TaskDuration.WithLabelValues(runtime)
	s.ActiveTasks.WithLabelValues(runtime)
	s.TrajectoriesWritten.WithLabelValues(runtime)
	s.TasksRedelivered.WithLabelValues(runtime)
	s.TasksDeadLettered.WithLabelValues(runtime)
	s.RuntimeHealth.WithLabelValues(runtime)
	for _, c := range cacheTypes {
		s.CacheHits.WithLabelValues(c)
		s.CacheMisses.WithLabelValues(c)
	}
}

// InitDispatcher creates the dispatcher's labelled series at zero: one per
// task type and the runtime it is routed to.
func (s *Set) InitDispatcher(routes map[string]string) {
	for taskType, runtime := range routes {
		s.TasksSubmitted.WithLabelValues(taskType, runtime)
	}
	s.DeadLetterSize.Set(0)
}
