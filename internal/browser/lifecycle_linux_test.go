package browser

// The lifecycle tests find Chromium's processes through /proc.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestBrowserKilled kills Chromium or the Playwright driver, during a task
// or while the pool is idle: the task in flight fails with browser_error
// (not lost, not hung), the pool relaunches, the next task works, and
// nothing of the dead browser is left, zombies included.
func TestBrowserKilled(t *testing.T) {
	web := newSite(t)
	cases := []struct {
		name    string
		victim  func(*instance) int
		midTask bool
	}{
		{"chromium killed mid-task", func(i *instance) int { return i.pid }, true},
		{"driver killed mid-task", func(i *instance) int { return i.driverPID }, true},
		{"chromium killed while idle", func(i *instance) int { return i.pid }, false},
		{"driver killed while idle (watchdog)", func(i *instance) int { return i.driverPID }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := newTestPool(t, nil)
			pool.mu.Lock()
			old := pool.cur
			pool.mu.Unlock()
			victim := tc.victim(old)
			if victim == 0 || old.pid == 0 {
				t.Fatalf("pids unknown: chromium %d driver %d", old.pid, old.driverPID)
			}
			var (
				s   *Session
				ctx context.Context
			)
			if tc.midTask {
				// Start the task first, so that its renderer is among the victims.
				s, ctx = acquire(t, pool)
				if err := s.Goto(ctx, web.URL+"/target"); err != nil {
					t.Fatal(err)
				}
			}
			oldPIDs := append(sessionPIDs(old.pid, old.start), old.driverPID)
			if len(oldPIDs) < 4 { // driver, browser, zygote, a utility or GPU process at least
				t.Fatalf("processes of the browser: %v", oldPIDs)
			}

			if tc.midTask {
				errc := make(chan error, 1)
				go func() { errc <- s.Goto(ctx, web.URL+"/hang") }()
				<-web.hangStarted
				if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
					t.Fatalf("kill: %v", err)
				}
				wantClass(t, <-errc, core.ErrBrowser)
				// Later calls of the dead session fail the same way, at once.
				_, err := s.Observe(ctx)
				wantClass(t, err, core.ErrBrowser)
				_ = s.Close()
			} else {
				if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
					t.Fatalf("kill: %v", err)
				}
				deadline := time.Now().Add(20 * time.Second)
				for pool.Stats().BrowserRestarts == 0 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}

			s2, ctx2 := acquire(t, pool)
			if err := s2.Goto(ctx2, web.URL+"/form"); err != nil {
				t.Fatalf("task after the kill: %v", err)
			}
			if err := s2.FillAndSubmit(ctx2, "#q", "after kill"); err != nil {
				t.Fatal(err)
			}
			if o := observe(t, ctx2, s2); !strings.Contains(o.Text, "Results for after kill") {
				t.Fatalf("text %q", o.Text)
			}
			st := pool.Stats()
			if st.BrowserRestarts != 1 || st.BrowsersLaunched != 2 || st.BrowserPID == old.pid || st.BrowserPID == 0 {
				t.Fatalf("after relaunch: %+v", st)
			}
			if err := pool.Healthy(); err != nil {
				t.Fatalf("Healthy after relaunch: %v", err)
			}
			// Nothing of the killed browser survives.
			deadline := time.Now().Add(20 * time.Second)
			for len(sessionPIDs(old.pid, old.start)) > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if left := sessionPIDs(old.pid, old.start); len(left) > 0 {
				t.Fatalf("processes of the killed browser still alive: %v", left)
			}
			if c := waitForCensus(t, func(c procCensus) bool { return c.zombies == 0 }); c.zombies != 0 {
				t.Fatalf("%d zombie processes under the test", c.zombies)
			}
			// Wherever they were re-parented, the old processes are gone, not
			// zombies.
			for _, pid := range oldPIDs {
				deadline := time.Now().Add(20 * time.Second)
				for pidExists(pid) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if pidExists(pid) {
					t.Errorf("process %d of the killed browser still exists (state %s)", pid, stateOf(pid))
				}
			}
		})
	}
}

// TestRecycle: after RecycleAfter contexts a new browser takes new sessions
// while the old one finishes its own, and is then closed.
func TestRecycle(t *testing.T) {
	pool := newTestPool(t, func(c *Config) { c.RecycleAfter = 2 })
	web := newSite(t)
	pool.mu.Lock()
	first := pool.cur
	pool.mu.Unlock()

	s1, ctx1 := acquire(t, pool)
	s2, ctx2 := acquire(t, pool) // the second context reaches the threshold
	if s1.inst != s2.inst || s1.inst != first {
		t.Fatal("the first two sessions should share the first browser")
	}
	s3, ctx3 := acquire(t, pool) // waits for the replacement
	if s3.inst == s1.inst {
		t.Fatal("third session went to the retired browser")
	}
	// The old browser still serves its sessions while the new one runs.
	for _, x := range []struct {
		s   *Session
		ctx context.Context
	}{{s1, ctx1}, {s2, ctx2}, {s3, ctx3}} {
		if err := x.s.Goto(x.ctx, web.URL+"/target"); err != nil {
			t.Fatalf("Goto during recycle: %v", err)
		}
	}
	if st := pool.Stats(); st.BrowsersRunning != 2 || st.BrowserRecycles != 1 || st.BrowserRestarts != 0 {
		t.Fatalf("during drain: %+v", st)
	}
	if len(sessionPIDs(first.pid, first.start)) == 0 {
		t.Fatal("the draining browser is already gone")
	}
	_ = s1.Close()
	_ = s2.Close()
	deadline := time.Now().Add(20 * time.Second)
	for (pool.Stats().BrowsersRunning != 1 || len(sessionPIDs(first.pid, first.start)) > 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := pool.Stats(); st.BrowsersRunning != 1 || len(sessionPIDs(first.pid, first.start)) > 0 {
		t.Fatalf("after drain: %+v, old processes %v", st, sessionPIDs(first.pid, first.start))
	}
	if err := s3.Goto(ctx3, web.URL+"/links"); err != nil {
		t.Fatalf("session on the new browser: %v", err)
	}
}

// TestCloseLeavesNoChromium counts the Chromium processes under the test
// process before, during and after a pool's life: tasks leave no renderer
// behind, and Close, with sessions still open, leaves nothing at all.
func TestCloseLeavesNoChromium(t *testing.T) {
	before := takeCensus(t)
	deps := testsupport.FindBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
	defer cancel()
	pool, err := NewPool(ctx, Config{
		ExecutablePath: deps.Chromium, DriverDir: deps.DriverDir, NodePath: deps.Node,
		Policy: URLPolicy{AllowPrivate: true},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	pool.mu.Lock()
	leader := pool.cur.leader()
	pool.mu.Unlock()
	web := newSite(t)

	// Finished tasks leave nothing behind: renderers go with their contexts.
	task := func() {
		s, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Goto(ctx, web.URL+"/js"); err != nil {
			t.Fatal(err)
		}
		if c := takeCensus(t, leader); c.renderers == 0 {
			t.Fatalf("census with a task open %+v: the renderer is not counted", c)
		}
	}
	task()
	afterOne := waitForCensus(t, func(c procCensus) bool { return c.zombies == 0 }, leader)
	for i := 0; i < 5; i++ {
		task()
	}
	// Chromium may keep one spare renderer warm; five leaked ones would show.
	afterSix := waitForCensus(t, func(c procCensus) bool { return c.renderers <= afterOne.renderers && c.zombies == 0 }, leader)
	if afterSix.renderers > afterOne.renderers || afterSix.zombies != 0 {
		t.Fatalf("after 6 tasks: %+v; after 1: %+v", afterSix, afterOne)
	}

	var sessions []*Session
	for i := 0; i < 2; i++ {
		s, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Goto(ctx, web.URL+"/target"); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	during := takeCensus(t, leader)
	if during.chromium <= before.chromium || during.inSession < 4 {
		t.Fatalf("census while running %+v (before %+v): the count does not see the browser", during, before)
	}
	// Close with sessions still open: their calls end with ErrPoolClosed.
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = sessions[0].Observe(ctx)
	wantClass(t, err, core.ErrSystem)
	for _, s := range sessions {
		_ = s.Close()
	}
	_, err = pool.Acquire(ctx)
	if !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	// Close waited for the teardown: nothing to poll for.
	after := takeCensus(t, leader)
	if after.chromium != before.chromium || after.inSession != 0 || after.zombies != before.zombies {
		t.Fatalf("after Close: %+v, before: %+v", after, before)
	}
}

// TestBrowserWedged freezes the whole Chromium (SIGSTOP): calls time out
// instead of hanging, closing the session gives up after CloseTimeout and
// replaces the browser, and the frozen processes are killed.
func TestBrowserWedged(t *testing.T) {
	pool := newTestPool(t, func(c *Config) {
		c.NavigationTimeout = 2 * time.Second
		c.ActionTimeout = time.Second
		c.CloseTimeout = time.Second
	})
	web := newSite(t)
	s, ctx := acquire(t, pool)
	if err := s.Goto(ctx, web.URL+"/target"); err != nil {
		t.Fatal(err)
	}
	old := s.inst
	frozen := sessionPIDs(old.pid, old.start)
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() { // in case the test fails before the pool kills them
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	wantClass(t, s.Goto(ctx, web.URL+"/links"), core.ErrTimeout)
	_ = s.Close() // the context cannot close: the browser is replaced

	s2, ctx2 := acquire(t, pool)
	if err := s2.Goto(ctx2, web.URL+"/links"); err != nil {
		t.Fatalf("task after the wedge: %v", err)
	}
	if st := pool.Stats(); st.BrowserRestarts != 1 || st.BrowserPID == old.pid {
		t.Fatalf("stats %+v", st)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(sessionPIDs(old.pid, old.start)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := sessionPIDs(old.pid, old.start); len(left) > 0 {
		t.Fatalf("frozen processes left: %v", left)
	}
}

// TestKillSession: the sweep finds a session's orphans, and only them.
func TestKillSession(t *testing.T) {
	t.Parallel()
	// A session leader with a child that survives it, as a renderer would.
	cmd := exec.Command("sh", "-c", "sleep 300 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Fscan(out, &child); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	leader := cmd.Process.Pid
	st, ok := readStat(leader)
	if !ok {
		t.Fatal("no stat for the leader")
	}
	if got := sessionPIDs(leader, st.start); len(got) != 2 {
		t.Fatalf("session members %v, want the leader and %d", got, child)
	}
	// A different start time means the pid was reused: hands off.
	if got := sessionPIDs(leader, st.start+1); len(got) != 0 {
		t.Fatalf("members of a reused pid's session: %v", got)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !processAlive(child) {
		t.Fatal("the orphan died with its leader; the test proves nothing")
	}
	if n := killSession(leader, st.start); n != 1 {
		t.Fatalf("killSession signalled %d processes, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(child) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if processAlive(child) {
		t.Fatal("the orphan survived the sweep")
	}
}
