// Package dispatch streams tasks.jsonl into the task streams: it validates
// each line, rejects bad ones with a reason, enqueues the rest with dedup, and
// remembers how far it got so a restart resumes instead of starting over.
package dispatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/queue"
)

// KeyPositionPrefix prefixes the hash that stores how far the dispatcher has
// read a task file: dispatcher:position:<absolute path> with fields offset
// (bytes), line, and file (device:inode, to notice a replaced file). It is
// written in the same atomic step as the batch that reaches it.
const KeyPositionPrefix = "dispatcher:position:"

// EnvConfig is the dispatcher's configuration in the environment: the one
// place its variables and their defaults are written. cmd/dispatcher reads
// it; `adpctl up` (localrun) and New take their defaults from it.
type EnvConfig struct {
	TaskFile     string        `env:"TASK_FILE" envDefault:"tasks.jsonl" valid:"nonempty"`
	Follow       bool          `env:"DISPATCH_FOLLOW" envDefault:"true"`
	PollInterval time.Duration `env:"DISPATCH_POLL_INTERVAL" envDefault:"500ms" valid:">0"`
	BatchSize    int           `env:"DISPATCH_BATCH_SIZE" envDefault:"256"`
}

// Check bounds DISPATCH_BATCH_SIZE by MaxBatchSize (envconfig.Checker).
func (c *EnvConfig) Check() error {
	return envconfig.Range("DISPATCH_BATCH_SIZE", c.BatchSize, 1, MaxBatchSize)
}

// DefaultEnvConfig is EnvConfig with every default, as an unset
// environment gives it.
func DefaultEnvConfig() EnvConfig {
	var c EnvConfig
	if err := envconfig.Load(&c, map[string]string{}); err != nil {
		panic(fmt.Sprintf("dispatch: the defaults of EnvConfig: %v", err)) // TestDefaultEnvConfig
	}
	return c
}

// Defaults of Config that the environment does not set, and bounds.
const (
	DefaultPipelineBatches = 16
	MaxBatchSize           = 4096
	// maxLoggedDuplicates bounds duplicate log lines per process: replaying a
	// large file must not flood the log. All are counted in the metric.
	maxLoggedDuplicates = 1000
)

// ErrNoValidTask is returned for a task file none of whose lines is a valid
// task: an empty file, or one whose every line was rejected. A run that
// would do nothing is an error, not a success with 0 tasks.
var ErrNoValidTask = errors.New("no valid task")

// Config configures a Dispatcher.
type Config struct {
	TaskFile string
	// Follow keeps watching TaskFile for appended lines, and survives it being
	// created later, truncated or replaced. Without Follow, Run returns after
	// the file is dispatched; an unterminated last line is then taken as
	// complete.
	Follow       bool
	PollInterval time.Duration
	// RejectedFile receives one JSON line per rejected input line.
	RejectedFile string
	// BatchSize is tasks per atomic script call; PipelineBatches is script
	// calls per round trip.
	BatchSize       int
	PipelineBatches int
}

// Dispatcher moves a task file into Redis. See the package doc.
type Dispatcher struct {
	cfg  Config
	rdb  *redis.Client
	prod *queue.Producer
	m    *metrics.Set
	log  *slog.Logger

	path      string // absolute TaskFile
	posKey    string
	rejected  *rejectLog
	dupLogged atomic.Int64
	ready     atomic.Bool

	// confirmed is the position of the last batch Redis acknowledged. Redis
	// stores the position atomically with each batch, so the stored position
	// is never behind it, unless Redis lost acknowledged writes (restarted
	// from an AOF missing its last second): see checkLost.
	confirmedMu sync.Mutex
	confirmed   position
}

// New returns a Dispatcher; Run starts it.
func New(cfg Config, rdb *redis.Client, m *metrics.Set, log *slog.Logger) (*Dispatcher, error) {
	def := DefaultEnvConfig()
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = def.PollInterval
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = def.BatchSize
	}
	// The enqueue script unpacks a batch onto Lua's stack (limit ~8000).
	cfg.BatchSize = min(cfg.BatchSize, MaxBatchSize)
	if cfg.PipelineBatches <= 0 {
		cfg.PipelineBatches = DefaultPipelineBatches
	}
	path, err := filepath.Abs(cfg.TaskFile)
	if err != nil {
		return nil, fmt.Errorf("task file %q: %w", cfg.TaskFile, err)
	}
	rej, err := openRejectLog(cfg.RejectedFile)
	if err != nil {
		return nil, err
	}
	return &Dispatcher{
		cfg: cfg, rdb: rdb, prod: queue.NewProducer(rdb), m: m,
		log:  log.With("task_file", path),
		path: path, posKey: KeyPositionPrefix + path, rejected: rej,
	}, nil
}

// Ready reports whether the dispatcher has opened its input and reached Redis.
func (d *Dispatcher) Ready() bool { return d.ready.Load() }

// Close releases the rejected-lines file.
func (d *Dispatcher) Close() error { return d.rejected.close() }

// work is one round trip: several batches and the input lines of their tasks.
type work struct {
	batches []queue.Batch
	lines   [][]int
	last    position // position of the last batch
}

// Run dispatches until the file is done (no Follow) or ctx is cancelled.
func (d *Dispatcher) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	ch := make(chan work, 2) // reader runs at most two round trips ahead
	g.Go(func() error { return d.send(ctx, ch) })
	g.Go(func() error {
		defer close(ch)
		return d.read(ctx, ch)
	})
	return g.Wait()
}

// send applies round trips in order, retrying while Redis is unreachable:
// nothing read is dropped, and the reader blocks meanwhile.
func (d *Dispatcher) send(ctx context.Context, ch <-chan work) error {
	for w := range ch {
		var outs [][]queue.Outcome
		delay := 100 * time.Millisecond
		for {
			var err error
			outs, err = d.prod.EnqueueBatches(ctx, w.batches)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			d.ready.Store(false)
			d.log.Error("enqueue failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
		}
		d.ready.Store(true)
		d.setConfirmed(w.last)
		for i, b := range w.batches {
			for j, o := range outs[i] {
				t := &b.Tasks[j]
				if o.Enqueued > 0 {
					d.m.TasksSubmitted.WithLabelValues(string(t.TaskType), core.RuntimeFor(core.StreamFor(t.TaskType))).Add(float64(o.Enqueued))
				}
				if o.Duplicates == 0 {
					continue
				}
				d.m.TasksDuplicate.Add(float64(o.Duplicates))
				switch n := d.dupLogged.Add(1); {
				case n <= maxLoggedDuplicates:
					if o.Enqueued > 0 {
						d.log.Info("task already dispatched with fewer samples; enqueued the new attempts", "line", w.lines[i][j], "task_id", t.TaskID, "new_attempts", o.Enqueued, "known_attempts", o.Duplicates)
					} else {
						d.log.Warn("duplicate task skipped", "line", w.lines[i][j], "task_id", t.TaskID)
					}
				case n == maxLoggedDuplicates+1:
					d.log.Warn("further duplicates are counted in tasks_duplicate_total but not logged")
				}
			}
		}
	}
	return nil
}

// position is where reading resumes.
type position struct {
	file   string // device:inode
	offset int64
	line   int
}

func (d *Dispatcher) loadPosition(ctx context.Context) (position, error) {
	h, err := d.rdb.HGetAll(ctx, d.posKey).Result()
	if err != nil {
		return position{}, fmt.Errorf("read position %s: %w", d.posKey, err)
	}
	off, _ := strconv.ParseInt(h["offset"], 10, 64)
	line, _ := strconv.Atoi(h["line"])
	return position{file: h["file"], offset: off, line: line}, nil
}

func (p position) fields() map[string]string {
	return map[string]string{"file": p.file, "offset": strconv.FormatInt(p.offset, 10), "line": strconv.Itoa(p.line)}
}

func (d *Dispatcher) setConfirmed(p position) {
	d.confirmedMu.Lock()
	d.confirmed = p
	d.confirmedMu.Unlock()
}

// checkLost reports whether Redis forgot batches it acknowledged: its stored
// position is behind the last one confirmed. The tasks of those batches are
// gone with their dedup keys, so reading again from the stored position
// sends them again (dedup skips whatever did survive).
func (d *Dispatcher) checkLost(ctx context.Context) bool {
	d.confirmedMu.Lock()
	c := d.confirmed // read before the stored one: that one only grows meanwhile
	d.confirmedMu.Unlock()
	if c.file == "" {
		return false
	}
	stored, err := d.loadPosition(ctx)
	if err != nil || (stored.file == c.file && stored.offset >= c.offset) {
		return false
	}
	d.log.Warn("Redis lost enqueued tasks (restarted from an older AOF?); reading again from its stored position",
		"stored_offset", stored.offset, "confirmed_offset", c.offset)
	return true
}

// errReopen asks read to open the path again (replaced or removed file).
var errReopen = errors.New("task file replaced")

func (d *Dispatcher) read(ctx context.Context, ch chan<- work) error {
	waiting := false
	for ctx.Err() == nil {
		f, err := os.Open(d.path)
		if errors.Is(err, os.ErrNotExist) {
			if !d.cfg.Follow {
				return fmt.Errorf("task file %s does not exist", d.path)
			}
			if !waiting {
				d.log.Info("waiting for the task file to appear")
				waiting = true
			}
			if !sleepCtx(ctx, d.cfg.PollInterval) {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("open task file: %w", err)
		}
		waiting = false
		err = d.readFile(ctx, f, ch)
		_ = f.Close()
		if errors.Is(err, errReopen) {
			continue
		}
		return err
	}
	return nil
}

func (d *Dispatcher) readFile(ctx context.Context, f *os.File, ch chan<- work) error {
	id, size, err := fileID(f)
	if err != nil {
		return err
	}
	var pos position
	for {
		pos, err = d.loadPosition(ctx)
		if err == nil {
			break
		}
		d.log.Error("cannot read the stored position; retrying", "err", err)
		if !sleepCtx(ctx, time.Second) {
			return nil
		}
	}
	start := position{file: id}
	defer d.setConfirmed(position{}) // a reopen starts over from the stored position
	if pos.file == id && pos.offset <= size {
		start = pos
		if pos.offset > 0 {
			d.log.Info("resuming", "offset", pos.offset, "line", pos.line)
		}
	} else if pos.file != "" {
		d.log.Info("task file is new or was replaced; reading from the start (dedup skips tasks already dispatched)")
	}
	if _, err := f.Seek(start.offset, io.SeekStart); err != nil {
		return fmt.Errorf("seek task file to %d: %w", start.offset, err)
	}
	d.ready.Store(true)

	lr := newLineReader(f, core.MaxTaskBytes, start.offset, start.line)
	b := &batcher{d: d, ch: ch, file: id, sent: start}
	// fromStart: this read covers the whole file, so at its end the file is
	// known to hold no valid task when none was parsed (told once).
	fromStart, toldEmpty := start.offset == 0, false
	for {
		res, err := lr.next()
		if err == nil {
			if err := b.add(ctx, res, lr); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read task file at line %d: %w", lr.line+1, err)
		}
		if res.partial && !d.cfg.Follow {
			// The file is complete: an unterminated last line is a line.
			lr.consumePartial(res)
			res.data = bytes.TrimRight(res.data, "\r")
			if err := b.add(ctx, res, lr); err != nil {
				return err
			}
		}
		if err := b.flush(ctx, lr); err != nil {
			return err
		}
		if fromStart && b.valid == 0 && !toldEmpty {
			err := fmt.Errorf("task file %s has %w: %d lines rejected (reasons in %s)", d.path, ErrNoValidTask, b.rejected, d.cfg.RejectedFile)
			if !d.cfg.Follow {
				return err
			}
			d.log.Error("waiting for valid tasks to be appended", "err", err)
			toldEmpty = true
		}
		if !d.cfg.Follow {
			d.log.Info("task file dispatched", "lines", lr.line)
			return nil
		}
		// Follow: wait for more, and notice replacement or truncation.
		if !sleepCtx(ctx, d.cfg.PollInterval) {
			return nil
		}
		st, err := os.Stat(d.path)
		if err != nil || statID(st) != id {
			d.log.Info("task file replaced or removed; reopening")
			return errReopen
		}
		if st.Size() < lr.offset {
			d.log.Warn("task file truncated; reading from the start", "size", st.Size(), "offset", lr.offset)
			lr.offset, lr.line = 0, 0
			d.setConfirmed(position{})
		}
		if d.checkLost(ctx) {
			return errReopen
		}
		if res.partial || st.Size() < b.sent.offset {
			// Drop the buffered partial line; read it again once complete.
			if _, err := f.Seek(lr.offset, io.SeekStart); err != nil {
				return fmt.Errorf("seek task file: %w", err)
			}
			lr = newLineReader(f, core.MaxTaskBytes, lr.offset, lr.line)
		}
	}
}

// batcher groups tasks into batches and batches into round trips.
type batcher struct {
	d     *Dispatcher
	ch    chan<- work
	file  string
	cur   []core.TaskSpec
	lines []int
	w     work
	sent  position // last position handed to the sender
	// valid and rejected count the lines parsed by this batcher.
	valid, rejected int
}

func (b *batcher) add(ctx context.Context, res readResult, lr *lineReader) error {
	switch t, ok := b.d.parseLine(res); {
	case ok:
		b.valid++
		b.cur = append(b.cur, t)
		b.lines = append(b.lines, res.line)
	case res.tooLong > 0 || len(bytes.TrimSpace(res.data)) > 0:
		b.rejected++
	}
	if len(b.cur) >= b.d.cfg.BatchSize {
		b.cut(lr)
		if len(b.w.batches) >= b.d.cfg.PipelineBatches {
			return b.send(ctx)
		}
	}
	return nil
}

// cut closes the current batch at the reader's position.
func (b *batcher) cut(lr *lineReader) {
	p := position{file: b.file, offset: lr.offset, line: lr.line}
	b.w.batches = append(b.w.batches, queue.Batch{
		Tasks:    b.cur,
		Position: &queue.Position{Key: b.d.posKey, Fields: p.fields()},
	})
	b.w.lines = append(b.w.lines, b.lines)
	b.w.last = p
	b.cur, b.lines = nil, nil
	b.sent = p
}

// flush sends what is pending, including a position-only batch when only
// rejected or blank lines were read since the last send.
func (b *batcher) flush(ctx context.Context, lr *lineReader) error {
	if len(b.cur) > 0 || lr.offset != b.sent.offset || lr.line != b.sent.line {
		b.cut(lr)
	}
	return b.send(ctx)
}

func (b *batcher) send(ctx context.Context) error {
	if len(b.w.batches) == 0 {
		return nil
	}
	// Rejected lines reach disk before the position that skips them.
	if err := b.d.rejected.flush(); err != nil {
		return err
	}
	select {
	case b.ch <- b.w:
	case <-ctx.Done():
		return nil
	}
	b.w = work{}
	return nil
}

// parseLine validates one line; a bad line is logged and recorded as rejected.
func (d *Dispatcher) parseLine(res readResult) (core.TaskSpec, bool) {
	if res.tooLong > 0 {
		d.reject(res.line, &core.InvalidTaskError{Reason: fmt.Sprintf("line is %d bytes, more than the limit of %d", res.tooLong, core.MaxTaskBytes)})
		return core.TaskSpec{}, false
	}
	if len(bytes.TrimSpace(res.data)) == 0 {
		return core.TaskSpec{}, false // blank lines are allowed
	}
	t, err := parseTaskLine(d.path, res.line, res.data)
	if err != nil {
		d.reject(res.line, err)
		return core.TaskSpec{}, false
	}
	return t, true
}

func (d *Dispatcher) reject(line int, err error) {
	var inv *core.InvalidTaskError
	rec := rejected{Time: time.Now().UTC().Format(time.RFC3339Nano), File: d.path, Line: line, Reason: err.Error()}
	if errors.As(err, &inv) {
		rec.TaskID, rec.Field = inv.TaskID, inv.Field
		inv.Line = line
		rec.Reason = inv.Error()
	}
	d.m.TasksRejected.Inc()
	d.log.Warn("line rejected", "line", line, "task_id", rec.TaskID, "field", rec.Field, "reason", rec.Reason)
	if werr := d.rejected.write(rec); werr != nil {
		d.log.Error("cannot record rejected line", "line", line, "err", werr)
	}
}

// parseTaskLine parses line n of the task file at path. A line without
// task_id gets a UUID derived from the file, line number and content, so
// re-reading it after a crash yields the same id (and dedup works).
func parseTaskLine(path string, n int, data []byte) (core.TaskSpec, error) {
	return core.ParseTaskWithDefaultIDFunc(data, func() string {
		return uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "file://%s#L%d:%s", path, n, data)).String()
	})
}

// ReadTasks parses a whole task file as the dispatcher does (same ids for
// lines without task_id) and returns its valid tasks, without duplicates,
// and the rejected lines' errors (each a *core.InvalidTaskError naming its
// line). A repeated id keeps its first line,
// with the largest samples of its lines: the dispatcher enqueues the
// attempts a later line adds. `adpctl up` uses it to know when every
// attempt has a result.
func ReadTasks(file string) (tasks []core.TaskSpec, rejected []error, err error) {
	path, err := filepath.Abs(file)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open task file: %w", err)
	}
	defer f.Close()
	lr := newLineReader(f, core.MaxTaskBytes, 0, 0)
	seen := map[string]int{} // id → index in tasks
	for {
		res, err := lr.next()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("read task file: %w", err)
		}
		if err != nil && !res.partial {
			return tasks, rejected, nil
		}
		switch {
		case res.tooLong > 0:
			rejected = append(rejected, &core.InvalidTaskError{Line: res.line, Reason: fmt.Sprintf("line is %d bytes, more than the limit of %d", res.tooLong, core.MaxTaskBytes)})
		case len(bytes.TrimSpace(res.data)) > 0:
			data := res.data
			if res.partial {
				data = bytes.TrimRight(data, "\r") // as the dispatcher does
			}
			t, perr := parseTaskLine(path, res.line, data)
			var inv *core.InvalidTaskError
			if errors.As(perr, &inv) {
				inv.Line = res.line
			}
			if perr != nil {
				rejected = append(rejected, perr)
			} else if i, ok := seen[t.TaskID]; ok {
				tasks[i].Samples = max(tasks[i].Samples, t.Samples)
			} else {
				seen[t.TaskID] = len(tasks)
				tasks = append(tasks, t)
			}
		}
		if err != nil {
			return tasks, rejected, nil // an unterminated last line, taken as complete
		}
	}
}

// rejected is one line of rejected.jsonl.
type rejected struct {
	Time   string `json:"time"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	TaskID string `json:"task_id,omitempty"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

type rejectLog struct {
	f *os.File
	w *bufio.Writer
}

func openRejectLog(path string) (*rejectLog, error) {
	if path == "" {
		return &rejectLog{}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open rejected-lines file: %w", err)
	}
	return &rejectLog{f: f, w: bufio.NewWriter(f)}, nil
}

func (r *rejectLog) write(rec rejected) error {
	if r.f == nil {
		return nil
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, _ = r.w.Write(b)
	return r.w.WriteByte('\n')
}

func (r *rejectLog) flush() error {
	if r.f == nil {
		return nil
	}
	if err := r.w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", r.f.Name(), err)
	}
	return nil
}

func (r *rejectLog) close() error {
	if r.f == nil {
		return nil
	}
	err := r.flush()
	return errors.Join(err, r.f.Close())
}

func fileID(f *os.File) (string, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("stat task file: %w", err)
	}
	return statID(st), st.Size(), nil
}

func statID(st os.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Dev, s.Ino)
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
