package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
)

// Message is one stream entry handed to a Handler.
type Message struct {
	Stream      string
	ID          string
	Task        core.TaskSpec
	Deliveries  int       // 1 on first delivery
	SubmittedAt time.Time // from the entry's submitted_at, else its id

	parseErr error
	held     func(ctx context.Context) error
}

// StillHeld confirms, in Redis, that this consumer still holds the entry
// (and renews its lease). A handler calls it right before storing a result:
// a process that was frozen (SIGSTOP, a long GC or swap storm) past its lease
// may resume after another consumer took the entry, or after it was
// dead-lettered, and must not write a result for it. It returns an error
// wrapping ErrLeaseLost when the entry is no longer held; other errors mean
// Redis could not be asked. A Message not from a Consumer is always held.
func (m *Message) StillHeld(ctx context.Context) error {
	if m.held == nil {
		return nil
	}
	return m.held(ctx)
}

// Handler processes one message. Returning nil means the result is durably
// stored and the entry is acknowledged; a task's own failure (wrong answer,
// timeout of the program...) is a result and returns nil. A non-nil error is a
// system error (Redis down, disk full): the entry stays pending and is
// delivered again after the lease expires, up to MaxDeliveries times.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// ErrLeaseLost is the cause of a handler's context when another consumer
// reclaimed its entry; the handler's result will not be acknowledged.
var ErrLeaseLost = errors.New("lease lost: entry reclaimed by another consumer")

// ConsumerConfig configures a Consumer. Zero values take the defaults.
type ConsumerConfig struct {
	Stream string // required
	Group  string // default core.ConsumerGroup
	// Name must be unique per process; default ConsumerName(Runtime).
	Name    string
	Runtime string // metrics label; default core.RuntimeFor(Stream)
	// Concurrency is the number of handlers running at once; the consumer
	// reads only as many entries as it has free slots. Default 1.
	Concurrency int
	// LeaseTTL is how long an entry may go without renewal before another
	// consumer reclaims it. Holders renew every LeaseTTL/3. Required (LEASE_TTL,
	// default 30s). Too
	// low re-delivers entries of a slow, stalled process; too high delays
	// recovery after a crash.
	LeaseTTL time.Duration
	// MaxDeliveries is how many times an entry is delivered before it is
	// moved to tasks:dead. Required (MAX_DELIVERIES, default 3).
	MaxDeliveries int
	// ShutdownGrace is how long in-flight handlers may run after shutdown
	// begins; then their context is cancelled and what did not finish stays
	// pending for another consumer. Required (SHUTDOWN_GRACE, default 30s).
	ShutdownGrace time.Duration
	// Block is the XREADGROUP block time: the longest a shutdown waits for a
	// blocked read. Default 1s.
	Block time.Duration
	// Paused, when set, is asked before each read: while it returns true
	// the consumer takes no entry, new or reclaimed. A runtime that cannot
	// store results (full disk) would otherwise fail every entry it takes
	// and push each one towards the dead-letter stream. In-flight handlers
	// are not affected.
	Paused func() bool
}

func (c *ConsumerConfig) setDefaults() {
	if c.Group == "" {
		c.Group = core.ConsumerGroup
	}
	if c.Runtime == "" {
		c.Runtime = core.RuntimeFor(c.Stream)
	}
	if c.Name == "" {
		c.Name = ConsumerName(c.Runtime)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	// LeaseTTL, MaxDeliveries and ShutdownGrace have no fallback here:
	// their defaults are the environment's (LEASE_TTL, MAX_DELIVERIES,
	// SHUTDOWN_GRACE in internal/service), written once.
	switch {
	case c.LeaseTTL <= 0:
		panic(fmt.Sprintf("queue: ConsumerConfig.LeaseTTL is %s; set it (LEASE_TTL)", c.LeaseTTL))
	case c.MaxDeliveries <= 0:
		panic(fmt.Sprintf("queue: ConsumerConfig.MaxDeliveries is %d; set it (MAX_DELIVERIES)", c.MaxDeliveries))
	case c.ShutdownGrace <= 0:
		panic(fmt.Sprintf("queue: ConsumerConfig.ShutdownGrace is %s; set it (SHUTDOWN_GRACE)", c.ShutdownGrace))
	}
	if c.Block <= 0 {
		c.Block = time.Second
	}
}

// ConsumerName returns <runtime>-<hostname>-<pid>: unique per process, and
// readable in `adpctl status`.
func ConsumerName(runtime string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s-%s-%d", runtime, host, os.Getpid())
}

// lastErrorTTL bounds how long an error note outlives its entry.
const lastErrorTTL = 7 * 24 * time.Hour

// Consumer runs a Handler over a stream. See the package doc.
type Consumer struct {
	rdb *redis.Client
	cfg ConsumerConfig
	h   Handler
	m   *metrics.Set
	log *slog.Logger

	slots chan struct{} // one token per free handler slot

	mu       sync.Mutex
	inflight map[string]context.CancelCauseFunc // entry id → cancel of its handler
}

// NewConsumer returns a Consumer; Run starts it.
func NewConsumer(rdb *redis.Client, cfg ConsumerConfig, h Handler, m *metrics.Set, log *slog.Logger) *Consumer {
	cfg.setDefaults()
	c := &Consumer{
		rdb: rdb, cfg: cfg, h: h, m: m,
		log:      log.With("stream", cfg.Stream, "consumer", cfg.Name),
		slots:    make(chan struct{}, cfg.Concurrency),
		inflight: map[string]context.CancelCauseFunc{},
	}
	for i := 0; i < cfg.Concurrency; i++ {
		c.slots <- struct{}{}
	}
	return c
}

// Name returns the consumer name.
func (c *Consumer) Name() string { return c.cfg.Name }

// EnsureGroup creates the consumer group (and the stream) if missing. The
// group starts at the beginning of the stream, so tasks dispatched before the
// first runtime started are served.
func EnsureGroup(ctx context.Context, rdb *redis.Client, stream, group string) error {
	err := rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s on %s: %w", group, stream, err)
	}
	return nil
}

// Run consumes until ctx is cancelled, then drains: no new reads, in-flight
// handlers get ShutdownGrace to finish (and are acked), then their context is
// cancelled. Run returns nil after a clean drain.
func (c *Consumer) Run(ctx context.Context) error {
	// Handlers run under workCtx, which outlives ctx by the grace period.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var handlers sync.WaitGroup
	renewDone := make(chan struct{})
	stopRenew := make(chan struct{})
	go func() {
		defer close(renewDone)
		c.renewLoop(stopRenew)
	}()

	c.fetchLoop(ctx, workCtx, &handlers)

	// Drain.
	drained := make(chan struct{})
	go func() { handlers.Wait(); close(drained) }()
	n := c.inflightCount()
	if n > 0 {
		c.log.Info("draining", "in_flight", n, "grace", c.cfg.ShutdownGrace)
	}
	select {
	case <-drained:
	case <-time.After(c.cfg.ShutdownGrace):
		c.log.Warn("shutdown grace over; cancelling handlers, their entries stay pending", "in_flight", c.inflightCount())
		cancelWork()
		<-drained
	}
	close(stopRenew)
	<-renewDone
	return nil
}

func (c *Consumer) inflightCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// fetchLoop reads entries while slots are free: reclaimed ones first, then
// new ones.
func (c *Consumer) fetchLoop(ctx, workCtx context.Context, handlers *sync.WaitGroup) {
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	var lastReclaim, lastJanitor time.Time
	reclaimEvery := c.cfg.LeaseTTL / 2
	groupReady := false
	paused := false
	for ctx.Err() == nil {
		if c.cfg.Paused != nil && c.cfg.Paused() {
			if !paused {
				c.log.Warn("unhealthy: taking no entries until healthy again")
				paused = true
			}
			sleepCtx(ctx, c.cfg.Block)
			continue
		}
		if paused {
			c.log.Info("healthy again: taking entries")
			paused = false
		}
		// Wait for one free slot, then take every other free one.
		select {
		case <-ctx.Done():
			return
		case <-c.slots:
		}
		free := 1
	take:
		for free < c.cfg.Concurrency {
			select {
			case <-c.slots:
				free++
			default:
				break take
			}
		}

		var msgs []*Message
		var err error
		if !groupReady {
			err = EnsureGroup(ctx, c.rdb, c.cfg.Stream, c.cfg.Group)
			groupReady = err == nil
		}
		if err == nil && time.Since(lastReclaim) >= reclaimEvery {
			var examined int
			msgs, examined, err = c.reclaim(ctx, free)
			// Caught up only when fewer idle entries than asked for were
			// found: dead-lettered ones use up the count without being claimed.
			if err == nil && examined < free {
				lastReclaim = time.Now() // caught up; otherwise reclaim again next round
			}
			if err == nil && time.Since(lastJanitor) >= janitorEvery {
				lastJanitor = time.Now()
				c.forgetIdleConsumers(ctx)
			}
		}
		if err == nil && len(msgs) == 0 {
			msgs, err = c.read(ctx, free)
		}
		for i := len(msgs); i < free; i++ {
			c.slots <- struct{}{}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.Contains(err.Error(), "NOGROUP") {
				groupReady = false
			}
			d := backoff.next()
			c.log.Error("read from stream failed; retrying", "err", err, "retry_in", d)
			sleepCtx(ctx, d)
			continue
		}
		backoff.reset()
		for _, m := range msgs {
			c.start(workCtx, handlers, m)
		}
	}
}

// read takes up to n new entries.
func (c *Consumer) read(ctx context.Context, n int) ([]*Message, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.cfg.Group, Consumer: c.cfg.Name,
		Streams: []string{c.cfg.Stream, ">"},
		Count:   int64(n), Block: c.cfg.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("XREADGROUP %s: %w", c.cfg.Stream, err)
	}
	var msgs []*Message
	for _, s := range res {
		for _, e := range s.Messages {
			msgs = append(msgs, c.message(e.ID, e.Values, 1))
		}
	}
	return msgs, nil
}

// reclaim takes up to n entries whose lease expired, dead-lettering those
// that reached MaxDeliveries.
func (c *Consumer) reclaim(ctx context.Context, n int) ([]*Message, int, error) {
	res, err := reclaimScript.Run(ctx, c.rdb,
		[]string{c.cfg.Stream, DeadStream},
		c.cfg.Group, c.cfg.Name, c.cfg.LeaseTTL.Milliseconds(), n, c.cfg.MaxDeliveries,
		lastErrorKey(c.cfg.Stream, ""),
	).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("reclaim from %s: %w", c.cfg.Stream, err)
	}
	var msgs []*Message
	for _, r := range res {
		row, ok := r.([]any)
		if !ok || len(row) != 4 {
			continue
		}
		kind, _ := row[0].(string)
		id, _ := row[1].(string)
		deliveries, _ := row[2].(int64)
		switch kind {
		case "deleted":
			c.log.Warn("entry deleted from the stream while pending; acknowledged", "entry_id", id)
		case "dead":
			reason, _ := row[3].(string)
			c.log.Error("entry dead-lettered", "entry_id", id, "deliveries", deliveries, "last_error", reason)
			c.m.TasksDeadLettered.WithLabelValues(c.cfg.Runtime).Inc()
		case "claimed":
			c.log.Warn("entry reclaimed after its lease expired", "entry_id", id, "delivery", deliveries)
			c.m.TasksRedelivered.WithLabelValues(c.cfg.Runtime).Inc()
			msgs = append(msgs, c.message(id, flatFields(row[3]), int(deliveries)))
		}
	}
	return msgs, len(res), nil
}

// message decodes an entry. A task that cannot be parsed is kept with a zero
// Task and handled as poison by start.
func (c *Consumer) message(id string, fields map[string]any, deliveries int) *Message {
	m := &Message{Stream: c.cfg.Stream, ID: id, Deliveries: deliveries, SubmittedAt: idTime(id)}
	if s, ok := fields[FieldSubmittedAt].(string); ok {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
			m.SubmittedAt = time.Unix(0, int64(f*1e9))
		}
	}
	raw, _ := fields[FieldTask].(string)
	// A hand-written entry without task_id gets one derived from the entry id,
	// stable across deliveries.
	t, err := core.ParseTaskWithDefaultID([]byte(raw), "manual-"+id)
	if err != nil {
		m.Task = core.TaskSpec{}
		m.parseErr = err
		if raw == "" {
			m.parseErr = fmt.Errorf("entry has no %q field", FieldTask)
		}
		return m
	}
	if err := setSample(&t, fields[FieldSample]); err != nil {
		m.Task = core.TaskSpec{TaskID: t.TaskID}
		m.parseErr = err
		return m
	}
	if err := checkKind(&t, fields[FieldKind]); err != nil {
		m.Task = core.TaskSpec{TaskID: t.TaskID}
		m.parseErr = err
		return m
	}
	m.Task = t
	return m
}

// checkKind checks the entry's kind field against the kind of the task's
// own parse (absent: an older producer's entry, whose kind is the parse's).
// A producer that saw another kind parsed other constraints: running the
// task as either would run something its submitter did not check.
func checkKind(t *core.TaskSpec, v any) error {
	if v == nil {
		return nil
	}
	s, _ := v.(string)
	if k := t.Kind(); core.Kind(s) != k {
		return fmt.Errorf("field %q is %q, but the task parses as a %s task", FieldKind, s, k)
	}
	return nil
}

// setSample sets t's attempt from the entry's sample field (absent:
// attempt 0). A value that is not an attempt of t is an error: running it
// as another attempt would write over that attempt's file.
func setSample(t *core.TaskSpec, v any) error {
	if v == nil {
		return nil
	}
	s, _ := v.(string)
	k, err := strconv.Atoi(s)
	if err != nil || s != strconv.Itoa(k) {
		return fmt.Errorf("field %q is %q, not an attempt index (0..%d)", FieldSample, s, t.Samples-1)
	}
	if k < 0 || k >= t.Samples {
		return fmt.Errorf("field %q: attempt %d is out of range 0..%d (the task has samples %d)", FieldSample, k, t.Samples-1, t.Samples)
	}
	t.SampleIndex = k
	return nil
}

// start runs the handler of m in its own goroutine, holding one slot.
func (c *Consumer) start(workCtx context.Context, handlers *sync.WaitGroup, m *Message) {
	hctx, cancel := context.WithCancelCause(workCtx)
	m.held = func(ctx context.Context) error {
		var lost []string
		err := retry(ctx, 5, func() error {
			var err error
			lost, err = renewScript.Run(ctx, c.rdb, []string{c.cfg.Stream}, c.cfg.Group, c.cfg.Name, m.ID).StringSlice()
			return err
		})
		if err != nil {
			return fmt.Errorf("confirm the lease of entry %s: %w", m.ID, err)
		}
		if len(lost) > 0 {
			cancel(ErrLeaseLost)
			return fmt.Errorf("entry %s: %w", m.ID, ErrLeaseLost)
		}
		return nil
	}
	c.mu.Lock()
	c.inflight[m.ID] = cancel
	c.mu.Unlock()
	handlers.Add(1)
	go func() {
		defer handlers.Done()
		defer func() { c.slots <- struct{}{} }()
		defer func() {
			c.mu.Lock()
			delete(c.inflight, m.ID)
			c.mu.Unlock()
			cancel(nil)
		}()
		c.handle(hctx, m)
	}()
}

func (c *Consumer) handle(ctx context.Context, m *Message) {
	log := c.log.With("entry_id", m.ID, "task_id", m.Task.TaskID, "sample", m.Task.SampleIndex, "delivery", m.Deliveries)
	if m.parseErr != nil {
		// Retrying cannot fix an invalid task: dead-letter it now.
		reason := "invalid task: " + m.parseErr.Error()
		log.Error("invalid task in stream; dead-lettered", "reason", reason)
		err := retry(ctx, 3, func() error {
			return deadLetterScript.Run(context.WithoutCancel(ctx), c.rdb,
				[]string{c.cfg.Stream, DeadStream},
				c.cfg.Group, m.ID, m.Deliveries, reason, lastErrorKey(c.cfg.Stream, m.ID)).Err()
		})
		if err != nil {
			log.Error("dead-letter failed; entry stays pending", "err", err)
			return
		}
		c.m.TasksDeadLettered.WithLabelValues(c.cfg.Runtime).Inc()
		return
	}

	log.Debug("task received", "task_type", m.Task.TaskType, "samples", max(m.Task.Samples, 1), "queue_wait_s", time.Since(m.SubmittedAt).Seconds())
	err := c.safeHandle(ctx, m, log)
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaseLost) {
		log.Warn("lease lost while handling; result not acknowledged", "err", err)
		return
	}
	if err != nil {
		log.Error("handler failed; entry stays pending for redelivery", "err", err)
		note := err.Error()
		if len(note) > 2000 {
			note = note[:2000]
		}
		if serr := c.rdb.Set(context.WithoutCancel(ctx), lastErrorKey(c.cfg.Stream, m.ID), note, lastErrorTTL).Err(); serr != nil {
			log.Error("record last error failed", "err", serr)
		}
		return
	}
	// Ack after the result is durable. Redis may be briefly down: retry a
	// few times; if it stays down, the entry is redelivered and its
	// trajectory rewritten (idempotent).
	err = retry(context.WithoutCancel(ctx), 5, func() error {
		return ackScript.Run(context.WithoutCancel(ctx), c.rdb,
			[]string{c.cfg.Stream, lastErrorKey(c.cfg.Stream, m.ID)}, c.cfg.Group, m.ID).Err()
	})
	if err != nil {
		log.Error("ack failed; entry will be redelivered", "err", err)
		return
	}
	log.Debug("task acknowledged")
}

// safeHandle turns a handler panic into a system error, so one poison task
// cannot take the process down. The panic is logged with its stack on log,
// which carries the entry and task ids.
func (c *Consumer) safeHandle(ctx context.Context, m *Message, log *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return c.h.Handle(ctx, m)
}

// Consumers of restarted processes stay in the group (their names hold a pid)
// until removed; a consumer idle this long with nothing pending is removed.
const (
	idleConsumerTTL = time.Hour
	janitorEvery    = 5 * time.Minute
)

// forgetIdleConsumers deletes consumers that hold nothing and have been idle
// for idleConsumerTTL, so `adpctl status` shows the live ones. A consumer
// with pending entries is never deleted: its entries are reclaimed first.
func (c *Consumer) forgetIdleConsumers(ctx context.Context) {
	cs, err := c.rdb.XInfoConsumers(ctx, c.cfg.Stream, c.cfg.Group).Result()
	if err != nil {
		return
	}
	for _, ci := range cs {
		if ci.Name == c.cfg.Name || ci.Pending > 0 || ci.Idle < idleConsumerTTL {
			continue
		}
		// XGROUP DELCONSUMER would drop pending entries: re-check atomically.
		if n, err := delIdleConsumerScript.Run(ctx, c.rdb, []string{c.cfg.Stream}, c.cfg.Group, ci.Name).Int(); err == nil && n == 1 {
			c.log.Info("removed idle consumer from the group", "idle_consumer", ci.Name, "idle", ci.Idle)
		}
	}
}

// renewLoop renews the lease of every in-flight entry every LeaseTTL/3 and
// cancels the handlers of entries another consumer took.
func (c *Consumer) renewLoop(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		ids := make([]any, 0, len(c.inflight))
		for id := range c.inflight {
			ids = append(ids, id)
		}
		c.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LeaseTTL/3)
		lost, err := renewScript.Run(ctx, c.rdb, []string{c.cfg.Stream},
			append([]any{c.cfg.Group, c.cfg.Name}, ids...)...).StringSlice()
		cancel()
		if err != nil {
			c.log.Error("lease renewal failed", "err", err, "entries", len(ids))
			continue
		}
		c.mu.Lock()
		for _, id := range lost {
			if cancelFn, ok := c.inflight[id]; ok {
				cancelFn(ErrLeaseLost)
			}
		}
		c.mu.Unlock()
	}
}

func flatFields(v any) map[string]any {
	list, _ := v.([]any)
	out := make(map[string]any, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		out[k] = list[i+1]
	}
	return out
}

// idTime is the time encoded in a stream entry id (ms-seq).
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func retry(ctx context.Context, attempts int, f func() error) error {
	b := newBackoff(100*time.Millisecond, 2*time.Second)
	var err error
	for i := 0; i < attempts; i++ {
		if err = f(); err == nil {
			return nil
		}
		if i < attempts-1 {
			sleepCtx(ctx, b.next())
		}
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

type backoff struct{ cur, min, max time.Duration }

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
