package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

type bundle struct {
	redis *testsupport.Redis
	rdb   *redis.Client
	m     *metrics.Set
	log   *slog.Logger
}

func setup(t *testing.T) *bundle {
	t.Helper()
	r := testsupport.StartRedis(t)
	return &bundle{redis: r, rdb: r.Client, m: metrics.New(), log: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

func codeTask(id string) core.TaskSpec {
	return core.TaskSpec{TaskID: id, TaskType: core.TaskCode, Description: "d " + id, MaxSteps: 1, Timeout: 10, Priority: 1}
}

// runConsumer starts c and returns a stop function that cancels it and
// waits for Run to return.
func runConsumer(t *testing.T, c *Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("consumer run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("consumer did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pendingCount(t *testing.T, rdb *redis.Client, stream string) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), stream, core.ConsumerGroup).Result()
	if err != nil {
		t.Fatalf("XPENDING: %v", err)
	}
	return p.Count
}

func TestProducerDedupAcrossRestart(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	tasks := []core.TaskSpec{codeTask("a"), codeTask("b"), {TaskID: "w", TaskType: core.TaskWeb, Description: "web", MaxSteps: 1, Timeout: 1, Priority: 1}}
	got, err := NewProducer(b.rdb).Enqueue(ctx, tasks, nil)
	if err != nil {
		t.Fatal(err)
	}
	one := Outcome{Enqueued: 1}
	want := []Outcome{one, one, one}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first enqueue = %v, want %v", got, want)
	}
	// A new producer (a restarted dispatcher) and Redis restarted from its AOF.
	time.Sleep(1100 * time.Millisecond) // let appendfsync everysec flush
	b.redis.Restart()
	got, err = NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("a"), codeTask("c")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != (Outcome{Duplicates: 1}) || got[1] != one {
		t.Fatalf("after restart = %v, want [Duplicate Enqueued]", got)
	}
	if n := b.rdb.XLen(ctx, core.StreamCode).Val(); n != 3 {
		t.Errorf("tasks:code length = %d, want 3 (a, b, c)", n)
	}
	if n := b.rdb.XLen(ctx, core.StreamWeb).Val(); n != 1 {
		t.Errorf("tasks:web length = %d, want 1", n)
	}
	msgs := b.rdb.XRange(ctx, core.StreamCode, "-", "+").Val()
	for _, f := range []string{FieldTask, FieldKind, FieldSubmittedAt, FieldPriority} {
		if _, ok := msgs[0].Values[f]; !ok {
			t.Errorf("entry lacks field %q: %v", f, msgs[0].Values)
		}
	}
}

func TestProducerStoresPositionWithBatch(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	pos := &Position{Key: "dispatcher:position:test", Fields: map[string]string{"offset": "123", "line": "7"}}
	res, err := NewProducer(b.rdb).EnqueueBatches(ctx, []Batch{{Tasks: []core.TaskSpec{codeTask("x")}}, {Tasks: []core.TaskSpec{codeTask("x"), codeTask("y")}, Position: pos}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0][0] != (Outcome{Enqueued: 1}) || !res[1][0].Duplicate() || res[1][1] != (Outcome{Enqueued: 1}) {
		t.Fatalf("outcomes = %v", res)
	}
	h := b.rdb.HGetAll(ctx, pos.Key).Val()
	if h["offset"] != "123" || h["line"] != "7" {
		t.Errorf("position = %v", h)
	}
}

func TestConsumer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, b *bundle)
	}{
		{"hand XADDed entry is consumed like a dispatched one", testHandWritten},
		{"entry of a dead consumer is reclaimed and processed once", testReclaimDeadConsumer},
		{"poison entry is dead-lettered after MaxDeliveries", testPoison},
		{"invalid task is dead-lettered at once", testInvalidTask},
		{"entry deleted while pending does not loop", testDeletedWhilePending},
		{"shutdown drains in-flight work", testShutdownDrains},
		{"shutdown past grace leaves entries pending", testShutdownGraceExceeded},
		{"lease renewal keeps a long task from being stolen", testLeaseRenewal},
		{"reads only as many entries as free slots", testBoundedPrefetch},
		{"handler panic is a system error, not a crash", testPanic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, setup(t))
		})
	}
}

func (b *bundle) consumer(name string, h Handler, mod func(*ConsumerConfig)) *Consumer {
	cfg := ConsumerConfig{Stream: core.StreamCode, Name: name, Concurrency: 2, LeaseTTL: 600 * time.Millisecond, MaxDeliveries: 3, ShutdownGrace: 5 * time.Second, Block: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	return NewConsumer(b.rdb, cfg, h, b.m, b.log)
}

// recorder is a Handler that records the task ids it saw.
type recorder struct {
	mu   sync.Mutex
	seen []string
	msgs []*Message
}

func (r *recorder) Handle(_ context.Context, m *Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, m.Task.TaskID)
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func testHandWritten(t *testing.T, b *bundle) {
	ctx := context.Background()
	// As in the blueprint's runbook: redis-cli xadd tasks:code '*' task '<json>'.
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{"task", `{"task_id":"manual_test","task_type":"code","description":"print 1"}`}})
	id := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{"task", `{"task_type":"code","description":"no id"}`}}).Val()
	rec := &recorder{}
	runConsumer(t, b.consumer("c1", rec, nil))
	eventually(t, "two tasks handled", func() bool { return rec.count() == 2 })
	eventually(t, "stream empty", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	byID := map[string]*Message{}
	for _, m := range rec.msgs {
		byID[m.Task.TaskID] = m
	}
	m, ok := byID["manual_test"]
	if !ok {
		t.Fatalf("manual_test not handled; saw %v", rec.seen)
	}
	if _, ok := byID["manual-"+id]; !ok {
		t.Errorf("task without id not handled as %q (stable across deliveries); saw %v", "manual-"+id, rec.seen)
	}
	if m.Task.MaxSteps != core.DefaultMaxSteps || m.Task.Timeout != core.DefaultTimeout || m.Deliveries != 1 || m.SubmittedAt.IsZero() {
		t.Errorf("defaults not applied: %+v", m)
	}
	if n := pendingCount(t, b.rdb, core.StreamCode); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
}

// deadConsumerReads reads n entries as a consumer that then dies: they stay
// pending under its name, exactly what a kill -9 leaves behind.
func deadConsumerReads(t *testing.T, b *bundle, n int64) {
	t.Helper()
	ctx := context.Background()
	if err := EnsureGroup(ctx, b.rdb, core.StreamCode, core.ConsumerGroup); err != nil {
		t.Fatal(err)
	}
	res, err := b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: core.ConsumerGroup, Consumer: "dead-consumer", Streams: []string{core.StreamCode, ">"}, Count: n}).Result()
	if err != nil || len(res[0].Messages) != int(n) {
		t.Fatalf("dead consumer read: %v %v", res, err)
	}
}

func testReclaimDeadConsumer(t *testing.T, b *bundle) {
	ctx := context.Background()
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("t1"), codeTask("t2")}, nil); err != nil {
		t.Fatal(err)
	}
	deadConsumerReads(t, b, 1)
	rec := &recorder{}
	runConsumer(t, b.consumer("alive", rec, nil))
	eventually(t, "both handled", func() bool { return rec.count() >= 2 })
	eventually(t, "nothing pending", func() bool { return pendingCount(t, b.rdb, core.StreamCode) == 0 })
	time.Sleep(300 * time.Millisecond) // room for a wrong second delivery
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) != 2 {
		t.Fatalf("handled %v, want t1 and t2 once each", rec.seen)
	}
	for _, m := range rec.msgs {
		if m.Task.TaskID == "t1" && m.Deliveries != 2 {
			t.Errorf("reclaimed t1 delivery = %d, want 2", m.Deliveries)
		}
	}
	if v := testutilCounter(b.m.TasksRedelivered.WithLabelValues(core.RuntimeSandbox)); v != 1 {
		t.Errorf("tasks_redelivered_total = %v, want 1", v)
	}
}

func testPoison(t *testing.T, b *bundle) {
	ctx := context.Background()
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("poison")}, nil); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	h := HandlerFunc(func(context.Context, *Message) error {
		calls.Add(1)
		return errors.New("disk full")
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "dead-lettered", func() bool { return b.rdb.XLen(ctx, DeadStream).Val() == 1 })
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want MaxDeliveries=3", n)
	}
	dead := b.rdb.XRange(ctx, DeadStream, "-", "+").Val()[0].Values
	want := map[string]string{FieldSourceStream: core.StreamCode, FieldDeliveries: "3", FieldLastError: "disk full", FieldPriority: "1"}
	for k, v := range want {
		if dead[k] != v {
			t.Errorf("dead entry %s = %v, want %q", k, dead[k], v)
		}
	}
	task, err := core.ParseTask([]byte(dead[FieldTask].(string)))
	if err != nil || task.TaskID != "poison" {
		t.Errorf("dead entry task = %v (%v)", dead[FieldTask], err)
	}
	if dead[FieldSourceID] == "" || dead[FieldSubmittedAt] == nil {
		t.Errorf("dead entry lacks source_id/submitted_at: %v", dead)
	}
	if n := pendingCount(t, b.rdb, core.StreamCode); n != 0 {
		t.Errorf("pending = %d after dead-lettering", n)
	}
	if n := b.rdb.XLen(ctx, core.StreamCode).Val(); n != 0 {
		t.Errorf("stream length = %d after dead-lettering", n)
	}
	if n := b.rdb.Exists(ctx, lastErrorKey(core.StreamCode, dead[FieldSourceID].(string))).Val(); n != 0 {
		t.Errorf("last-error note left behind")
	}
}

func testInvalidTask(t *testing.T, b *bundle) {
	ctx := context.Background()
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{"task", `{"task_type":"cobol","description":"x"}`}})
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{"other", "field"}})
	// A misspelled verifier would run the task unchecked: never handled.
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{"task",
		`{"task_id":"typo","task_type":"code","description":"x","constraints":{"code":"print(1)","expected_outptu":"2"}}`}})
	rec := &recorder{}
	runConsumer(t, b.consumer("c", rec, nil))
	eventually(t, "all three dead-lettered", func() bool { return b.rdb.XLen(ctx, DeadStream).Val() == 3 })
	reasons := map[string]string{} // by whether the entry had a task field, and which
	for _, d := range b.rdb.XRange(ctx, DeadStream, "-", "+").Val() {
		task, hasTask := d.Values[FieldTask].(string)
		key := fmt.Sprint(hasTask)
		if contains(task, "typo") {
			key = "typo"
		}
		reasons[key] = d.Values[FieldLastError].(string)
	}
	if e := reasons["typo"]; !contains(e, "constraints.expected_outptu") || !contains(e, "unknown constraint") {
		t.Errorf("reason %q does not name the misspelled constraint", e)
	}
	if e := reasons["true"]; !contains(e, "task_type") || !contains(e, "cobol") {
		t.Errorf("reason %q does not name the field and value", e)
	}
	if e := reasons["false"]; !contains(e, `"task"`) {
		t.Errorf("reason %q does not say the task field is missing", e)
	}
	if rec.count() != 0 {
		t.Errorf("handler saw invalid tasks")
	}
}

func testDeletedWhilePending(t *testing.T, b *bundle) {
	ctx := context.Background()
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("gone")}, nil); err != nil {
		t.Fatal(err)
	}
	deadConsumerReads(t, b, 1)
	id := b.rdb.XRange(ctx, core.StreamCode, "-", "+").Val()[0].ID
	b.rdb.XDel(ctx, core.StreamCode, id)
	rec := &recorder{}
	runConsumer(t, b.consumer("c", rec, nil))
	eventually(t, "pending cleared", func() bool { return pendingCount(t, b.rdb, core.StreamCode) == 0 })
	time.Sleep(700 * time.Millisecond)
	if rec.count() != 0 || b.rdb.XLen(ctx, DeadStream).Val() != 0 {
		t.Errorf("deleted entry was handled (%d) or dead-lettered", rec.count())
	}
}

func testShutdownDrains(t *testing.T, b *bundle) {
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("slow1"), codeTask("slow2")}, nil)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	var finished atomic.Int32
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		started <- struct{}{}
		<-release
		finished.Add(1)
		return nil
	})
	stop := runConsumer(t, b.consumer("c", h, nil))
	<-started
	<-started
	go func() { time.Sleep(200 * time.Millisecond); close(release) }()
	stop() // returns only after the drain
	if finished.Load() != 2 {
		t.Errorf("finished = %d, want 2", finished.Load())
	}
	if n := pendingCount(t, b.rdb, core.StreamCode); n != 0 {
		t.Errorf("pending = %d after drain, want 0 (acked)", n)
	}
}

func testShutdownGraceExceeded(t *testing.T, b *bundle) {
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("stuck")}, nil)
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	stop := runConsumer(t, b.consumer("c", h, func(c *ConsumerConfig) { c.ShutdownGrace = 200 * time.Millisecond }))
	<-started
	stop()
	if n := pendingCount(t, b.rdb, core.StreamCode); n != 1 {
		t.Errorf("pending = %d, want 1 (left for another worker)", n)
	}
}

func testLeaseRenewal(t *testing.T, b *bundle) {
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("long")}, nil)
	var calls atomic.Int32
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		calls.Add(1)
		select {
		case <-time.After(2 * time.Second): // > 3 lease TTLs
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	runConsumer(t, b.consumer("a", h, nil))
	runConsumer(t, b.consumer("b", h, nil))
	eventually(t, "done", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1: the lease was not renewed", n)
	}
}

func testBoundedPrefetch(t *testing.T, b *bundle) {
	ctx := context.Background()
	var tasks []core.TaskSpec
	for i := 0; i < 10; i++ {
		tasks = append(tasks, codeTask(fmt.Sprint("p", i)))
	}
	NewProducer(b.rdb).Enqueue(ctx, tasks, nil)
	release := make(chan struct{})
	var running, maxRunning atomic.Int32
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		n := running.Add(1)
		for {
			old := maxRunning.Load()
			if n <= old || maxRunning.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return nil
	})
	runConsumer(t, b.consumer("c", h, func(c *ConsumerConfig) { c.Concurrency = 3 }))
	eventually(t, "3 running", func() bool { return running.Load() == 3 })
	time.Sleep(300 * time.Millisecond)
	if n := pendingCount(t, b.rdb, core.StreamCode); n != 3 {
		t.Errorf("pending = %d with 3 slots busy, want 3: consumer read ahead", n)
	}
	close(release)
	eventually(t, "all done", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	if maxRunning.Load() != 3 {
		t.Errorf("max concurrent handlers = %d, want 3", maxRunning.Load())
	}
}

func testPanic(t *testing.T, b *bundle) {
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("boom"), codeTask("fine")}, nil)
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		if m.Task.TaskID == "boom" {
			panic("handler bug")
		}
		return nil
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "boom dead-lettered", func() bool { return b.rdb.XLen(ctx, DeadStream).Val() == 1 })
	dead := b.rdb.XRange(ctx, DeadStream, "-", "+").Val()[0].Values
	if !contains(dead[FieldLastError].(string), "handler bug") {
		t.Errorf("last_error = %v", dead[FieldLastError])
	}
	if n := b.rdb.XLen(ctx, core.StreamCode).Val(); n != 0 {
		t.Errorf("stream length = %d; the healthy task should be done", n)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestForgetIdleConsumers(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("held")}, nil)
	EnsureGroup(ctx, b.rdb, core.StreamCode, core.ConsumerGroup)
	// "gone" holds nothing, "holder" holds an entry; both look idle for hours.
	b.rdb.XGroupCreateConsumer(ctx, core.StreamCode, core.ConsumerGroup, "gone")
	b.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: core.ConsumerGroup, Consumer: "holder", Streams: []string{core.StreamCode, ">"}, Count: 1})
	c := b.consumer("me", HandlerFunc(func(context.Context, *Message) error { return nil }), nil)
	// Pretend both have been idle longer than idleConsumerTTL: call the
	// janitor with the TTL check bypassed through the script directly.
	for _, name := range []string{"gone", "holder"} {
		n, err := delIdleConsumerScript.Run(ctx, b.rdb, []string{core.StreamCode}, core.ConsumerGroup, name).Int()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"gone": 1, "holder": 0}[name]; n != want {
			t.Errorf("delete %s = %d, want %d", name, n, want)
		}
	}
	c.forgetIdleConsumers(ctx) // nothing idle for an hour: deletes nothing more
	cs := b.rdb.XInfoConsumers(ctx, core.StreamCode, core.ConsumerGroup).Val()
	if len(cs) != 1 || cs[0].Name != "holder" || cs[0].Pending != 1 {
		t.Errorf("consumers = %+v, want only holder with its pending entry", cs)
	}
}
