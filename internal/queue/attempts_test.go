package queue

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
)

func sampledTask(id string, samples int) core.TaskSpec {
	t := codeTask(id)
	t.Samples = samples
	return t
}

// entries returns the stream's entries as "task_id/sample" (sample "-"
// when the field is absent), sorted.
func entries(t *testing.T, rdb *redis.Client, stream string) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		task, err := core.ParseTask([]byte(m.Values[FieldTask].(string)))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		s, ok := m.Values[FieldSample].(string)
		if !ok {
			s = "-"
		}
		out = append(out, task.TaskID+"/"+s)
	}
	sort.Strings(out)
	return out
}

func TestProducerEnqueuesOneEntryPerAttempt(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	p := NewProducer(b.rdb)
	// "old" was dispatched before attempts existed: its member is the bare id.
	b.rdb.SAdd(ctx, core.KeyDispatched, "old")

	tests := []struct {
		name  string
		tasks []core.TaskSpec
		want  []Outcome
		added []string // entries added by this step
	}{
		{"one attempt: one entry without a sample field",
			[]core.TaskSpec{sampledTask("one", 1)}, []Outcome{{Enqueued: 1}}, []string{"one/-"}},
		{"three attempts: three entries",
			[]core.TaskSpec{sampledTask("fib", 3)}, []Outcome{{Enqueued: 3}}, []string{"fib/0", "fib/1", "fib/2"}},
		{"the same file again: nothing",
			[]core.TaskSpec{sampledTask("fib", 3), sampledTask("one", 1)}, []Outcome{{Duplicates: 3}, {Duplicates: 1}}, nil},
		{"more samples: only the missing attempts",
			[]core.TaskSpec{sampledTask("fib", 5)}, []Outcome{{Enqueued: 2, Duplicates: 3}}, []string{"fib/3", "fib/4"}},
		{"fewer samples: nothing",
			[]core.TaskSpec{sampledTask("fib", 2)}, []Outcome{{Duplicates: 2}}, nil},
		{"a task of an old dedup set keeps attempt 0",
			[]core.TaskSpec{sampledTask("old", 2)}, []Outcome{{Enqueued: 1, Duplicates: 1}}, []string{"old/1"}},
		{"a repeat inside one batch is a duplicate",
			[]core.TaskSpec{sampledTask("twice", 2), sampledTask("twice", 3)}, []Outcome{{Enqueued: 2}, {Enqueued: 1, Duplicates: 2}}, []string{"twice/0", "twice/1", "twice/2"}},
	}
	var want []string
	for _, tc := range tests {
		got, err := p.Enqueue(ctx, tc.tasks, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: outcomes %v, want %v", tc.name, got, tc.want)
		}
		want = append(want, tc.added...)
		sort.Strings(want)
		if got := entries(t, b.rdb, core.StreamCode); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: stream holds %v, want %v", tc.name, got, want)
		}
	}
	members := b.rdb.SMembers(ctx, core.KeyDispatched).Val()
	sort.Strings(members)
	wantMembers := []string{"fib", "fib\x1f1", "fib\x1f2", "fib\x1f3", "fib\x1f4", "old", "old\x1f1", "one", "twice", "twice\x1f1", "twice\x1f2"}
	if fmt.Sprintf("%q", members) != fmt.Sprintf("%q", wantMembers) {
		t.Errorf("dedup set = %q, want %q", members, wantMembers)
	}
}

// The consumer hands each attempt to the handler with its SampleIndex; an
// entry whose sample field is not an attempt of its task is dead-lettered
// as invalid without being handled, and keeps the field.
func TestConsumerSetsSampleIndex(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{sampledTask("fib", 3), sampledTask("one", 1)}, nil); err != nil {
		t.Fatal(err)
	}
	task := `{"task_id":"hand","task_type":"code","description":"x","samples":3}`
	bad := map[string]string{"x": "not an attempt index", "3": "out of range 0..2", "-1": "out of range", "01": "not an attempt index", "": "not an attempt index"}
	for v := range bad {
		b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, task, FieldSample, v}})
	}
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, task}}) // absent: attempt 0

	var mu sync.Mutex
	seen := map[string]int{}
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[core.AttemptName(m.Task.TaskID, m.Task.SampleIndex)]++
		return nil
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "stream empty", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	mu.Lock()
	want := map[string]int{"fib": 1, "fib.sample-1": 1, "fib.sample-2": 1, "one": 1, "hand": 1}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("handled %v, want %v", seen, want)
	}
	mu.Unlock()
	dead, err := ListDead(ctx, b.rdb, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(bad), dead)
	}
	for _, d := range dead {
		v, ok := d.Fields[FieldSample]
		if !ok {
			t.Errorf("dead letter %s lost its sample field: %v", d.ID, d.Fields)
			continue
		}
		if !strings.HasPrefix(d.LastError, "invalid task: ") || !strings.Contains(d.LastError, bad[v]) {
			t.Errorf("sample %q: last_error %q, want an invalid task saying %q", v, d.LastError, bad[v])
		}
	}
}

// An attempt that fails MaxDeliveries times is dead-lettered alone, keeps
// its sample field, and a retry runs that attempt again, not attempt 0.
func TestDeadLetteredAttemptIsRetriedAsItself(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{sampledTask("fib", 3)}, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	healed := false
	done := map[int]int{}
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Task.SampleIndex == 1 && !healed {
			return errors.New("disk full")
		}
		done[m.Task.SampleIndex]++
		return nil
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "attempt 1 dead-lettered", func() bool { return b.rdb.XLen(ctx, DeadStream).Val() == 1 })
	eventually(t, "attempts 0 and 2 done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done[0] == 1 && done[2] == 1
	})
	dead, err := ListDead(ctx, b.rdb, 0)
	if err != nil || len(dead) != 1 || dead[0].Sample != 1 || dead[0].Fields[FieldSample] != "1" {
		t.Fatalf("dead letters %+v, %v; want attempt 1 alone", dead, err)
	}
	mu.Lock()
	healed = true
	mu.Unlock()
	if _, found, err := RetryDead(ctx, b.rdb, dead[0].ID); err != nil || !found {
		t.Fatalf("retry: %v %v", found, err)
	}
	eventually(t, "attempt 1 done after retry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done[1] == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if done[0] != 1 || done[2] != 1 {
		t.Errorf("attempts done %v: the retry re-ran another attempt", done)
	}
}
