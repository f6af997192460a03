package localrun

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A rate is given only over enough tasks and time: a resume with nothing
// left to do, or one task, says n/a rather than thousands a minute.
func TestSummaryRate(t *testing.T) {
	cases := []struct {
		s    Summary
		want string
	}{
		{Summary{Tasks: 8, Done: 8, Elapsed: 40 * time.Millisecond}, "tasks/min n/a (under 5 tasks or 10s)"},
		{Summary{Tasks: 1, Done: 1, Elapsed: time.Minute}, "tasks/min n/a"},
		{Summary{Tasks: 20, Done: 18, DeadLettered: 2, Elapsed: 30 * time.Second}, "40.0 tasks/min (30s)"},
		{Summary{Tasks: 2, Attempts: 6, Done: 6, Elapsed: 12 * time.Second}, "30.0 attempts/min (12s)"},
		{Summary{Tasks: 2, Attempts: 6, Done: 6}, "attempts/min n/a (under 5 attempts or 10s)"},
	}
	for _, c := range cases {
		var b strings.Builder
		WriteSummary(&b, &c.s)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%+v: summary %q lacks %q", c.s, b.String(), c.want)
		}
		raw, err := json.Marshal(c.s)
		if err != nil {
			t.Fatal(err)
		}
		_, ok := c.s.TasksPerMinute()
		if got := strings.Contains(string(raw), `"tasks_per_minute"`); got != ok {
			t.Errorf("%+v: JSON has tasks_per_minute %v, want %v: %s", c.s, got, ok, raw)
		}
	}
}
