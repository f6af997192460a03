package dispatch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

type bundle struct {
	rdb      *redis.Client
	dir      string
	file     string
	rejected string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	r := testsupport.StartRedis(t)
	dir := t.TempDir()
	return &bundle{rdb: r.Client, dir: dir, file: filepath.Join(dir, "tasks.jsonl"), rejected: filepath.Join(dir, "out", "rejected.jsonl")}
}

func (b *bundle) dispatcher(t *testing.T, follow bool) (*Dispatcher, *metrics.Set) {
	t.Helper()
	m := metrics.New()
	d, err := New(Config{TaskFile: b.file, Follow: follow, PollInterval: 20 * time.Millisecond, RejectedFile: b.rejected, BatchSize: 3, PipelineBatches: 2}, b.rdb, m, slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, m
}

// runOnce dispatches the file without following it.
func (b *bundle) runOnce(t *testing.T) *metrics.Set {
	t.Helper()
	d, m := b.dispatcher(t, false)
	if err := d.Run(context.Background()); err != nil {
		t.Fatalf("run: %v", err)
	}
	return m
}

// follow runs a following dispatcher until the test ends.
func (b *bundle) follow(t *testing.T) *metrics.Set {
	t.Helper()
	d, m := b.dispatcher(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return m
}

func task(id, typ string) string {
	return fmt.Sprintf(`{"task_id":%q,"task_type":%q,"description":"task %s"}`, id, typ, id)
}

func writeFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// ids returns the task ids in a stream, in order.
func (b *bundle) ids(t *testing.T, stream string) []string {
	t.Helper()
	var out []string
	for _, m := range b.rdb.XRange(context.Background(), stream, "-", "+").Val() {
		task, err := core.ParseTask([]byte(m.Values["task"].(string)))
		if err != nil {
			t.Fatalf("stream holds an invalid task: %v", err)
		}
		out = append(out, task.TaskID)
	}
	return out
}

func readRejected(t *testing.T, path string) []rejected {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []rejected
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r rejected
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("rejected.jsonl line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoutingAndRejects(t *testing.T) {
	b := setup(t)
	huge := `{"task_type":"code","description":"` + strings.Repeat("x", 10<<20) + `"}`
	writeFile(t, b.file,
		task("c1", "code"),      // line 1
		`not json`,              // 2
		task("w1", "web"),       // 3
		"",                      // 4 blank: skipped silently
		task("r1", "reasoning"), // 5
		`{"task_id":"bad","task_type":"video","description":"x"}`, // 6
		huge, // 7: 10 MB line
		"{\"task_type\":\"code\",\"description\":\"\xff\"}", // 8: not UTF-8
		task("c1", "code"), // 9: duplicate
		`{"task_id":"../x","task_type":"code","description":"x"}`, // 10
		task("c2", "code"), // 11
		`{"task_id":"typo","task_type":"code","description":"x","constraints":{"code":"print(1)","expected_outptu":"2"}}`, // 12
	)
	m := b.runOnce(t)
	if got := b.ids(t, core.StreamCode); fmt.Sprint(got) != "[c1 r1 c2]" {
		t.Errorf("tasks:code = %v, want [c1 r1 c2] (reasoning is served by the sandbox runtime)", got)
	}
	if got := b.ids(t, core.StreamWeb); fmt.Sprint(got) != "[w1]" {
		t.Errorf("tasks:web = %v", got)
	}
	rej := readRejected(t, b.rejected)
	want := []struct {
		line         int
		id, inReason string
	}{
		{2, "", "invalid JSON"},
		{6, "bad", `unknown type "video"`},
		{7, "", "more than the limit"},
		{8, "", "UTF-8"},
		{10, "../x", "'..'"},
		{12, "typo", "unknown constraint"},
	}
	if len(rej) != len(want) {
		t.Fatalf("rejected = %+v, want %d lines", rej, len(want))
	}
	for i, w := range want {
		if rej[i].Line != w.line || rej[i].TaskID != w.id || !strings.Contains(rej[i].Reason, w.inReason) {
			t.Errorf("rejected[%d] = %+v, want line %d id %q reason containing %q", i, rej[i], w.line, w.id, w.inReason)
		}
	}
	if f := rej[len(rej)-1].Field; f != "constraints.expected_outptu" {
		t.Errorf("the misspelled constraint was rejected with field %q", f)
	}
	if v := testutil.ToFloat64(m.TasksRejected); v != 6 {
		t.Errorf("tasks_rejected_total = %v", v)
	}
	if v := testutil.ToFloat64(m.TasksDuplicate); v != 1 {
		t.Errorf("tasks_duplicate_total = %v", v)
	}
	if v := testutil.ToFloat64(m.TasksSubmitted.WithLabelValues("reasoning", "sandbox")); v != 1 {
		t.Errorf("tasks_submitted_total{reasoning,sandbox} = %v", v)
	}
}

func TestResumeAcrossRestart(t *testing.T) {
	b := setup(t)
	writeFile(t, b.file, task("a", "code"), task("b", "code"), `bad`)
	b.runOnce(t)
	appendFile(t, b.file, task("c", "code")+"\n"+`also bad`+"\n")
	m := b.runOnce(t) // a restarted dispatcher
	if got := b.ids(t, core.StreamCode); fmt.Sprint(got) != "[a b c]" {
		t.Errorf("tasks:code = %v", got)
	}
	// It resumed from its position: nothing was re-read, so no duplicates and
	// the old bad line was not rejected twice.
	if v := testutil.ToFloat64(m.TasksDuplicate); v != 0 {
		t.Errorf("second run saw %v duplicates: it re-read the file", v)
	}
	rej := readRejected(t, b.rejected)
	if len(rej) != 2 || rej[0].Line != 3 || rej[1].Line != 5 {
		t.Errorf("rejected = %+v, want lines 3 and 5 once each", rej)
	}
}

func TestReplacedFileIsDeduplicated(t *testing.T) {
	b := setup(t)
	writeFile(t, b.file, task("a", "code"), task("b", "code"))
	b.runOnce(t)
	// Replace the file (new inode) with old and new tasks.
	tmp := b.file + ".new"
	writeFile(t, tmp, task("a", "code"), task("b", "code"), task("c", "code"))
	if err := os.Rename(tmp, b.file); err != nil {
		t.Fatal(err)
	}
	m := b.runOnce(t)
	if got := b.ids(t, core.StreamCode); fmt.Sprint(got) != "[a b c]" {
		t.Errorf("tasks:code = %v", got)
	}
	if v := testutil.ToFloat64(m.TasksDuplicate); v != 2 {
		t.Errorf("duplicates = %v, want 2", v)
	}
}

func TestIDLessLinesGetStableIDs(t *testing.T) {
	b := setup(t)
	writeFile(t, b.file, `{"task_type":"code","description":"no id"}`)
	b.runOnce(t)
	// Forget the position: the same line must map to the same id (dedup).
	b.rdb.Del(context.Background(), KeyPositionPrefix+b.file)
	m := b.runOnce(t)
	if n := len(b.ids(t, core.StreamCode)); n != 1 {
		t.Errorf("stream has %d entries, want 1", n)
	}
	if v := testutil.ToFloat64(m.TasksDuplicate); v != 1 {
		t.Errorf("duplicates = %v, want 1", v)
	}
}

func TestFollow(t *testing.T) {
	b := setup(t)
	b.follow(t) // the file does not exist yet
	time.Sleep(100 * time.Millisecond)
	writeFile(t, b.file, task("a", "code"))
	eventually(t, "created file dispatched", func() bool { return len(b.ids(t, core.StreamCode)) == 1 })

	appendFile(t, b.file, task("b", "web")+"\n")
	eventually(t, "appended line dispatched", func() bool { return len(b.ids(t, core.StreamWeb)) == 1 })

	// A line written in two parts is taken only when complete.
	line := task("c", "code")
	appendFile(t, b.file, line[:10])
	time.Sleep(200 * time.Millisecond) // ten polls
	if n := len(b.ids(t, core.StreamCode)); n != 1 {
		t.Fatalf("partial line dispatched: %d entries", n)
	}
	appendFile(t, b.file, line[10:]+"\n")
	eventually(t, "completed line dispatched", func() bool { return len(b.ids(t, core.StreamCode)) == 2 })

	// Truncated and rewritten in place.
	writeFile(t, b.file, task("d", "code"))
	eventually(t, "line after truncation dispatched", func() bool { return len(b.ids(t, core.StreamCode)) == 3 })

	// Replaced by rename.
	tmp := b.file + ".new"
	writeFile(t, tmp, task("a", "code"), task("e", "code"), task("f", "code"), task("g", "code"))
	os.Rename(tmp, b.file)
	eventually(t, "replaced file dispatched", func() bool { return len(b.ids(t, core.StreamCode)) == 6 })
	if got := b.ids(t, core.StreamCode); fmt.Sprint(got) != "[a c d e f g]" {
		t.Errorf("tasks:code = %v", got)
	}
	if _, err := os.Stat(b.rejected); err == nil {
		if rej := readRejected(t, b.rejected); len(rej) != 0 {
			t.Errorf("rejected = %+v, want none", rej)
		}
	}
}

func TestUnterminatedLastLineWithoutFollow(t *testing.T) {
	b := setup(t)
	os.WriteFile(b.file, []byte(task("a", "code")+"\n"+task("b", "code")), 0o644)
	b.runOnce(t)
	if got := b.ids(t, core.StreamCode); fmt.Sprint(got) != "[a b]" {
		t.Errorf("tasks:code = %v", got)
	}
}

func TestMissingFileWithoutFollow(t *testing.T) {
	b := setup(t)
	d, _ := b.dispatcher(t, false)
	err := d.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("err = %v", err)
	}
}

// TestNoValidTask: a file with no valid task (empty, blank, or every line
// rejected) is an error without DISPATCH_FOLLOW, saying how many lines were
// rejected; a file with one valid line among bad ones is not. A following
// dispatcher keeps waiting for lines to be appended.
func TestNoValidTask(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		rejected      int // -1: the file is valid
	}{
		{"empty", "", 0},
		{"blank lines", "\n  \n", 0},
		{"every line rejected", "{\"task_id\": \"a\",\n \"task_type\": \"code\", \"description\": \"x\"}\nnot json\n", 3},
		{"one valid line", "not json\n" + task("a", "code") + "\n", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t)
			os.WriteFile(b.file, []byte(tc.content), 0o644)
			d, _ := b.dispatcher(t, false)
			err := d.Run(context.Background())
			if tc.rejected < 0 {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNoValidTask) || !strings.Contains(err.Error(), fmt.Sprintf("%d lines rejected", tc.rejected)) {
				t.Fatalf("run = %v, want ErrNoValidTask with %d lines rejected", err, tc.rejected)
			}
			tasks, rejected, err := ReadTasks(b.file)
			if err != nil || len(tasks) != 0 || len(rejected) != tc.rejected {
				t.Errorf("ReadTasks = %d tasks, %d rejected, %v; want 0, %d", len(tasks), len(rejected), err, tc.rejected)
			}
		})
	}
	// Following, the same file is a wait, not an end: an appended line runs.
	b := setup(t)
	os.WriteFile(b.file, []byte("not json\n"), 0o644)
	b.follow(t)
	f, err := os.OpenFile(b.file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, task("late", "code"))
	f.Close()
	eventually(t, "the appended task to be dispatched", func() bool { return len(b.ids(t, core.StreamCode)) == 1 })
}

func TestRedisDownThenUpLosesNothing(t *testing.T) {
	r := testsupport.StartRedis(t)
	b := setup(t)
	b.rdb = r.Client
	var lines []string
	for i := 0; i < 20; i++ {
		lines = append(lines, task(fmt.Sprint("t", i), "code"))
	}
	writeFile(t, b.file, lines...)
	r.Kill()
	b.follow(t)
	time.Sleep(300 * time.Millisecond)
	r.Restart()
	eventually(t, "all dispatched after Redis returned", func() bool {
		n, _ := b.rdb.XLen(context.Background(), core.StreamCode).Result()
		return n == 20
	})
}

// A task of samples N becomes N entries (one per attempt, with its sample
// field); a later line with the same id and more samples adds only the
// missing attempts, and ReadTasks predicts the union.
func TestDispatchAttempts(t *testing.T) {
	b := setup(t)
	sampled := func(id string, n int) string {
		return fmt.Sprintf(`{"task_id":%q,"task_type":"code","description":"task %s","samples":%d}`, id, id, n)
	}
	writeFile(t, b.file, sampled("fib", 3), task("one", "code"), `{"task_id":"w","task_type":"web","description":"w","samples":2}`, sampled("fib", 5), sampled("fib", 2))
	m := b.runOnce(t)
	var got []string
	for _, msg := range b.rdb.XRange(context.Background(), core.StreamCode, "-", "+").Val() {
		task, _ := core.ParseTask([]byte(msg.Values["task"].(string)))
		s, ok := msg.Values["sample"].(string)
		if !ok {
			s = "-"
		}
		got = append(got, task.TaskID+"/"+s)
	}
	if want := "fib/0 fib/1 fib/2 one/- fib/3 fib/4"; strings.Join(got, " ") != want {
		t.Errorf("tasks:code = %q, want %q", got, want)
	}
	if n := b.rdb.XLen(context.Background(), core.StreamWeb).Val(); n != 2 {
		t.Errorf("tasks:web has %d entries, want 2", n)
	}
	if v := testutil.ToFloat64(m.TasksSubmitted.WithLabelValues("code", "sandbox")); v != 6 {
		t.Errorf("tasks_submitted_total{code} = %v, want 6 attempts", v)
	}
	if v := testutil.ToFloat64(m.TasksDuplicate); v != 3+2 {
		t.Errorf("tasks_duplicate_total = %v, want 5 (3 attempts of the second fib line, 2 of the third)", v)
	}
	tasks, _, err := ReadTasks(b.file)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, tk := range tasks {
		total += tk.Samples
	}
	if len(tasks) != 3 || total != 5+1+2 {
		t.Errorf("ReadTasks = %d tasks of %d attempts, want 3 tasks of 8", len(tasks), total)
	}
	// A restart over the same file adds nothing.
	b.runOnce(t)
	if n := b.rdb.XLen(context.Background(), core.StreamCode).Val(); n != 6 {
		t.Errorf("after a second run tasks:code has %d entries, want 6", n)
	}
}

func TestReadTasksMatchesDispatch(t *testing.T) {
	b := setup(t)
	os.WriteFile(b.file, []byte(task("a", "code")+"\nbad\n"+`{"task_type":"web","description":"no id"}`+"\n"+task("a", "code")+"\n"+`{"task_type":"code","description":"last, unterminated"}`), 0o644)
	tasks, rejected, err := ReadTasks(b.file)
	if err != nil {
		t.Fatal(err)
	}
	if len(rejected) != 1 || len(tasks) != 3 {
		t.Fatalf("ReadTasks = %d tasks, %v rejected; want 3 and 1", len(tasks), rejected)
	}
	var inv *core.InvalidTaskError
	if !errors.As(rejected[0], &inv) || inv.Line != 2 || !strings.HasPrefix(rejected[0].Error(), "line 2: ") {
		t.Errorf("the rejection is %v, want an InvalidTaskError of line 2", rejected[0])
	}
	b.runOnce(t)
	got := append(b.ids(t, core.StreamCode), b.ids(t, core.StreamWeb)...)
	want := map[string]bool{}
	for _, tk := range tasks {
		want[tk.TaskID] = true
	}
	for _, id := range got {
		if !want[id] {
			t.Errorf("dispatched id %s not predicted by ReadTasks %v", id, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("dispatched %v", got)
	}
}

// The dispatcher's defaults are its env tags' (EnvConfig).
func TestDefaultEnvConfig(t *testing.T) {
	c := DefaultEnvConfig()
	if c.TaskFile != "tasks.jsonl" || !c.Follow || c.PollInterval != 500*time.Millisecond || c.BatchSize != 256 {
		t.Errorf("defaults %+v", c)
	}
}
