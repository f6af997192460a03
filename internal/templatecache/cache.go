// Package templatecache is the template cache of the blueprint: for a task
// seen before, the runtimes reuse the program (code tasks) or the action
// sequence (web tasks) that solved it, skipping the LLM. The cached item is
// always re-executed, never its output replayed: a cache hit still yields a
// real trajectory, marked metadata.cache_hit=true.
//
// Rules for callers:
//   - Store only what succeeded, and was verified where the task had a
//     verifier (constraints.tests, expected_output, expected_text, ...),
//     by the task's own check, untampered and unflagged (metadata.flags).
//     A program that ran but was not verifiable may be stored with
//     Verified nil; a failed or unverified-and-failed one must not be.
//   - Key on the check as well as the description (see Key).
//   - The cache is an optimisation, never a dependency: when Get returns an
//     error (Redis down, a corrupt value) treat it as a miss, count a miss,
//     log it, and go on; when Put fails, log it and keep the task's result.
//   - Metrics: count cache_hits_total{cache_type} when Get returns ok, and
//     cache_misses_total{cache_type} otherwise (error included), with
//     cache_type = the task type. Get's results are the counting hook; the
//     package stays free of Prometheus.
//
// Clearing the cache by hand: delete the keys matching template_cache:*
// (Clear does it with SCAN and UNLINK).
package templatecache

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/redis/go-redis/v9"
)

// Defaults applied by New to zero Options fields.
const (
	// DefaultTTL is how long an entry lives: 3600 s, as in the blueprint.
	DefaultTTL = time.Hour
	// DefaultOpTimeout bounds one Redis command, so a stalled Redis delays a
	// task by at most this much instead of hanging it.
	DefaultOpTimeout = 2 * time.Second
	// maxEntryBytes refuses to store a value that would bloat Redis; a
	// program or an action list is far smaller.
	maxEntryBytes = 1 << 20
)

// Entry kinds.
const (
	// KindProgram is a Python program (code and reasoning tasks).
	KindProgram = "program"
	// KindActions is a JSON list of browser actions (web tasks).
	KindActions = "actions"
)

// Entry sources.
const (
	SourceLLM   = "llm"
	SourceRules = "rules"
)

// ErrCorrupt is wrapped by Get's error when the stored value is not a valid
// Entry (not JSON, unknown kind, empty program). The caller treats it as a
// miss; the next successful Put overwrites the value.
var ErrCorrupt = errors.New("templatecache: corrupt entry")

// Entry is the value stored under a key, as JSON.
type Entry struct {
	// Kind is KindProgram or KindActions.
	Kind string `json:"kind"`
	// Program is the Python source (KindProgram).
	Program string `json:"program,omitempty"`
	// Actions is a JSON array of actions (KindActions), in the web runtime's
	// action format.
	Actions json.RawMessage `json:"actions,omitempty"`
	// Verified is the verification outcome when the entry was stored: true
	// when a verifier existed and passed, nil when the task had none.
	Verified *bool `json:"verified,omitempty"`
	// Source says where the program came from: SourceLLM or SourceRules.
	Source string `json:"source,omitempty"`
	// CreatedAt is set by Put when zero.
	CreatedAt time.Time `json:"created_at"`
}

// Validate reports whether e can be stored and reused.
func (e Entry) Validate() error {
	switch e.Kind {
	case KindProgram:
		if strings.TrimSpace(e.Program) == "" {
			return errors.New("program entry has an empty program")
		}
	case KindActions:
		var list []json.RawMessage
		if err := json.Unmarshal(e.Actions, &list); err != nil {
			return fmt.Errorf("actions entry: actions are not a JSON list: %w", err)
		}
		if len(list) == 0 {
			return errors.New("actions entry has no actions")
		}
	default:
		return fmt.Errorf("unknown kind %q (want %q or %q)", e.Kind, KindProgram, KindActions)
	}
	if e.Verified != nil && !*e.Verified {
		return errors.New("entry failed verification; only successful programs are cached")
	}
	return nil
}

// Key returns the Redis key for a task:
//
//	template_cache:<hex(md5(taskType + ":" + lower(trim(description)) [+ ":" + extra]...))>
//
// lower is strings.ToLower, trim is strings.TrimSpace; extra parts are
// appended verbatim (not trimmed, not lowercased), each after a ":". Code
// tasks pass the digest of their check (core's CheckDigest: tests,
// visible_tests, expected_output, stdin), because a program that passed
// one check says nothing of another with the same description (the
// blueprint's formula has no extra part: it replayed a success forged
// against one check for every later task of that description); web tasks
// pass the start URL, because the same description on another site needs
// other actions, then their check's digest. Key("web", d) and
// Key("web", d, "") differ.
func Key(taskType, description string, extra ...string) string {
	var b strings.Builder
	b.WriteString(taskType)
	b.WriteByte(':')
	b.WriteString(strings.ToLower(strings.TrimSpace(description)))
	for _, p := range extra {
		b.WriteByte(':')
		b.WriteString(p)
	}
	sum := md5.Sum([]byte(b.String()))
	return core.KeyTemplateCachePrefix + hex.EncodeToString(sum[:])
}

// Options configure a Cache.
type Options struct {
	// TTL is the lifetime of an entry, refreshed by every Put. Default 1h.
	// Too long keeps serving a program after the prompt or model improved;
	// too short sends repeated tasks back to the LLM.
	TTL time.Duration
	// OpTimeout bounds each Redis command. Default 2s.
	OpTimeout time.Duration
}

// Cache reads and writes template cache entries. It is safe for concurrent
// use.
type Cache struct {
	rdb  redis.Cmdable
	opts Options
}

// New returns a Cache on rdb.
func New(rdb redis.Cmdable, opts Options) *Cache {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	return &Cache{rdb: rdb, opts: opts}
}

// TTL returns the lifetime given to entries.
func (c *Cache) TTL() time.Duration { return c.opts.TTL }

// Get returns the entry under key. ok is false on a miss; err is non-nil when
// Redis failed or the value is corrupt (wrapping ErrCorrupt), in which case
// ok is false too and the caller proceeds as on a miss.
func (c *Cache) Get(ctx context.Context, key string) (e Entry, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.OpTimeout)
	defer cancel()
	raw, err := c.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("templatecache: get %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return Entry{}, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	if err := e.Validate(); err != nil {
		return Entry{}, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
	}
	return e, true, nil
}

// Put stores e under key with the cache's TTL, replacing any previous entry.
// It refuses an entry that does not Validate (for instance Verified=false).
func (c *Cache) Put(ctx context.Context, key string, e Entry) error {
	if !strings.HasPrefix(key, core.KeyTemplateCachePrefix) {
		return fmt.Errorf("templatecache: key %q is not a template cache key (use Key)", key)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("templatecache: put %s: %w", key, err)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC()
	}
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("templatecache: put %s: %w", key, err)
	}
	if len(raw) > maxEntryBytes {
		return fmt.Errorf("templatecache: put %s: entry is %d bytes, over the %d-byte limit", key, len(raw), maxEntryBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.OpTimeout)
	defer cancel()
	if err := c.rdb.Set(ctx, key, raw, c.opts.TTL).Err(); err != nil {
		return fmt.Errorf("templatecache: put %s: %w", key, err)
	}
	return nil
}

// Delete removes the entry under key, for instance when a cached program
// failed on replay and should not be served again.
func (c *Cache) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.OpTimeout)
	defer cancel()
	if err := c.rdb.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("templatecache: delete %s: %w", key, err)
	}
	return nil
}

// Clear removes every template cache entry (SCAN + UNLINK, so Redis is not
// blocked) and returns how many keys it removed. It is not bounded by
// OpTimeout: it is an operator action, bounded by ctx.
func (c *Cache) Clear(ctx context.Context) (int64, error) {
	var removed int64
	var cursor uint64
	for {
		keys, next, err := c.rdb.Scan(ctx, cursor, core.KeyTemplateCachePrefix+"*", 500).Result()
		if err != nil {
			return removed, fmt.Errorf("templatecache: clear: %w", err)
		}
		if len(keys) > 0 {
			n, err := c.rdb.Unlink(ctx, keys...).Result()
			removed += n
			if err != nil {
				return removed, fmt.Errorf("templatecache: clear: %w", err)
			}
		}
		if next == 0 {
			return removed, nil
		}
		cursor = next
	}
}
