package sandbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// countingJail records how many Runs overlap; each Run lasts until release
// is closed.
type countingJail struct {
	Jail
	running, peak atomic.Int32
	release       chan struct{}
}

func (c *countingJail) Run(ctx context.Context, req Request) (Result, error) {
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	<-c.release
	return Result{Stdout: req.Code}, nil
}

func (c *countingJail) Check(context.Context) error { return nil }

func TestLimitBoundsConcurrentRuns(t *testing.T) {
	tests := []struct{ slots, callers, want int }{
		{1, 4, 1},
		{2, 5, 2},
		{0, 3, 1}, // n < 1 means 1
		{4, 2, 2},
	}
	for _, tt := range tests {
		inner := &countingJail{release: make(chan struct{})}
		j := Limit(inner, tt.slots)
		var wg sync.WaitGroup
		var entered atomic.Int32
		for i := 0; i < tt.callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				entered.Add(1)
				if res, err := j.Run(context.Background(), Request{Code: "x"}); err != nil || res.Stdout != "x" {
					t.Errorf("Run: %v %+v", err, res)
				}
			}()
		}
		// Wait until every caller is in Run and as many runs as can
		// start have started, then give a run over the limit, if the
		// limiter let one through, the chance to show up in peak.
		for entered.Load() < int32(tt.callers) || inner.running.Load() < int32(tt.want) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		close(inner.release)
		wg.Wait()
		if got := inner.peak.Load(); got != int32(tt.want) {
			t.Errorf("slots %d, %d callers: peak %d runs at once, want %d", tt.slots, tt.callers, got, tt.want)
		}
	}
}

func TestLimitWaitEndsWithContext(t *testing.T) {
	inner := &countingJail{release: make(chan struct{})}
	defer close(inner.release)
	j := Limit(inner, 1)
	go j.Run(context.Background(), Request{}) // takes the only slot
	for inner.running.Load() < 1 {
		time.Sleep(time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res, err := j.Run(ctx, Request{})
	if err != nil || res.ErrorType != core.ErrTimeout {
		t.Errorf("deadline while waiting: err %v, result %+v; want a timeout result", err, res)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	res, err = j.Run(ctx, Request{})
	if err == nil || res.ErrorType != core.ErrSystem {
		t.Errorf("cancelled while waiting: err %v, result %+v; want a system error", err, res)
	}
	if err := j.Check(context.Background()); err != nil {
		t.Errorf("Check waits for or fails on a slot: %v", err)
	}
}
