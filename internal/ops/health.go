package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
)

// HealthReporter checks a runtime's health on an interval, keeps the last
// result for /healthz, sets runtime_health{runtime}, and writes a report to
// the runtime_health hash (field = consumer name) for `adpctl status`.
type HealthReporter struct {
	RDB      *redis.Client
	Runtime  string
	Consumer string
	// Interval is the check period (HEALTH_INTERVAL); it has no default
	// here, the environment's is the only one.
	Interval time.Duration
	// Checks run in order; the first error makes the runtime unhealthy.
	Checks []func(ctx context.Context) error
	Gauge  prometheus.Gauge
	Log    *slog.Logger
	// Model is reported as HealthReport.Model.
	Model bool

	mu      sync.Mutex
	last    error
	done    bool
	checked chan struct{} // closed by the first check's end
	once    sync.Once
}

// Checked is closed once the first check has ended, whatever its result:
// a consumer gated on the health starts then rather than polling for it.
func (h *HealthReporter) Checked() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checked == nil {
		h.checked = make(chan struct{})
	}
	return h.checked
}

// HealthReport is the value stored in the runtime_health hash.
type HealthReport struct {
	Runtime string  `json:"runtime"`
	Healthy bool    `json:"healthy"`
	Error   string  `json:"error,omitempty"`
	Time    float64 `json:"time"` // unix seconds
	// IntervalSeconds is the replica's HEALTH_INTERVAL: its next report is
	// due that long after Time.
	IntervalSeconds float64 `json:"interval_seconds,omitempty"`
	// Model says whether the replica has a model configured: without one,
	// a task's samples and sampling have no effect (adpctl submit warns).
	Model bool `json:"model"`
}

// A replica's report stays in the runtime_health hash after the replica is
// gone (kill -9, a frozen host, compose --scale recreating containers): only
// a clean shutdown removes it. Readers judge a report by its age instead.
const (
	// MissedReports is how many reports a replica may miss, each
	// IntervalSeconds apart and each check taking up to twice the check
	// timeout, before it counts as down: 3 × HEALTH_INTERVAL + 6 s (21 s by
	// default).
	MissedReports = 3
	// downAfterUnknown is the same for a report without an interval.
	downAfterUnknown = time.Minute
	// ForgetAfter is how long the report of a replica that stopped
	// reporting is kept (shown as down); the live replicas then remove it.
	ForgetAfter = 10 * time.Minute
)

// Report states, as `adpctl status` shows them.
const (
	StateHealthy   = "healthy"
	StateUnhealthy = "unhealthy"
	StateDown      = "down"
)

// DownAfter is the age at which r counts as down.
func (r HealthReport) DownAfter() time.Duration {
	if r.IntervalSeconds <= 0 {
		return downAfterUnknown
	}
	return MissedReports*time.Duration(r.IntervalSeconds*float64(time.Second)) + 2*healthTimeout
}

// State is r's state at now: down once it is older than DownAfter, else
// what the replica reported.
func (r HealthReport) State(now time.Time) string {
	switch {
	case core.UnixSeconds(now)-r.Time > r.DownAfter().Seconds():
		return StateDown
	case r.Healthy:
		return StateHealthy
	default:
		return StateUnhealthy
	}
}

// Run checks until ctx is cancelled, then removes this consumer's report.
func (h *HealthReporter) Run(ctx context.Context) error {
	if h.Interval <= 0 {
		return fmt.Errorf("health interval must be positive, got %s", h.Interval)
	}
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		h.CheckNow(ctx)
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = h.RDB.HDel(dctx, core.KeyRuntimeHealth, h.Consumer).Err()
			cancel()
			return nil
		case <-t.C:
		}
	}
}

// CheckNow runs the checks and publishes the result.
func (h *HealthReporter) CheckNow(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, healthTimeout*2)
	defer cancel()
	var err error
	for _, c := range h.Checks {
		if err = c(cctx); err != nil {
			break
		}
	}
	h.mu.Lock()
	prev := h.last
	h.last, h.done = err, true
	if h.checked == nil {
		h.checked = make(chan struct{})
	}
	checked := h.checked
	h.mu.Unlock()
	h.once.Do(func() { close(checked) })
	if (prev == nil) != (err == nil) && h.Log != nil {
		if err != nil {
			h.Log.Error("runtime unhealthy", "err", err)
		} else {
			h.Log.Info("runtime healthy again")
		}
	}
	if h.Gauge != nil {
		if err == nil {
			h.Gauge.Set(1)
		} else {
			h.Gauge.Set(0)
		}
	}
	now := time.Now()
	rep := HealthReport{Runtime: h.Runtime, Healthy: err == nil, Time: core.UnixSeconds(now), IntervalSeconds: h.Interval.Seconds(), Model: h.Model}
	if err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.Marshal(rep)
	// Best effort: with Redis down the check above already failed.
	if h.RDB.HSet(cctx, core.KeyRuntimeHealth, h.Consumer, b).Err() == nil {
		h.forgetGone(cctx, now)
	}
	return err
}

// forgetGone removes the reports of replicas silent for over ForgetAfter.
func (h *HealthReporter) forgetGone(ctx context.Context, now time.Time) {
	all, err := h.RDB.HGetAll(ctx, core.KeyRuntimeHealth).Result()
	if err != nil {
		return
	}
	for consumer, v := range all {
		var r HealthReport
		if json.Unmarshal([]byte(v), &r) != nil || core.UnixSeconds(now)-r.Time <= ForgetAfter.Seconds() {
			continue
		}
		// HDEL only if unchanged: a replica of that name may have come back.
		if n, err := forgetScript.Run(ctx, h.RDB, []string{core.KeyRuntimeHealth}, consumer, v).Int(); err == nil && n == 1 && h.Log != nil {
			h.Log.Info("forgot a replica that stopped reporting", "replica", consumer, "last_report", time.Unix(int64(r.Time), 0).UTC())
		}
	}
}

// forgetScript deletes hash field ARGV[1] of KEYS[1] if it still holds ARGV[2].
var forgetScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0`)

// errNotChecked is reported before the first check completes.
var errNotChecked = errors.New("health not checked yet")

// Last returns the result of the last check, for /healthz.
func (h *HealthReporter) Last(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.done {
		return errNotChecked
	}
	return h.last
}
