package queue

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestDeadLetterRetryAndPurge(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("flaky"), codeTask("bad")}, nil)
	var healthy atomic.Bool
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		if healthy.Load() && m.Task.TaskID == "flaky" {
			return nil
		}
		return errors.New("dependency down")
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "both dead", func() bool { return b.rdb.XLen(ctx, DeadStream).Val() == 2 })

	dead, err := ListDead(ctx, b.rdb, 10)
	if err != nil || len(dead) != 2 {
		t.Fatalf("ListDead = %v, %v", dead, err)
	}
	var flaky DeadEntry
	for _, d := range dead {
		if d.SourceStream != core.StreamCode || d.Deliveries != 3 || d.LastError != "dependency down" || d.DeadAt == 0 {
			t.Errorf("dead entry = %+v", d)
		}
		if task, _ := core.ParseTask([]byte(d.Task)); task.TaskID == "flaky" {
			flaky = d
		}
	}
	healthy.Store(true)
	newID, found, err := RetryDead(ctx, b.rdb, flaky.ID)
	if err != nil || !found || newID == "" {
		t.Fatalf("RetryDead = %q %v %v", newID, found, err)
	}
	eventually(t, "retried task done", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	if n := b.rdb.XLen(ctx, DeadStream).Val(); n != 1 {
		t.Errorf("dead stream has %d entries after retry, want 1", n)
	}
	if _, found, _ := RetryDead(ctx, b.rdb, "0-1"); found {
		t.Error("retry of an unknown id reported found")
	}
	n, err := PurgeDead(ctx, b.rdb)
	if err != nil || n != 1 || b.rdb.XLen(ctx, DeadStream).Val() != 0 {
		t.Errorf("PurgeDead = %d, %v", n, err)
	}
}
