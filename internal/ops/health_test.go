package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

func TestHealthReportState(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	at := func(ago time.Duration) float64 { return core.UnixSeconds(now.Add(-ago)) }
	cases := []struct {
		r    HealthReport
		want string
	}{
		{HealthReport{Healthy: true, Time: at(0), IntervalSeconds: 5}, StateHealthy},
		{HealthReport{Healthy: false, Time: at(0), IntervalSeconds: 5}, StateUnhealthy},
		{HealthReport{Healthy: true, Time: at(21 * time.Second), IntervalSeconds: 5}, StateHealthy}, // 3 × 5 s + 6 s
		{HealthReport{Healthy: true, Time: at(22 * time.Second), IntervalSeconds: 5}, StateDown},
		{HealthReport{Healthy: false, Time: at(5 * time.Minute), IntervalSeconds: 5}, StateDown},
		{HealthReport{Healthy: true, Time: at(9 * time.Second), IntervalSeconds: 1}, StateHealthy},
		{HealthReport{Healthy: true, Time: at(10 * time.Second), IntervalSeconds: 1}, StateDown},
		{HealthReport{Healthy: true, Time: at(59 * time.Second)}, StateHealthy}, // no interval: a minute
		{HealthReport{Healthy: true, Time: at(61 * time.Second)}, StateDown},
	}
	for _, c := range cases {
		if got := c.r.State(now); got != c.want {
			t.Errorf("%+v at %s: %s, want %s", c.r, now, got, c.want)
		}
	}
}

// A check writes the replica's report with its interval and removes the
// reports of replicas silent for over ForgetAfter, and only those.
func TestHealthReporterForgetsGoneReplicas(t *testing.T) {
	r := testsupport.StartRedis(t)
	ctx := context.Background()
	now := core.UnixSeconds(time.Now())
	report := func(ago time.Duration) string {
		return fmt.Sprintf(`{"runtime":"sandbox","healthy":true,"time":%f,"interval_seconds":5}`, now-ago.Seconds())
	}
	r.Client.HSet(ctx, core.KeyRuntimeHealth,
		"gone-long-ago", report(ForgetAfter+time.Minute),
		"down-recently", report(time.Minute),
		"live", report(0))
	h := &HealthReporter{RDB: r.Client, Runtime: "sandbox", Consumer: "me", Interval: 2 * time.Second}
	if err := h.CheckNow(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := r.Client.HGetAll(ctx, core.KeyRuntimeHealth).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all["gone-long-ago"]; ok || len(all) != 3 || all["down-recently"] == "" || all["live"] == "" {
		t.Errorf("runtime_health after a check: %v", all)
	}
	var mine HealthReport
	if err := json.Unmarshal([]byte(all["me"]), &mine); err != nil || !mine.Healthy || mine.IntervalSeconds != 2 || mine.State(time.Now()) != StateHealthy {
		t.Errorf("own report %s: %+v, %v", all["me"], mine, err)
	}
}
