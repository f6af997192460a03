// Package chaos holds the fault-injection suite of issue 7: the real binaries
// (built once by testsupport.BuildBinaries) run as processes against a real
// redis-server, and each test injects one fault, then checks the end state
// with rig.checkOutcome: every task id has exactly one trajectory file or
// exactly one dead letter (never both, never neither), every file parses,
// nothing is left in or pending on tasks:code and tasks:web, every service
// stops cleanly on SIGTERM, and no process is left running.
//
//	TestKillRuntimes                  1,000 tasks, a runtime SIGKILLed 5 times
//	TestKillRuntimeSampledTasks       60 tasks × samples 5, a runtime SIGKILLed twice
//	TestRedisCrash                    400 tasks, redis-server SIGKILLed and restarted
//	TestRedisLosesAcknowledgedWrites  300 tasks, Redis restarted from an older AOF
//	TestSigterm                       260 tasks, SIGTERM to each binary
//	TestPoisonTasks                   300 tasks + 3 poison (error, crash, hang), adpctl dlq retry
//	TestKillDispatcher                100,000 lines, dispatcher SIGKILLed 3 times
//	TestDiskFull                      200 tasks, OUTPUT_DIR (tmpfs) full
//	TestBadInput                      10,000 invalid lines + 313 valid + 100 repeats
//	TestFrozenHolderResumes           12 tasks, a frozen runtime resumed after losing them
//	TestRedisAuthAndTLS               requirepass, then TLS with CA verification
//
// The sizes are the where it gives them. Run with
//
//	go test -race -count=1 -timeout 30m ./internal/chaos/
//
// (about 5 minutes on 2 cores; skipped with -short). The services run with
// LEASE_TTL=3s so that reclaim after a crash takes seconds.
package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// TestKillRuntimes: 1,000 code tasks, 2 sandbox runtimes; one runtime (chosen
// at random) is SIGKILLed 5 times at random moments of the run and restarted
// each time. Nothing may be lost or duplicated: entries of the dead process
// are reclaimed after LEASE_TTL and re-run, their files replaced atomically.
func TestKillRuntimes(t *testing.T) {
	r := setup(t)
	const (
		n     = 1000
		kills = 5
		held  = 4 // tasks a runtime of the rig holds: SANDBOX_INFLIGHT, 2 × SANDBOX_CONCURRENCY=2
	)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	ids, lines := printTasks("kill", n)
	r.writeTasks(lines)
	// MAX_DELIVERIES is raised so that a task caught by several of the 5
	// kills in a row is not dead-lettered: this test is about losing nothing.
	rts := []*testsupport.Service{r.startSandbox("MAX_DELIVERIES=20"), r.startSandbox("MAX_DELIVERIES=20")}
	r.startDispatcher()

	// Kill when a random share (10..90 %) of the tasks is done, plus a
	// random delay, so the kill lands at an arbitrary point of a task.
	var at []int
	for range kills {
		at = append(at, n/10+rng.IntN(n*8/10))
	}
	sort.Ints(at)
	for i, th := range at {
		waitFor(t, 5*time.Minute, 50*time.Millisecond, fmt.Sprintf("%d trajectories before kill %d", th, i+1), func() (bool, string) {
			got := len(r.trajectoryFiles())
			return got >= th, fmt.Sprintf("%d files", got)
		})
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		v := rts[rng.IntN(len(rts))]
		name := consumerName(v)
		v.Kill()
		t.Logf("kill %d: SIGKILL %s at %d/%d files", i+1, name, len(r.trajectoryFiles()), n)
		v.Start(true)
	}

	r.waitSettled(ids, 5*time.Minute)
	res := r.checkOutcome(ids)
	if res.Dead != 0 || res.Files != n {
		t.Errorf("files %d, dead letters %d; want %d and 0", res.Files, res.Dead, n)
	}
	for _, id := range ids {
		checkPrintsID(t, res, id)
		if res.Executions[id] < 1 {
			t.Errorf("task %s has a file but no runtime logged it done", id)
		}
	}
	// A kill can only cost the tasks the victim held: at most SANDBOX_INFLIGHT each.
	if res.ReExecuted > kills*held {
		t.Errorf("%d re-executions for %d kills of runtimes holding at most %d tasks each", res.ReExecuted, kills, held)
	}
	// The kills must have hit work in progress, or this test proved nothing.
	if res.Redelivered == 0 {
		t.Errorf("no task was redelivered: the kills hit idle runtimes")
	}
	t.Logf("tasks %d, kills %d: files %d, dead 0, lost 0, duplicate files 0; redelivered %d, ran twice %d, leftover temp files %d",
		n, kills, res.Files, res.Redelivered, res.ReExecuted, len(res.Temp))
}

// TestKillRuntimeSampledTasks: 60 code tasks of samples 5 (300 attempts,
// each its own stream entry), 2 sandbox runtimes; one is SIGKILLed twice
// mid-run and restarted. Afterwards every attempt has exactly one file
// (<id>.json, <id>.sample-<k>.json) holding that attempt, none lost and none
// duplicated, and no other file exists.
func TestKillRuntimeSampledTasks(t *testing.T) {
	r := setup(t)
	const (
		n       = 60
		samples = 5
		kills   = 2
	)
	var lines, attempts []string
	for i := range n {
		id := fmt.Sprintf("sampled-%03d", i)
		lines = append(lines, sampledCodeTask(id, fmt.Sprintf("import time; time.sleep(0.1); print(%q)", id), samples))
		for k := range samples {
			attempts = append(attempts, core.AttemptName(id, k))
		}
	}
	r.writeTasks(lines)
	rts := []*testsupport.Service{r.startSandbox("MAX_DELIVERIES=20"), r.startSandbox("MAX_DELIVERIES=20")}
	r.startDispatcher()
	total := n * samples
	for i, th := range []int{total / 3, total * 2 / 3}[:kills] {
		waitFor(t, 5*time.Minute, 20*time.Millisecond, fmt.Sprintf("%d trajectories before kill %d", th, i+1), func() (bool, string) {
			got := len(r.trajectoryFiles())
			return got >= th, fmt.Sprintf("%d files", got)
		})
		v := rts[i%len(rts)]
		name := consumerName(v)
		v.Kill()
		t.Logf("kill %d: SIGKILL %s at %d/%d files", i+1, name, len(r.trajectoryFiles()), total)
		v.Start(true)
	}
	r.waitSettled(attempts, 5*time.Minute)
	res := r.checkOutcome(attempts) // one file or dead letter per attempt, nothing else
	if res.Dead != 0 || res.Files != total {
		t.Errorf("files %d, dead letters %d; want %d and 0", res.Files, res.Dead, total)
	}
	for _, a := range attempts {
		id, k := core.ParseAttemptName(a)
		tr := res.Trajs[a]
		if tr == nil {
			continue // reported by checkOutcome
		}
		if tr.SampleIndex != k || tr.Samples != samples || !tr.Success || len(tr.Steps) == 0 ||
			!strings.Contains(tr.Steps[len(tr.Steps)-1].Observation, id) || tr.ExitReason != core.ExitReplayed {
			t.Errorf("%s: sample_index %d samples %d success %v exit_reason %q; want attempt %d of %d, a success printing %s, replayed",
				a, tr.SampleIndex, tr.Samples, tr.Success, tr.ExitReason, k, samples, id)
		}
		if res.Executions[a] < 1 {
			t.Errorf("%s has a file but no runtime logged it done", a)
		}
	}
	if res.Redelivered == 0 {
		t.Errorf("no attempt was redelivered: the kills hit idle runtimes")
	}
	t.Logf("attempts %d, kills %d: files %d, dead 0, lost 0, duplicate files 0; redelivered %d, ran twice %d",
		total, kills, res.Files, res.Redelivered, res.ReExecuted)
}

// checkPrintsID asserts the trajectory of id succeeded and printed id: the
// file holds its own task's result.
func checkPrintsID(t *testing.T, res outcome, id string) {
	t.Helper()
	tr := res.Trajs[id]
	if tr == nil {
		t.Errorf("no trajectory for %s", id)
		return
	}
	if !tr.Success || len(tr.Steps) == 0 || !strings.Contains(tr.Steps[len(tr.Steps)-1].Observation, id) {
		t.Errorf("trajectory of %s: success %v, steps %d, error %s %q; want success printing its id",
			id, tr.Success, len(tr.Steps), tr.ErrorType, tr.ErrorMessage)
	}
}

// TestRedisCrash: redis-server is SIGKILLed mid-run (AOF everysec) and
// restarted on the same port and data directory. While it is down every
// service must report the outage on /healthz, the runtimes and the
// dispatcher retry with backoff, and after the restart every task completes.
//
// The loss window, honestly: with appendfsync everysec Redis write()s the AOF
// before it answers a client and fsyncs it once a second, so a crash of the
// redis-server process alone (this test) loses nothing the kernel already
// has; an OS crash or power loss can lose up to about 1 s of acknowledged
// writes (2 s when a slow fsync makes Redis postpone its AOF write).
// TestRedisLosesAcknowledgedWrites simulates exactly that loss.
func TestRedisCrash(t *testing.T) {
	r := setup(t)
	const n1, n2 = 300, 100
	ids, lines := printTasks("crash", n1+n2)
	r.writeTasks(lines[:n1])
	rts := []*testsupport.Service{r.startSandbox(), r.startSandbox()}
	d := r.startDispatcher()
	services := append([]*testsupport.Service{d}, rts...)

	waitFor(t, 2*time.Minute, 20*time.Millisecond, "a third of the tasks done", func() (bool, string) {
		got := len(r.trajectoryFiles())
		return got >= n1/3, fmt.Sprintf("%d files", got)
	})
	logLines := map[*testsupport.Service]int{}
	for _, s := range services {
		logLines[s] = strings.Count(s.Log(), "\n")
	}
	r.redis.Kill()
	down := time.Now()
	t.Logf("redis-server SIGKILLed at %d/%d files", len(r.trajectoryFiles()), n1)
	// Work keeps arriving while Redis is down: the dispatcher must hold it.
	r.appendTasks(lines[n1:])
	for _, s := range services {
		waitFor(t, 30*time.Second, 50*time.Millisecond, s.Name+" to report the outage on /healthz", func() (bool, string) {
			code := s.Healthz()
			return code != 200, fmt.Sprintf("/healthz answered %d", code)
		})
	}
	// Stay down long enough for every loop to fail and back off: a
	// runtime's handlers first spend ~2 s retrying their acks, then its
	// reader fails and retries 100 ms, 200 ms, 400 ms... later.
	time.Sleep(5 * time.Second)
	outage := time.Since(down)
	for _, s := range services {
		logLines[s] = strings.Count(s.Log(), "\n") - logLines[s]
	}
	r.redis.Restart()
	t.Logf("redis-server restarted")
	for _, s := range services {
		s.WaitHealthy(time.Minute)
	}

	r.waitSettled(ids, 3*time.Minute)
	// Every service survived the outage (no restart by the test) without
	// spinning: a reconnect loop without backoff logs thousands of lines a
	// second. The dispatcher, which had lines to send, retried with a
	// growing delay.
	for _, s := range services {
		if !s.Running() {
			t.Errorf("%s exited during the Redis outage:\n%s", s.Name, tail(s.Log(), 20))
		}
		if limit := int(100*outage.Seconds()) + 100; logLines[s] > limit {
			t.Errorf("%s logged %d lines during a %s outage: it retries without backing off", s.Name, logLines[s], outage.Round(time.Second))
		}
	}
	if maxRetryDelay(d) < 400*time.Millisecond {
		t.Errorf("the dispatcher's log shows no growing retry delay during the outage")
	}
	res := r.checkOutcome(ids)
	if res.Files != len(ids) || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, len(ids))
	}
	for _, id := range ids {
		checkPrintsID(t, res, id)
	}
	t.Logf("tasks %d: files %d, lost 0, duplicate files 0; redelivered %d, ran twice %d",
		len(ids), res.Files, res.Redelivered, res.ReExecuted)
}

// maxRetryDelay is the longest retry_in a service logged.
func maxRetryDelay(s *testsupport.Service) time.Duration {
	var longest time.Duration
	for _, rec := range logRecords(s) {
		v, ok := rec["retry_in"]
		if !ok {
			continue
		}
		var d time.Duration
		switch x := v.(type) {
		case float64:
			d = time.Duration(x)
		case string:
			d, _ = time.ParseDuration(x)
		}
		longest = max(longest, d)
	}
	return longest
}

// TestRedisLosesAcknowledgedWrites simulates the everysec loss window: the
// AOF is copied mid-run, the pipeline keeps working (the dispatcher enqueues
// new tasks, runtimes execute and acknowledge), then Redis is killed and
// restarted from the copy, as after an OS crash that lost the writes the
// kernel had not yet flushed. Redis is then consistent but in the past:
// acknowledgements are forgotten (those entries are reclaimed and re-run,
// their files rewritten with the same task's result), and enqueues, dedup
// keys and the dispatcher's stored position are forgotten together (they are
// one atomic script), so the dispatcher must send those lines again. The
// assertions are the usual ones: a task may run twice, but it ends with
// exactly one file.
//
// Known failure (reported with issue 7): a running dispatcher keeps reading
// from its in-memory offset and never notices that Redis forgot the batches
// it enqueued, so those tasks are lost until the dispatcher restarts (a
// restart reloads the stored position and re-sends them; with that, the rest
// of the pipeline passes this test).
func TestRedisLosesAcknowledgedWrites(t *testing.T) {
	r := setup(t)
	const n1, n2 = 200, 100
	ids, lines := printTasks("rollback", n1+n2)
	r.writeTasks(lines[:n1])
	rts := []*testsupport.Service{r.startSandbox(), r.startSandbox()}
	r.startDispatcher()
	_ = rts

	waitFor(t, 2*time.Minute, 20*time.Millisecond, "a third of the tasks done", func() (bool, string) {
		got := len(r.trajectoryFiles())
		return got >= n1/3, fmt.Sprintf("%d files", got)
	})
	snap := snapshotAOF(t, r.redis.Dir)
	before := len(r.trajectoryFiles())
	// The writes to be lost: n2 new tasks enqueued, and whatever the
	// runtimes acknowledge meanwhile.
	r.appendTasks(lines[n1:])
	waitFor(t, time.Minute, 20*time.Millisecond, "the new tasks to be enqueued", func() (bool, string) {
		n, err := r.rdb.SCard(t.Context(), "tasks:dispatched").Result()
		return err == nil && n == int64(n1+n2), fmt.Sprintf("%d dispatched, err %v", n, err)
	})
	r.redis.Kill()
	restoreAOF(t, snap, r.redis.Dir)
	r.redis.Restart()
	lostDispatch, _ := r.rdb.SCard(t.Context(), "tasks:dispatched").Result()
	t.Logf("rolled Redis back: files %d at the snapshot, %d at the crash; the dedup set went from %d to %d ids",
		before, len(r.trajectoryFiles()), n1+n2, lostDispatch)
	if lostDispatch == int64(n1+n2) {
		// The snapshot already held every enqueue (the dispatcher was
		// faster than the copy): there is no loss to recover from, so this
		// run proves nothing. Rare; rerun to exercise the scenario.
		t.Skip("the rollback lost no enqueue: the snapshot came too late to simulate a loss")
	}

	r.waitSettled(ids, 90*time.Second)
	res := r.checkOutcome(ids)
	if res.Files != len(ids) || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, len(ids))
	}
	for _, id := range ids {
		checkPrintsID(t, res, id)
	}
	t.Logf("tasks %d: files %d; ran twice %d (their files rewritten)", len(ids), res.Files, res.ReExecuted)
}

// TestSigterm sends SIGTERM to each binary during work. Runtime A has a long
// SHUTDOWN_GRACE: its in-flight tasks finish, are written and acknowledged
// before it exits. Runtime B has a grace shorter than its tasks: they are
// interrupted, nothing is written for them, and they stay pending until
// another runtime (C) reclaims them. The dispatcher is stopped while lines
// are being appended and resumes where it stopped. Every exit is clean
// (code 0), no trajectory is half-written (no temp file is left, every file
// parses), and after restarting A, B and the dispatcher everything completes.
func TestSigterm(t *testing.T) {
	r := setup(t)
	const slow, fast = 60, 200
	slowIDs, slowLines := sleepTasks("term-slow", slow, 3)
	fastIDs, fastLines := printTasks("term-fast", fast)
	ids := append(append([]string{}, slowIDs...), fastIDs...)
	r.writeTasks(slowLines)

	a := r.startSandbox("SANDBOX_CONCURRENCY=3", "SHUTDOWN_GRACE=60s")
	b := r.startSandbox("SANDBOX_CONCURRENCY=3", "SHUTDOWN_GRACE=300ms")
	r.startSandbox("SANDBOX_CONCURRENCY=3") // C: the other worker
	d := r.startDispatcher()
	nameA, nameB := consumerName(a), consumerName(b)

	// Lines keep arriving during the test.
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 0; i < fast; i += 5 {
			if err := appendLines(r.taskFile, fastLines[i:i+5]); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// A: SIGTERM just after it took a slow task; it must finish within the grace.
	r.waitFreshTask(nameA, "term-slow")
	heldA := r.pendingOf(nameA)
	a.Signal(syscall.SIGTERM)
	if code, ok := a.Wait(90 * time.Second); !ok || code != 0 {
		t.Fatalf("runtime A: exit %d (exited %v) after SIGTERM; want 0", code, ok)
	}
	if len(logMessages(a, "draining")) == 0 {
		t.Errorf("runtime A did not drain in-flight tasks on SIGTERM")
	}
	for entry, id := range heldA {
		if r.entryExists(entry) {
			t.Errorf("runtime A exited, but its entry %s (%s) was not acknowledged", entry, id)
		}
		tr, err := trajectory.Read(filepath.Join(r.trajDir(), id+".json"))
		if err != nil || tr.RuntimeID != nameA {
			t.Errorf("task %s, in flight on A at SIGTERM: trajectory %v by %q; want written by %s", id, err, runtimeOf(tr), nameA)
		}
	}

	// The dispatcher: SIGTERM while lines are appended, then restart.
	time.Sleep(300 * time.Millisecond)
	d.Signal(syscall.SIGTERM)
	if code, ok := d.Wait(30 * time.Second); !ok || code != 0 {
		t.Fatalf("dispatcher: exit %d (exited %v) after SIGTERM; want 0", code, ok)
	}

	// B: SIGTERM just after it took a slow task: a grace shorter than it.
	r.waitFreshTask(nameB, "term-slow")
	b.Signal(syscall.SIGTERM)
	if code, ok := b.Wait(30 * time.Second); !ok || code != 0 {
		t.Fatalf("runtime B: exit %d (exited %v) after SIGTERM; want 0", code, ok)
	}
	if len(logMessages(b, "shutdown grace over; cancelling handlers, their entries stay pending")) == 0 {
		t.Errorf("runtime B: its grace did not run out; the test did not interrupt anything")
	}
	interrupted := map[string]bool{}
	for _, rec := range logMessages(b, "handler failed; entry stays pending for redelivery") {
		id, _ := rec["task_id"].(string)
		interrupted[id] = true
	}
	if len(interrupted) == 0 {
		t.Errorf("runtime B interrupted no task")
	}
	if tmp := r.tempFiles(); len(tmp) > 0 {
		t.Errorf("temporary files left by a graceful shutdown: %q", tmp)
	}

	<-appended
	d.Start(true)
	a.Start(true)
	b.Start(true)
	r.waitSettled(ids, 3*time.Minute)
	dupes := metricSum(d.Metrics(), "tasks_duplicate_total")
	res := r.checkOutcome(ids)
	if res.Files != len(ids) || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, len(ids))
	}
	for _, id := range ids {
		checkPrintsID(t, res, id)
	}
	for id := range interrupted {
		tr := res.Trajs[id]
		if tr == nil {
			continue // reported above
		}
		if tr.RuntimeID == nameB {
			t.Errorf("task %s was interrupted on B, yet B's process wrote its trajectory", id)
		}
		if d, _ := tr.Metadata["deliveries"].(float64); d < 2 {
			t.Errorf("task %s was interrupted on B, yet its trajectory is from delivery %v", id, d)
		}
	}
	// The dispatcher resumed at its stored position: it read no line twice.
	if dupes != 0 {
		t.Errorf("the restarted dispatcher met %v duplicates: it re-read lines it had enqueued", dupes)
	}
	if tmp := r.tempFiles(); len(tmp) > 0 {
		t.Errorf("temporary files left: %q", tmp)
	}
	t.Logf("tasks %d: files %d, lost 0, duplicate files 0; A finished %d in-flight tasks in its grace, B left %d pending, re-run elsewhere",
		len(ids), res.Files, len(heldA), len(interrupted))
}

func runtimeOf(tr *core.Trajectory) string {
	if tr == nil {
		return ""
	}
	return tr.RuntimeID
}

// TestPoisonTasks: three poison tasks, each among 100 ordinary ones, with
// MAX_DELIVERIES=3. Each must end in tasks:dead after 3 deliveries without
// holding up the rest; then `adpctl dlq retry` brings one back.
//
//   - poison-unwritable makes its handler fail every time: the real runtime
//     treats a trajectory it cannot write as a system error (not a task
//     failure), so the entry is not acknowledged. The test makes
//     trajectories/poison-unwritable.json a directory, so the atomic rename
//     fails on every delivery.
//   - poison-crash crashes the process that handles it, every time: the
//     test SIGKILLs whichever runtime holds it (and restarts it). The entry
//     is never acknowledged; each lease expiry re-delivers it.
//   - poison-hang hangs past every timeout: a program that ignores its time
//     limit is killed by the jail and recorded as a timeout (a valid result,
//     not poison), so what can really hang is the runtime itself. The test
//     SIGSTOPs whichever runtime holds it: the frozen process renews
//     nothing, its lease expires and another runtime reclaims the entry; the
//     frozen one is then SIGKILLed and restarted, as a liveness probe on
//     /healthz would (the test checks /healthz stops answering).
//
// The crash and the hang strike crashAfter into the poison task's handling,
// as a task that crashes its runtime mid-execution would. A crash at the
// very moment of pickup also takes down the entries reclaimed in the same
// batch (the reclaimer claims up to its free slots at once): they follow
// the poison through its crash loop and can be dead-lettered with it. That
// is a limit of the design (see the report of issue 7), not tested here.
func TestPoisonTasks(t *testing.T) {
	const crashAfter = time.Second
	r := setup(t)
	rts := []*testsupport.Service{r.startSandbox(), r.startSandbox()}
	r.startDispatcher()
	var ids []string
	batch := func(prefix string, poison string) []string {
		normal, lines := printTasks(prefix, 100)
		lines = append(lines[:50:50], append([]string{poison}, lines[50:]...)...)
		ids = append(ids, normal...)
		r.appendTasks(lines)
		return normal
	}

	// 1. A handler error on every delivery.
	const unwritable = "poison-unwritable"
	block := filepath.Join(r.trajDir(), unwritable+".json")
	if err := os.MkdirAll(filepath.Join(block, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	normal1 := batch("poison1", codeTask(unwritable, `print("poison-unwritable")`))
	ids = append(ids, unwritable)
	waitFor(t, 2*time.Minute, 100*time.Millisecond, unwritable+" to be dead-lettered", func() (bool, string) {
		return r.isDead(unwritable), "not dead yet"
	})
	for _, d := range r.deadLetters() {
		if d.TaskID == unwritable && (d.Deliveries != 3 || !strings.Contains(d.LastError, "write trajectory "+unwritable)) {
			t.Errorf("dead letter of %s: deliveries %d, last error %q; want 3 and the write error", unwritable, d.Deliveries, d.LastError)
		}
	}
	r.waitSettled(append(normal1, unwritable), time.Minute)

	// 2. The process crashes on every delivery.
	const crash = "poison-crash"
	batch("poison2", codeTask(crash, `import time; time.sleep(5); print("poison-crash")`))
	ids = append(ids, crash)
	cache := map[string]string{}
	crashed := map[string]bool{}
	seen := map[string]time.Time{} // holder → when the test saw it take the entry
	waitFor(t, 3*time.Minute, 20*time.Millisecond, crash+" to be dead-lettered", func() (bool, string) {
		if r.isDead(crash) {
			return true, ""
		}
		h, ok := r.holderOf(crash, cache)
		if !ok || crashed[h.Consumer] {
			return false, "waiting for a holder"
		}
		if seen[h.Consumer].IsZero() {
			seen[h.Consumer] = time.Now()
		}
		if time.Since(seen[h.Consumer]) < crashAfter {
			return false, "running"
		}
		if s := serviceByConsumer(rts, h.Consumer); s != nil {
			crashed[h.Consumer] = true
			s.Kill()
			t.Logf("%s: delivery %d held by %s: SIGKILL", crash, h.Deliveries, h.Consumer)
			s.Start(true)
		}
		return false, fmt.Sprintf("%d crashes so far", len(crashed))
	})
	if len(crashed) != 3 {
		t.Errorf("%s crashed %d processes before it was dead-lettered; want MAX_DELIVERIES=3", crash, len(crashed))
	}

	// 3. The process hangs on every delivery.
	const hang = "poison-hang"
	batch("poison3", codeTask(hang, `import time; time.sleep(5); print("poison-hang")`))
	ids = append(ids, hang)
	stopped := map[string]*testsupport.Service{} // consumer name → frozen service
	hung := 0
	waitFor(t, 3*time.Minute, 20*time.Millisecond, hang+" to be dead-lettered", func() (bool, string) {
		h, ok := r.holderOf(hang, cache)
		// A frozen runtime that no longer holds the entry is killed and
		// restarted, as a liveness probe would.
		for name, s := range stopped {
			if ok && h.Consumer == name {
				continue
			}
			if code := s.Healthz(); code != 0 {
				t.Errorf("frozen runtime %s answered /healthz with %d", name, code)
			}
			s.Kill()
			s.Start(true)
			delete(stopped, name)
		}
		if r.isDead(hang) {
			return true, ""
		}
		if !ok || stopped[h.Consumer] != nil {
			return false, "waiting"
		}
		if seen[h.Consumer].IsZero() {
			seen[h.Consumer] = time.Now()
		}
		if time.Since(seen[h.Consumer]) < crashAfter {
			return false, "running"
		}
		if s := serviceByConsumer(rts, h.Consumer); s != nil {
			pid := r.pidOf(s)
			if pid == 0 {
				t.Fatalf("no pid for %s", h.Consumer)
			}
			signalPid(pid, syscall.SIGSTOP)
			stopped[h.Consumer] = s
			hung++
			t.Logf("%s: delivery %d held by %s: SIGSTOP", hang, h.Deliveries, h.Consumer)
		}
		return false, fmt.Sprintf("%d hangs so far", hung)
	})
	for _, s := range stopped { // the last holder, frozen when the entry died
		s.Kill()
		s.Start(true)
	}
	if hung != 3 {
		t.Errorf("%s hung %d processes before it was dead-lettered; want MAX_DELIVERIES=3", hang, hung)
	}
	for _, d := range r.deadLetters() {
		if (d.TaskID == crash || d.TaskID == hang) && !strings.Contains(d.LastError, "stopped renewing its lease") {
			t.Errorf("dead letter of %s: last error %q; want the lease expiry", d.TaskID, d.LastError)
		}
	}
	r.waitSettled(ids, 2*time.Minute)

	// adpctl dlq list shows the three; fix the cause of one and retry it.
	out, stderr, code := r.adpctl("dlq", "list", "--json")
	if code != 0 {
		t.Fatalf("adpctl dlq list: exit %d: %s", code, stderr)
	}
	entry := ""
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct{ ID, Task string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("adpctl dlq list --json: %v in %q", err, line)
		}
		if strings.Contains(e.Task, `"task_id":"`+unwritable+`"`) {
			entry = e.ID
		}
	}
	for _, id := range []string{unwritable, crash, hang} {
		if !strings.Contains(out, id) {
			t.Errorf("adpctl dlq list does not show %s:\n%s", id, out)
		}
	}
	if entry == "" {
		t.Fatalf("no dead letter for %s in:\n%s", unwritable, out)
	}
	if err := os.RemoveAll(block); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = r.adpctl("dlq", "retry", entry)
	if code != 0 || !strings.Contains(out, "retried "+entry) {
		t.Fatalf("adpctl dlq retry %s: exit %d, stdout %q, stderr %q", entry, code, out, stderr)
	}
	waitFor(t, time.Minute, 100*time.Millisecond, unwritable+" to complete after the retry", func() (bool, string) {
		return r.trajectoryFiles()[unwritable], "no file yet"
	})
	r.waitSettled(ids, time.Minute)

	res := r.checkOutcome(ids)
	if res.Dead != 2 || res.Files != len(ids)-2 {
		t.Errorf("files %d, dead %d; want %d and 2 (crash and hang)", res.Files, res.Dead, len(ids)-2)
	}
	for _, id := range ids {
		if id == crash || id == hang {
			continue
		}
		checkPrintsID(t, res, id)
	}
	// The ordinary tasks of the first batch ran once: the poison among them
	// cost them nothing.
	for _, id := range normal1 {
		if tr := res.Trajs[id]; tr != nil && tr.Metadata["deliveries"] != float64(1) {
			t.Errorf("%s: delivered %v times; the poison task disturbed it", id, tr.Metadata["deliveries"])
		}
	}
	t.Logf("tasks %d (3 poison): files %d, dead %d (crash, hang), lost 0, duplicate files 0; %s retried from the DLQ and completed",
		len(ids), res.Files, res.Dead, unwritable)
}

// TestKillDispatcher: the dispatcher is SIGKILLed 3 times (and restarted)
// while it ingests a 100,000-line file that keeps growing: 40,000 lines at
// the start, 60,000 appended in chunks during the kills, 600 of them
// repeating an earlier task id. No runtime consumes until ingest is over,
// so tasks:code must then hold every distinct id exactly once, with the
// content of its first line; no line may be read twice across restarts (the
// position is stored atomically with each batch). Then two runtimes drain
// the 99,400 tasks (no program and no LLM: each ends as a failed trajectory
// without a jail, which keeps the drain to a minute or two) and the usual
// end state is checked.
func TestKillDispatcher(t *testing.T) {
	r := setup(t)
	const (
		total, initial, chunk = 100_000, 40_000, 2_000
		dupEvery              = 100 // every 100th appended line repeats an id
		kills                 = 3
	)
	var lines []string
	var ids []string
	dupLines := map[int]bool{} // 1-based line numbers of the repeated ids
	for i := range total {
		if i >= initial && i%dupEvery == 0 {
			prev := (i * 7919) % initial // an id from the initial part
			lines = append(lines, fmt.Sprintf(`{"task_id":"ingest-%06d","task_type":"code","description":"repeat of ingest %d"}`, prev, prev))
			dupLines[i+1] = true
			continue
		}
		id := fmt.Sprintf("ingest-%06d", i)
		ids = append(ids, id)
		lines = append(lines, fmt.Sprintf(`{"task_id":%q,"task_type":"code","description":"ingest %d"}`, id, i))
	}
	r.writeTasks(lines[:initial])
	// Small batches: more round trips, so the kills land between them.
	d := r.startDispatcher("DISPATCH_BATCH_SIZE=64")

	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := initial; i < total; i += chunk {
			if err := appendLines(r.taskFile, lines[i:i+chunk]); err != nil {
				t.Errorf("append: %v", err)
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	ctx := t.Context()
	for i, th := range []int64{25_000, 55_000, 85_000} {
		var n int64
		waitFor(t, time.Minute, 2*time.Millisecond, fmt.Sprintf("%d tasks dispatched", th), func() (bool, string) {
			n, _ = r.rdb.SCard(ctx, "tasks:dispatched").Result()
			return n >= th, fmt.Sprintf("%d", n)
		})
		d.Kill()
		if n >= int64(len(ids)) {
			t.Fatalf("kill %d came after ingest was over (%d dispatched): the test proved nothing", i+1, n)
		}
		t.Logf("kill %d: SIGKILL the dispatcher at %d dispatched", i+1, n)
		d.Start(true)
	}
	<-appended
	waitFor(t, 2*time.Minute, 100*time.Millisecond, "the whole file to be dispatched", func() (bool, string) {
		pos, _ := r.rdb.HGetAll(ctx, "dispatcher:position:"+r.taskFile).Result()
		return pos["line"] == fmt.Sprint(total), fmt.Sprintf("position %v", pos)
	})

	// Each distinct id is in the stream exactly once, as first written.
	seen := make(map[string]int, len(ids))
	start := "-"
	for {
		msgs, err := r.rdb.XRangeN(ctx, "tasks:code", start, "+", 10_000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var spec struct {
				TaskID      string `json:"task_id"`
				Description string `json:"description"`
			}
			raw, _ := m.Values["task"].(string)
			if err := json.Unmarshal([]byte(raw), &spec); err != nil {
				t.Fatalf("entry %s: %v", m.ID, err)
			}
			seen[spec.TaskID]++
			if strings.HasPrefix(spec.Description, "repeat") {
				t.Errorf("entry %s holds a repeated line (%q) instead of the first one", m.ID, spec.Description)
			}
		}
		if len(msgs) < 10_000 {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	var twice, missing int
	for _, id := range ids {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if len(seen) != len(ids) || twice > 0 || missing > 0 {
		t.Errorf("tasks:code holds %d distinct ids for %d tasks: %d missing, %d more than once", len(seen), len(ids), missing, twice)
	}
	if n, _ := r.rdb.SCard(ctx, "tasks:dispatched").Result(); n != int64(len(ids)) {
		t.Errorf("dedup set holds %d ids, want %d", n, len(ids))
	}
	// Duplicates were only ever the repeated lines, each met at most once:
	// no restart re-read a line it had already enqueued.
	logged := map[int]int{}
	for _, rec := range logMessages(d, "duplicate task skipped") {
		line, _ := rec["line"].(float64)
		logged[int(line)]++
	}
	for line, n := range logged {
		if !dupLines[line] || n > 1 {
			t.Errorf("line %d reported as a duplicate %d times; it is %v a repeated id", line, n, map[bool]string{true: "", false: "not"}[dupLines[line]])
		}
	}

	// Drain and check the end state.
	r.startSandbox("SANDBOX_CONCURRENCY=8")
	r.startSandbox("SANDBOX_CONCURRENCY=8")
	r.waitSettled(ids, 8*time.Minute)
	res := r.checkOutcome(ids)
	if res.Files != len(ids) || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, len(ids))
	}
	t.Logf("lines %d (%d distinct tasks, %d repeated ids), dispatcher killed %d times: each task enqueued once, lost 0, duplicated 0; %d repeats logged",
		total, len(ids), len(dupLines), kills, len(logged))
}

// TestDiskFull: OUTPUT_DIR is a 1 MiB tmpfs that fills up mid-run. The
// runtime cannot write trajectories any more: it must acknowledge nothing it
// did not write (every task without a file keeps its entry in the stream,
// and no partial file appears) and report itself unhealthy on /healthz. The
// disk stays full for 4 lease periods, longer than MAX_DELIVERIES (3)
// re-deliveries take; then the filler is deleted, the runtime reports healthy
// again and every task completes: none may have been dead-lettered for a
// fault of the runtime's disk.
//
// Known failure (reported with issue 7): the runtime keeps taking entries
// while its health check fails, so every task it touches during the outage
// fails MAX_DELIVERIES times and is dead-lettered.
func TestDiskFull(t *testing.T) {
	skipShort(t)
	dir := filepath.Join(t.TempDir(), "output")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs for OUTPUT_DIR (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	r := setup(t, withOutputDir(dir))
	const n = 200
	ids, lines := printTasks("full", n)
	r.writeTasks(lines)
	rt := r.startSandbox()
	r.startDispatcher()
	waitFor(t, time.Minute, 10*time.Millisecond, "the first trajectories", func() (bool, string) {
		got := len(r.trajectoryFiles())
		return got >= 20, fmt.Sprintf("%d files", got)
	})

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	written := len(r.trajectoryFiles())
	t.Logf("disk full at %d/%d files", written, n)
	waitFor(t, 30*time.Second, 50*time.Millisecond, "the runtime to report the full disk", func() (bool, string) {
		code := rt.Healthz()
		return code != 200, fmt.Sprintf("/healthz %d", code)
	})
	leaseD, _ := time.ParseDuration(leaseTTL)
	time.Sleep(4 * leaseD)

	// Nothing written was lost, nothing unwritten was acknowledged.
	files := r.trajectoryFiles()
	if len(files) < written || len(files) == n {
		t.Errorf("%d files before the disk filled, %d after; want no more and no fewer", written, len(files))
	}
	if tmp := r.tempFiles(); len(tmp) != 0 {
		t.Errorf("partial files left on the full disk: %q", tmp)
	}
	inStream := map[string]bool{}
	msgs, err := r.rdb.XRange(t.Context(), "tasks:code", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		var spec struct {
			TaskID string `json:"task_id"`
		}
		raw, _ := m.Values["task"].(string)
		_ = json.Unmarshal([]byte(raw), &spec)
		inStream[spec.TaskID] = true
	}
	dead := map[string]bool{}
	for _, d := range r.deadLetters() {
		dead[d.TaskID] = true
	}
	var acked []string
	for _, id := range ids {
		if !files[id] && !inStream[id] && !dead[id] {
			acked = append(acked, id)
		}
	}
	if len(acked) > 0 {
		t.Errorf("%d tasks acknowledged without a trajectory: %q", len(acked), head(acked, 10))
	}
	if len(dead) > 0 {
		t.Errorf("%d tasks dead-lettered because the runtime's disk was full (the runtime kept taking work while unhealthy)", len(dead))
	}
	if code := rt.Healthz(); code == 200 {
		t.Errorf("/healthz answers 200 with a full disk")
	}
	if !strings.Contains(rt.Log(), "no space left on device") {
		t.Errorf("the runtime's log does not say why it failed")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	rt.WaitHealthy(30 * time.Second)
	r.waitSettled(ids, 2*time.Minute)
	res := r.checkOutcome(ids)
	if res.Files != n || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, n)
	}
	for _, id := range ids {
		if res.Trajs[id] != nil {
			checkPrintsID(t, res, id)
		}
	}
	t.Logf("tasks %d, disk full at %d for %s: 0 acknowledged unwritten; after freeing it: files %d, dead %d",
		n, written, 4*leaseD, res.Files, res.Dead)
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// TestBadInput: 10,001 invalid lines (random bytes, truncated JSON, wrong
// types and values, deep nesting, huge lines and strings, ids with path or
// control characters, an unknown constraint) mixed with 312 valid tasks (12
// of them with odd but safe ids) and 100 lines repeating a valid id. Every valid task runs once,
// with the content of its first line; every invalid line is in
// rejected.jsonl with its line number and a reason, exactly once; repeats
// are skipped as duplicates, not rejected; nothing crashes; and no file
// appears outside the trajectory directory.
func TestBadInput(t *testing.T) {
	r := setup(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	token := randomToken(6) // in every unsafe id, to look for escaped files

	g := newBadInput(rng, token)
	lines, kinds := g.build()
	r.writeTasks(lines)
	// The generator's verdicts agree with the task parser's.
	for i, l := range lines {
		_, err := core.ParseTask([]byte(l))
		if kinds[i].invalid() != (err != nil) {
			t.Fatalf("generator bug: line %d (%s) parses with error %v", i+1, kinds[i].kind, err)
		}
	}
	rts := []*testsupport.Service{r.startSandbox(), r.startSandbox()}
	d := r.startDispatcher()
	r.waitSettled(g.valid, 3*time.Minute)

	// Nothing crashed: every process is still up, and no panic was logged.
	for _, s := range append([]*testsupport.Service{d}, rts...) {
		if !s.Running() || strings.Contains(s.Log(), "panic") {
			t.Errorf("%s crashed or panicked:\n%s", s.Name, tail(s.Log(), 20))
		}
	}
	dm := d.Metrics()
	if got := metricSum(dm, "tasks_rejected_total"); got != float64(g.invalid) {
		t.Errorf("tasks_rejected_total = %v, want %d", got, g.invalid)
	}
	if got := metricSum(dm, "tasks_duplicate_total"); got != float64(g.repeats) {
		t.Errorf("tasks_duplicate_total = %v, want %d", got, g.repeats)
	}

	// rejected.jsonl: one record per invalid line, with its number and reason.
	data, err := os.ReadFile(filepath.Join(r.out, "rejected.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	byLine := map[int]int{}
	for i, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		var rec struct {
			Line   int    `json:"line"`
			Field  string `json:"field"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("rejected.jsonl line %d is not JSON: %v", i+1, err)
		}
		byLine[rec.Line]++
		if rec.Line < 1 || rec.Line > len(lines) {
			t.Errorf("rejected record for line %d, outside the file", rec.Line)
			continue
		}
		k := kinds[rec.Line-1]
		switch {
		case !k.invalid():
			t.Errorf("line %d (%s) is valid but was rejected: %s", rec.Line, k.kind, rec.Reason)
		case strings.TrimSpace(rec.Reason) == "":
			t.Errorf("line %d rejected without a reason", rec.Line)
		case k.kind == "bad-id" && rec.Field != "task_id":
			t.Errorf("line %d (unsafe id) rejected for %q: %s; want the task_id field", rec.Line, rec.Field, rec.Reason)
		case k.kind == "unknown-constraint" && rec.Field != "constraints.x":
			t.Errorf("line %d (unknown constraint) rejected for %q: %s; want the constraints.x field", rec.Line, rec.Field, rec.Reason)
		case k.kind == "huge-line" && !strings.Contains(rec.Reason, "more than the limit"):
			t.Errorf("line %d (too long) rejected for %q", rec.Line, rec.Reason)
		}
	}
	missing := 0
	for i, k := range kinds {
		if k.invalid() && byLine[i+1] != 1 {
			missing++
			if missing <= 10 {
				t.Errorf("line %d (%s) has %d records in rejected.jsonl, want 1", i+1, k.kind, byLine[i+1])
			}
		}
	}

	res := r.checkOutcome(g.valid)
	if res.Files != len(g.valid) || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, len(g.valid))
	}
	for _, id := range g.valid {
		checkPrintsID(t, res, id)
		if n := res.Executions[id]; n != 1 {
			t.Errorf("task %q ran %d times, want once", id, n)
		}
	}

	// No file outside the trajectory directory: the output holds only
	// trajectories and rejected.jsonl, the jails' scratch is gone, and no
	// crafted id escaped.
	for _, f := range walkFiles(r.out) {
		if f != "rejected.jsonl" && f != "trajectories/.health-probe" &&
			!(strings.HasPrefix(f, "trajectories/") && strings.Count(f, "/") == 1 && strings.HasSuffix(f, ".json")) {
			t.Errorf("unexpected file in OUTPUT_DIR: %q", f)
		}
	}
	if left := walkFiles(filepath.Join(r.root, "tmp")); len(left) > 0 {
		t.Errorf("files left in the sandbox scratch directory: %q", head(left, 10))
	}
	for _, base := range []string{r.out, r.trajDir(), filepath.Dir(r.out), filepath.Dir(r.taskFile), r.root, "/", os.TempDir()} {
		for _, f := range walkShallow(base) {
			if strings.Contains(f, token) {
				t.Errorf("a crafted id escaped the trajectory directory: %s", f)
			}
		}
	}
	t.Logf("lines %d: %d invalid (all in rejected.jsonl), %d valid tasks (all ran once), %d repeated ids skipped; lost 0, duplicated 0",
		len(lines), g.invalid, len(g.valid), g.repeats)
}

// walkShallow lists the names in dir and its immediate subdirectories.
func walkShallow(dir string) []string {
	var out []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		out = append(out, p)
		if e.IsDir() && dir != "/" {
			sub, _ := os.ReadDir(p)
			for _, s := range sub {
				out = append(out, filepath.Join(p, s.Name()))
			}
		}
	}
	return out
}

// TestFrozenHolderResumes: a runtime is frozen (SIGSTOP) while it runs 4
// tasks; with MAX_DELIVERIES=1 another runtime dead-letters them when their
// leases expire. Then the frozen one is resumed (SIGCONT), as a process
// recovering from a long stall would be: it must not write a trajectory for
// entries it no longer holds, or those tasks would end with both a
// trajectory and a dead letter. Three rounds, because the outcome of one is
// a race between the resumed handlers and the resumed lease renewal.
//
// Known failures (reported with issue 7): on resume the handlers usually
// finish before the lease renewal notices the loss, and write their files;
// and a jail whose launch the resumed runtime abandons can be left running,
// orphaned (the end-of-test process check catches it).
func TestFrozenHolderResumes(t *testing.T) {
	r := setup(t)
	const n, rounds = 4, 3
	a := r.startSandbox("SANDBOX_CONCURRENCY=4", "MAX_DELIVERIES=1")
	r.writeTasks(nil)
	r.startDispatcher()
	nameA := consumerName(a)
	pid := r.pidOf(a)
	var ids []string
	var b *testsupport.Service
	for round := 1; round <= rounds; round++ {
		roundIDs, lines := sleepTasks(fmt.Sprintf("frozen%d", round), n, 1)
		ids = append(ids, roundIDs...)
		r.appendTasks(lines)
		waitFor(t, time.Minute, 10*time.Millisecond, "A to hold every task", func() (bool, string) {
			held := r.pendingOf(nameA)
			return len(held) == n, fmt.Sprintf("%d held", len(held))
		})
		signalPid(pid, syscall.SIGSTOP)
		time.Sleep(2 * time.Second) // the programs finish while A is frozen
		if b == nil {
			b = r.startSandbox("MAX_DELIVERIES=1")
		} else {
			b.Start(true)
		}
		waitFor(t, time.Minute, 100*time.Millisecond, "the tasks to be dead-lettered", func() (bool, string) {
			d := len(r.deadLetters())
			return d == n*round, fmt.Sprintf("%d dead", d)
		})
		b.Stop(30 * time.Second)
		signalPid(pid, syscall.SIGCONT)
		waitFor(t, 30*time.Second, 50*time.Millisecond, "A to conclude its handlers", func() (bool, string) {
			done := len(logMessages(a, "task done")) + len(logMessages(a, "lease lost while handling; result not acknowledged"))
			return done >= n*round, fmt.Sprintf("%d concluded", done)
		})
	}
	res := r.checkOutcome(ids)
	if res.Dead != n*rounds {
		t.Errorf("dead letters %d, want %d", res.Dead, n*rounds)
	}
	t.Logf("tasks %d held by a frozen runtime, dead-lettered meanwhile: %d trajectories written after it resumed", n*rounds, res.Files)
}
