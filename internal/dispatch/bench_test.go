package dispatch

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// benchTasks is the ingest benchmark size; ADP_BENCH_TASKS overrides it.
func benchTasks() int {
	if n, err := strconv.Atoi(os.Getenv("ADP_BENCH_TASKS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

func benchLine(i int) string {
	return fmt.Sprintf(`{"task_id":"bench-%07d","task_type":"code","description":"Calculate fibonacci(%d)","max_steps":5,"timeout":60,"priority":1}`, i, i%90)
}

// BenchmarkIngest compares, on one redis-server in one run: the dispatcher
// ingesting N tasks from a JSONL file with dedup on; redis-benchmark -P 64
// XADDing the same payload; and a naive one-XADD-per-round-trip loop.
// Run with: go test -run '^$' -bench Ingest -benchtime 1x ./internal/dispatch
func BenchmarkIngest(b *testing.B) {
	n := benchTasks()
	dir := b.TempDir()
	file := filepath.Join(dir, "tasks.jsonl")
	f, _ := os.Create(file)
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < n; i++ {
		w.WriteString(benchLine(i))
		w.WriteByte('\n')
	}
	w.Flush()
	f.Close()
	// The payload of one stream entry, as the dispatcher writes it.
	task, _ := core.ParseTask([]byte(benchLine(0)))
	payload, _ := task.MarshalLine()
	kind := string(task.Kind())

	r := testsupport.StartRedis(b, testsupport.WithRedisArgs("--appendonly", "no"))
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		r.Client.FlushAll(ctx)

		// 1. redis-benchmark -P 64 XADD.
		rbRate := redisBenchmark(b, r.Port, n, string(payload), kind)
		r.Client.FlushAll(ctx)

		// 2. The dispatcher.
		d, err := New(Config{TaskFile: file, RejectedFile: filepath.Join(dir, "rejected.jsonl")}, r.Client, metrics.New(), slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := d.Run(ctx); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		d.Close()
		if got := r.Client.XLen(ctx, core.StreamCode).Val(); got != int64(n) {
			b.Fatalf("stream has %d entries, want %d", got, n)
		}
		dRate := float64(n) / el.Seconds()
		r.Client.FlushAll(ctx)

		// 3. Naive: one XADD per round trip (a tenth of the tasks; it is slow).
		nn := max(n/10, 1)
		start = time.Now()
		for j := 0; j < nn; j++ {
			r.Client.XAdd(ctx, &redis.XAddArgs{Stream: "tasks:naive", Values: []any{"task", payload, "kind", kind, "submitted_at", "0", "priority", "1"}})
		}
		naiveRate := float64(nn) / time.Since(start).Seconds()

		b.ReportMetric(dRate, "dispatcher_tasks/s")
		b.ReportMetric(rbRate, "redis-benchmark_xadd/s")
		b.ReportMetric(naiveRate, "naive_xadd/s")
		b.ReportMetric(dRate/rbRate, "ratio")
		b.Logf("ingest of %d tasks: dispatcher %.0f tasks/s, redis-benchmark -P 64 XADD %.0f/s, ratio %.2f; naive loop %.0f/s",
			n, dRate, rbRate, dRate/rbRate, naiveRate)
	}
}

var rpsRe = regexp.MustCompile(`([0-9.]+) requests per second`)

func redisBenchmark(b *testing.B, port, n int, payload, kind string) float64 {
	b.Helper()
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Skip("redis-benchmark not installed (apt-get install redis-tools)")
	}
	out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-P", "64", "-n", strconv.Itoa(n), "-c", "1", "-q",
		"XADD", "tasks:rb", "*", "task", payload, "kind", kind, "submitted_at", "1700000000.000", "priority", "1").CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	m := rpsRe.FindSubmatch(out)
	if m == nil {
		b.Fatalf("redis-benchmark output not understood: %s", out)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}
