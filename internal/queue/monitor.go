package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
)

// Monitor refreshes queue_size, pending_lag_seconds and dead_letter_size.
type Monitor struct {
	rdb      *redis.Client
	m        *metrics.Set
	interval time.Duration
	log      *slog.Logger
}

// NewMonitor returns a Monitor refreshing every interval (default 5s).
func NewMonitor(rdb *redis.Client, m *metrics.Set, interval time.Duration, log *slog.Logger) *Monitor {
	if interval <= 0 {
		// The default is MONITOR_INTERVAL's, in the dispatcher's config.
		panic(fmt.Sprintf("queue: monitor interval %s; set it (MONITOR_INTERVAL)", interval))
	}
	return &Monitor{rdb: rdb, m: m, interval: interval, log: log}
}

// Run refreshes the gauges until ctx is cancelled.
func (mo *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(mo.interval)
	defer t.Stop()
	for {
		if err := mo.Refresh(ctx); err != nil && ctx.Err() == nil {
			mo.log.Warn("queue monitor refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh reads every stream once and sets the gauges.
func (mo *Monitor) Refresh(ctx context.Context) error {
	var errs []error
	now := time.Now()
	for _, s := range core.Streams {
		st, err := Inspect(ctx, mo.rdb, s, core.ConsumerGroup, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		mo.m.QueueSize.WithLabelValues(s).Set(float64(st.Length))
		mo.m.PendingLagSeconds.WithLabelValues(core.RuntimeFor(s)).Set(st.Lag.Seconds())
	}
	n, err := mo.rdb.XLen(ctx, DeadStream).Result()
	if err != nil {
		errs = append(errs, fmt.Errorf("XLEN %s: %w", DeadStream, err))
	} else {
		mo.m.DeadLetterSize.Set(float64(n))
		mo.m.QueueSize.WithLabelValues(DeadStream).Set(float64(n))
	}
	return errors.Join(errs...)
}

// StreamState is what Inspect finds about a stream and its group.
type StreamState struct {
	Stream           string
	Length           int64 // entries in the stream: pending + not yet delivered
	Pending          int64 // delivered, not acknowledged
	Undelivered      int64 // not yet read by any consumer
	OldestPendingAge time.Duration
	// Lag is the age of the oldest unfinished entry, pending or undelivered:
	// how far behind its runtime is.
	Lag         time.Duration
	Consumers   []ConsumerState
	GroupExists bool
}

// ConsumerState is one consumer of the group.
type ConsumerState struct {
	Name    string
	Pending int64
	Idle    time.Duration
}

// Inspect reads the state of stream and group.
func Inspect(ctx context.Context, rdb *redis.Client, stream, group string, now time.Time) (StreamState, error) {
	st := StreamState{Stream: stream}
	n, err := rdb.XLen(ctx, stream).Result()
	if err != nil {
		return st, fmt.Errorf("XLEN %s: %w", stream, err)
	}
	st.Length = n
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil && !isNoStream(err) {
		return st, fmt.Errorf("XINFO GROUPS %s: %w", stream, err)
	}
	var lastDelivered string
	for _, g := range groups {
		if g.Name == group {
			st.GroupExists = true
			st.Pending = g.Pending
			lastDelivered = g.LastDeliveredID
		}
	}
	if !st.GroupExists {
		st.Undelivered = st.Length
		if first, err := firstEntryAfter(ctx, rdb, stream, "-"); err == nil && first != "" {
			st.Lag = now.Sub(idTime(first))
		}
		return st, nil
	}
	if st.Pending > 0 {
		p, err := rdb.XPending(ctx, stream, group).Result()
		if err != nil {
			return st, fmt.Errorf("XPENDING %s: %w", stream, err)
		}
		st.OldestPendingAge = now.Sub(idTime(p.Lower))
		st.Lag = st.OldestPendingAge
	}
	st.Undelivered = st.Length - st.Pending
	if st.Undelivered < 0 {
		st.Undelivered = 0
	}
	if first, err := firstEntryAfter(ctx, rdb, stream, "("+lastDelivered); err == nil && first != "" {
		if age := now.Sub(idTime(first)); age > st.Lag {
			st.Lag = age
		}
	}
	cs, err := rdb.XInfoConsumers(ctx, stream, group).Result()
	if err != nil {
		return st, fmt.Errorf("XINFO CONSUMERS %s: %w", stream, err)
	}
	for _, c := range cs {
		st.Consumers = append(st.Consumers, ConsumerState{Name: c.Name, Pending: c.Pending, Idle: c.Idle})
	}
	if st.Lag < 0 {
		st.Lag = 0
	}
	return st, nil
}

func firstEntryAfter(ctx context.Context, rdb *redis.Client, stream, start string) (string, error) {
	if start == "(" {
		start = "-"
	}
	msgs, err := rdb.XRangeN(ctx, stream, start, "+", 1).Result()
	if err != nil || len(msgs) == 0 {
		return "", err
	}
	return msgs[0].ID, nil
}

func isNoStream(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "no such key") || strings.Contains(err.Error(), "ERR no such"))
}
