package templatecache

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/redis/go-redis/v9"
)

func TestKey(t *testing.T) {
	t.Parallel()
	// Expected values computed with `printf '%s' "<input>" | md5sum`.
	tests := []struct {
		name     string
		taskType string
		desc     string
		extra    []string
		want     string
	}{
		{
			name:     "blueprint example",
			taskType: "code",
			desc:     "write a python function for the 10th fibonacci number",
			want:     "template_cache:3a58ef70d8bc6691cfc6ec0b6f78d401",
		},
		{
			name:     "case and surrounding whitespace ignored",
			taskType: "code",
			desc:     "  Write a Python function for the 10th Fibonacci number\n\t",
			want:     "template_cache:3a58ef70d8bc6691cfc6ec0b6f78d401",
		},
		{
			name:     "web with start URL, kept verbatim",
			taskType: "web",
			desc:     "Search for information about topic 1",
			extra:    []string{"http://127.0.0.1:8080/Search"},
			want:     "template_cache:ab0bab3f7a6cb8af75e4e62a2a1ff65c",
		},
		{
			name:     "web without extra",
			taskType: "web",
			desc:     "Search for information about topic 1",
			want:     "template_cache:c884e579277efba376f93e9a2f6ceef4",
		},
		{
			name:     "empty extra still adds a separator",
			taskType: "web",
			desc:     "Search for information about topic 1",
			extra:    []string{""},
			want:     "template_cache:691543c1749e1aed77c6207706620360",
		},
	}
	for _, tt := range tests {
		if got := Key(tt.taskType, tt.desc, tt.extra...); got != tt.want {
			t.Errorf("%s: Key = %s, want %s", tt.name, got, tt.want)
		}
	}
	if Key("code", "x") == Key("reasoning", "x") {
		t.Error("task type not part of the key")
	}
	if Key("code", "a b") == Key("code", "a  b") {
		t.Error("inner whitespace must count (the formula only trims)")
	}
}

type bundle struct {
	cache *Cache
	rdb   *redis.Client
	ctx   context.Context
}

func setup(t *testing.T, opts Options) bundle {
	t.Helper()
	r := testsupport.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return bundle{cache: New(r.Client, opts), rdb: r.Client, ctx: ctx}
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	yes := true
	created := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		key   string
		entry Entry
	}{
		{
			name: "verified program",
			key:  Key("code", "Write a Python function for the 10th Fibonacci number"),
			entry: Entry{Kind: KindProgram, Program: "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\nprint(fib(10))\n",
				Verified: &yes, Source: SourceLLM, CreatedAt: created},
		},
		{
			name:  "program without verifier",
			key:   Key("reasoning", "factorial of 5"),
			entry: Entry{Kind: KindProgram, Program: "import math\nprint(math.factorial(5))\n", Source: SourceRules, CreatedAt: created},
		},
		{
			name: "web actions",
			key:  Key("web", "search for topic 1", "http://127.0.0.1:8080/"),
			entry: Entry{Kind: KindActions, Actions: json.RawMessage(`[{"action":"fill","selector":"#q","text":"topic 1"},{"action":"finish","answer":"ok"}]`),
				Verified: &yes, Source: SourceLLM, CreatedAt: created},
		},
	}
	for _, tt := range tests {
		if err := b.cache.Put(b.ctx, tt.key, tt.entry); err != nil {
			t.Fatalf("%s: Put: %v", tt.name, err)
		}
		got, ok, err := b.cache.Get(b.ctx, tt.key)
		if err != nil || !ok {
			t.Fatalf("%s: Get = %v, %v", tt.name, ok, err)
		}
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(tt.entry)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("%s: round trip\n got %s\nwant %s", tt.name, gotJSON, wantJSON)
		}
	}
	// The stored value is plain JSON an operator can read with redis-cli.
	raw, err := b.rdb.Get(b.ctx, tests[0].key).Result()
	if err != nil || !strings.Contains(raw, `"kind":"program"`) || !strings.Contains(raw, `"verified":true`) {
		t.Errorf("stored value %s, %v", raw, err)
	}
}

func TestPutSetsCreatedAtAndTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
		want time.Duration
	}{
		{"default", Options{}, DefaultTTL},
		{"configured", Options{TTL: 90 * time.Second}, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.opts)
			key := Key("code", "print hello")
			if err := b.cache.Put(b.ctx, key, Entry{Kind: KindProgram, Program: "print('hello')"}); err != nil {
				t.Fatal(err)
			}
			ttl, err := b.rdb.TTL(b.ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			// TTL reports whole seconds; allow the second that may have passed.
			if ttl > tc.want || ttl < tc.want-2*time.Second {
				t.Errorf("TTL %v, want about %v", ttl, tc.want)
			}
			e, ok, err := b.cache.Get(b.ctx, key)
			if !ok || err != nil || e.CreatedAt.IsZero() {
				t.Errorf("Get = %+v, %v, %v; want CreatedAt set", e, ok, err)
			}
		})
	}
}

func TestMissAndCaseInsensitiveHit(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	e, ok, err := b.cache.Get(b.ctx, Key("code", "never stored"))
	if ok || err != nil || e.Kind != "" {
		t.Fatalf("miss: Get = %+v, %v, %v", e, ok, err)
	}
	if err := b.cache.Put(b.ctx, Key("code", "Primes below 100"), Entry{Kind: KindProgram, Program: "print(2)"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"primes below 100", "  PRIMES BELOW 100 ", "\tPrimes Below 100\n"} {
		if _, ok, err := b.cache.Get(b.ctx, Key("code", d)); !ok || err != nil {
			t.Errorf("Get(%q) = %v, %v; want hit", d, ok, err)
		}
	}
	if _, ok, _ := b.cache.Get(b.ctx, Key("reasoning", "primes below 100")); ok {
		t.Error("hit under another task type")
	}
}

func TestCorruptValueIsAMissWithError(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	tests := []struct{ name, value string }{
		{"not json", "def fib(n): ..."},
		{"truncated json", `{"kind":"program","program":"print(1)`},
		{"blueprint-era value", `{"code":"print(55)","output":"55","success":true}`},
		{"empty program", `{"kind":"program","program":"  "}`},
		{"actions not a list", `{"kind":"actions","actions":{"goto":"x"}}`},
		{"stored failure", `{"kind":"program","program":"print(1)","verified":false}`},
	}
	for _, tt := range tests {
		key := Key("code", tt.name)
		if err := b.rdb.Set(b.ctx, key, tt.value, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		e, ok, err := b.cache.Get(b.ctx, key)
		if ok || !errors.Is(err, ErrCorrupt) || e.Kind != "" {
			t.Errorf("%s: Get = %+v, %v, %v; want miss with ErrCorrupt", tt.name, e, ok, err)
		}
	}
	// A wrong Redis type is a Redis error, still a miss.
	key := Key("code", "a hash")
	if err := b.rdb.HSet(b.ctx, key, "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.cache.Get(b.ctx, key); ok || err == nil {
		t.Errorf("wrong type: Get = %v, %v; want miss with error", ok, err)
	}
}

func TestPutRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	no := false
	tests := []struct {
		name  string
		key   string
		entry Entry
		want  string
	}{
		{"failed verification", Key("code", "x"), Entry{Kind: KindProgram, Program: "print(1)", Verified: &no}, "failed verification"},
		{"empty program", Key("code", "x"), Entry{Kind: KindProgram}, "empty program"},
		{"no actions", Key("web", "x"), Entry{Kind: KindActions, Actions: json.RawMessage(`[]`)}, "no actions"},
		{"unknown kind", Key("code", "x"), Entry{Kind: "output", Program: "55"}, "unknown kind"},
		{"foreign key", "tasks:code", Entry{Kind: KindProgram, Program: "print(1)"}, "not a template cache key"},
		{"huge", Key("code", "x"), Entry{Kind: KindProgram, Program: strings.Repeat("#", maxEntryBytes)}, "limit"},
	}
	for _, tt := range tests {
		err := b.cache.Put(b.ctx, tt.key, tt.entry)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Put = %v, want error with %q", tt.name, err, tt.want)
		}
	}
	if n, _ := b.rdb.DBSize(b.ctx).Result(); n != 0 {
		t.Errorf("%d keys written by refused puts", n)
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	t.Parallel()
	r := testsupport.StartRedis(t)
	c := New(r.Client, Options{OpTimeout: 500 * time.Millisecond})
	r.Kill()
	ctx := context.Background()
	key := Key("code", "anything")
	if _, ok, err := c.Get(ctx, key); ok || err == nil {
		t.Errorf("Get with Redis down = %v, %v; want miss with error", ok, err)
	}
	if err := c.Put(ctx, key, Entry{Kind: KindProgram, Program: "print(1)"}); err == nil {
		t.Error("Put with Redis down succeeded")
	}
}

func TestDeleteAndClear(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	for _, d := range []string{"a", "b", "c"} {
		if err := b.cache.Put(b.ctx, Key("code", d), Entry{Kind: KindProgram, Program: "print(1)"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.rdb.Set(b.ctx, "tasks:dispatched", "keep me", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.cache.Delete(b.ctx, Key("code", "a")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.cache.Get(b.ctx, Key("code", "a")); ok {
		t.Error("deleted entry still served")
	}
	n, err := b.cache.Clear(b.ctx)
	if err != nil || n != 2 {
		t.Errorf("Clear = %d, %v; want 2", n, err)
	}
	keys, _ := b.rdb.Keys(b.ctx, "*").Result()
	if len(keys) != 1 || keys[0] != "tasks:dispatched" {
		t.Errorf("keys after Clear: %v", keys)
	}
}
