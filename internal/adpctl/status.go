package adpctl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/queue"
)

// Status is what `adpctl status --json` prints.
type Status struct {
	Streams    []StreamStatus `json:"streams"`
	DeadLetter int64          `json:"dead_letter"`
	Runtimes   []RuntimeState `json:"runtimes"`
}

// StreamStatus is one task stream.
type StreamStatus struct {
	Stream               string           `json:"stream"`
	Group                string           `json:"group"`
	GroupExists          bool             `json:"group_exists"`
	Length               int64            `json:"length"`
	Pending              int64            `json:"pending"`
	Undelivered          int64            `json:"undelivered"`
	OldestPendingSeconds float64          `json:"oldest_pending_seconds"`
	LagSeconds           float64          `json:"lag_seconds"`
	Consumers            []ConsumerStatus `json:"consumers"`
}

// ConsumerStatus is one consumer of a group.
type ConsumerStatus struct {
	Name        string  `json:"name"`
	Pending     int64   `json:"pending"`
	IdleSeconds float64 `json:"idle_seconds"`
}

// RuntimeState is one replica's entry of the runtime_health hash.
type RuntimeState struct {
	Consumer string `json:"consumer"`
	ops.HealthReport
	AgeSeconds float64 `json:"age_seconds"`
	// State is healthy or unhealthy as the replica reported, or down once
	// its report is older than DownAfterSeconds (ops.HealthReport.State).
	State            string  `json:"state"`
	DownAfterSeconds float64 `json:"down_after_seconds"`
}

func cmdStatus(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "status", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	rdb, err := e.redis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := readStatus(ctx, rdb)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	w := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "STREAM\tGROUP\tLENGTH\tPENDING\tUNDELIVERED\tOLDEST PENDING\tLAG")
	for _, s := range st.Streams {
		group := s.Group
		if !s.GroupExists {
			group = "(none yet)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Stream, group, s.Length, s.Pending, s.Undelivered, secs(s.OldestPendingSeconds), secs(s.LagSeconds))
	}
	fmt.Fprintf(w, "%s\t\t%d\t\t\t\t\n", core.StreamDead, st.DeadLetter)
	w.Flush()
	fmt.Fprintln(e.Stdout)
	w = tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CONSUMER\tSTREAM\tPENDING\tIDLE")
	for _, s := range st.Streams {
		for _, c := range s.Consumers {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", c.Name, s.Stream, c.Pending, secs(c.IdleSeconds))
		}
	}
	w.Flush()
	fmt.Fprintln(e.Stdout)
	w = tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "RUNTIME REPLICA\tRUNTIME\tSTATE\tLAST REPORT\tERROR")
	for _, r := range st.Runtimes {
		state := r.State
		if state == ops.StateDown {
			state = fmt.Sprintf("down (no report for over %s)", secs(r.DownAfterSeconds))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%s\n", r.Consumer, r.Runtime, state, secs(r.AgeSeconds), r.Error)
	}
	return w.Flush()
}

func secs(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s*1000) * time.Millisecond).Round(100 * time.Millisecond).String()
}

func readStatus(ctx context.Context, c *redis.Client) (Status, error) {
	var st Status
	now := time.Now()
	for _, s := range core.Streams {
		is, err := queue.Inspect(ctx, c, s, core.ConsumerGroup, now)
		if err != nil {
			return st, err
		}
		ss := StreamStatus{
			Stream: s, Group: core.ConsumerGroup, GroupExists: is.GroupExists, Length: is.Length, Pending: is.Pending,
			Undelivered: is.Undelivered, OldestPendingSeconds: is.OldestPendingAge.Seconds(), LagSeconds: is.Lag.Seconds(),
			Consumers: []ConsumerStatus{},
		}
		for _, cs := range is.Consumers {
			ss.Consumers = append(ss.Consumers, ConsumerStatus{Name: cs.Name, Pending: cs.Pending, IdleSeconds: cs.Idle.Seconds()})
		}
		st.Streams = append(st.Streams, ss)
	}
	n, err := c.XLen(ctx, core.StreamDead).Result()
	if err != nil {
		return st, fmt.Errorf("XLEN %s: %w", core.StreamDead, err)
	}
	st.DeadLetter = n
	h, err := c.HGetAll(ctx, core.KeyRuntimeHealth).Result()
	if err != nil {
		return st, fmt.Errorf("HGETALL %s: %w", core.KeyRuntimeHealth, err)
	}
	st.Runtimes = []RuntimeState{}
	for consumer, v := range h {
		r := RuntimeState{Consumer: consumer}
		if err := json.Unmarshal([]byte(v), &r.HealthReport); err != nil {
			r.Error = "unreadable report: " + err.Error()
		}
		if r.Time > 0 {
			r.AgeSeconds = core.UnixSeconds(now) - r.Time
		}
		r.State, r.DownAfterSeconds = r.HealthReport.State(now), r.DownAfter().Seconds()
		st.Runtimes = append(st.Runtimes, r)
	}
	sort.Slice(st.Runtimes, func(i, j int) bool { return st.Runtimes[i].Consumer < st.Runtimes[j].Consumer })
	return st, nil
}
