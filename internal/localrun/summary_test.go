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
		{Summary{Tasks: 8, Done: 8, Elapsed: 1600 * time.Millisecond}, "lines rejected; 1.6s, too short for a rate\n"},
		{Summary{Tasks: 8}, "lines rejected; 0s, too short for a rate\n"}, // a resume with nothing to do
		{Summary{Tasks: 1, Done: 1, Elapsed: time.Minute}, "lines rejected; 1m0s, too few tasks for a rate\n"},
		{Summary{Tasks: 20, Done: 18, DeadLettered: 2, Elapsed: 30 * time.Second}, "lines rejected; 40.0 tasks/min over 30s\n"},
		{Summary{Tasks: 2, Attempts: 6, Done: 6, Elapsed: 12 * time.Second}, "lines rejected; 30.0 attempts/min over 12s\n"},
		{Summary{Tasks: 2, Attempts: 6, Done: 6}, "lines rejected; 0s, too short for a rate\n"},
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
