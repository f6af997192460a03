package browser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/core"
)

// Pool runs one Chromium (driven through one Playwright driver process) and
// hands out Sessions: a fresh browser context with one page per task, at most
// MaxConcurrent at a time.
//
// Lifecycle of the browser:
//   - Crash: when Chromium disconnects without being asked to (killed, OOM,
//     crashed), the pool marks it dead, kills what is left of its process
//     tree, and launches a replacement at once. Sessions on the dead browser
//     fail their current and later calls with a *BrowserError (browser_error);
//     new sessions wait for the replacement.
//   - Recycling: after RecycleAfter contexts the browser stops taking new
//     sessions and a replacement is launched (started in the background the
//     moment the threshold is reached). The old browser drains: it is closed
//     when its last session ends. Tasks in flight are never disturbed.
//
// Close, a crash or a recycle ends with a sweep of the browser's session
// (every process Chromium forked, re-parented or not): no Chromium outlives
// its Pool.
type Pool struct {
	cfg Config
	id  string // random; prefixes instance markers and signs the proxy's headers
	// stateKey is the random window property under which pageStateJS keeps
	// a page's content stamps (not the id: a page must not learn that).
	stateKey string
	sem      chan struct{}
	closing  chan struct{}

	mu        sync.Mutex
	cur       *instance
	launching *launchAttempt
	instances map[*instance]struct{} // launched and not yet closed
	sessions  map[*Session]struct{}
	gen       int
	closed    bool
	// lastLaunchFailure spaces launch attempts when Chromium keeps failing
	// to start, so that a stream of tasks does not become a stream of
	// launches.
	lastLaunchFailure time.Time

	bg sync.WaitGroup // launches and instance closers

	stats poolCounters
}

type launchAttempt struct {
	done chan struct{}
	err  error
}

// instance is one Chromium with its own Playwright driver. A recycle or a
// crash replaces both, which also bounds the driver's memory.
type instance struct {
	gen       int
	marker    string
	pw        *playwright.Playwright
	browser   playwright.Browser
	pid       int    // Chromium's browser process (and session leader); 0 if unknown
	start     uint64 // its start time, to tell it from a later process with the same pid
	driverPID int

	// Guarded by Pool.mu.
	contexts int // contexts created on this browser
	active   int // sessions open on this browser
	retiring bool

	closing   atomic.Bool   // Close was asked for: a disconnect is expected
	dead      chan struct{} // closed when the browser disconnected
	deadOnce  sync.Once
	lostOnce  sync.Once
	closeOnce sync.Once
}

func (i *instance) markDead() { i.deadOnce.Do(func() { close(i.dead) }) }

// browserAlive reports whether Chromium's browser process is still running.
func (i *instance) browserAlive() bool {
	st, ok := readStat(i.pid)
	return ok && st.start == i.start && st.state != 'Z' && st.state != 'X'
}

// killLeftovers kills whatever is left of the instance's Chromium: the
// browser process and everything in its session, re-parented orphans
// included. It returns how many processes it signalled.
func (i *instance) killLeftovers() int {
	pid, start := i.pid, i.start
	if pid == 0 {
		pid, start = browserPID(i.marker)
	}
	return killSession(pid, start)
}

func (i *instance) isDead() bool {
	select {
	case <-i.dead:
		return true
	default:
		return false
	}
}

// Stats is a snapshot of the pool for metrics and health checks.
type Stats struct {
	MaxConcurrent    int
	SessionsInUse    int // open sessions = browser contexts in use
	PagesInUse       int // pages open in those contexts (one per session, plus popups not yet closed)
	BrowserConnected bool
	BrowserPID       int   // Chromium's browser process, 0 if none or unknown
	BrowsersRunning  int   // 2 while a recycled browser drains
	BrowsersLaunched int64 // successful launches, the first included
	BrowserRestarts  int64 // relaunches after an unexpected disconnect (crash, kill)
	BrowserRecycles  int64 // browsers retired after RecycleAfter contexts
	LaunchFailures   int64
	ContextsCreated  int64
	// NavigationErrors counts failed navigations (Goto, and navigations an
	// action started) by error_type.
	NavigationErrors map[core.ErrorType]int64
	RequestsBlocked  int64 // requests denied by the URL policy (Goto and the egress proxy)
	DialogsDismissed int64
	PopupsOpened     int64
	DownloadsRefused int64
}

type poolCounters struct {
	launched, restarts, recycles, launchFailures, contexts atomic.Int64
	blocked, dialogs, popups, popupsOpen, downloads        atomic.Int64

	navMu     sync.Mutex
	navErrors map[core.ErrorType]int64
}

// NewPool checks the dependencies, starts the driver and Chromium, and
// returns a pool ready to serve. A missing Chromium, driver or Node.js is a
// *MissingDependencyError saying what to install; nothing is downloaded.
// ctx bounds the first launch only.
func NewPool(ctx context.Context, cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := CheckDependencies(cfg); err != nil {
		return nil, err
	}
	// playwright-go takes the Node.js binary only from the environment.
	if os.Getenv("PLAYWRIGHT_NODEJS_PATH") != cfg.NodePath {
		if err := os.Setenv("PLAYWRIGHT_NODEJS_PATH", cfg.NodePath); err != nil {
			return nil, err
		}
	}
	p := &Pool{
		cfg:       cfg,
		id:        randomID(),
		stateKey:  "__adp_" + randomID(),
		sem:       make(chan struct{}, cfg.MaxConcurrent),
		closing:   make(chan struct{}),
		instances: map[*instance]struct{}{},
		sessions:  map[*Session]struct{}{},
	}
	p.stats.navErrors = map[core.ErrorType]int64{}

	p.mu.Lock()
	a := p.startLaunchLocked()
	p.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
		_ = p.Close()
		return nil, fmt.Errorf("starting the browser: %w", ctx.Err())
	}
	if a.err != nil {
		_ = p.Close()
		return nil, a.err
	}
	return p, nil
}

// Acquire waits for a free slot (at most MaxConcurrent sessions are open)
// and returns a new Session: a fresh browser context (cookies, storage and
// cache of its own) with one page. The caller must Close it.
//
// ctx bounds the whole session, not only the wait: when ctx is done the
// session's context is closed, which ends any Playwright call in flight (they
// cannot be cancelled otherwise), and its calls fail with a timeout (deadline)
// or system (cancelled) error. Pass the task's context.
func (p *Pool) Acquire(ctx context.Context) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError("acquire", err)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctxError("acquire", ctx.Err())
	case <-p.closing:
		return nil, ErrPoolClosed
	}
	inst, err := p.lease(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	s, err := newSession(ctx, p, inst)
	if err != nil {
		p.release(inst)
		<-p.sem
		select {
		case <-p.closing:
			return nil, ErrPoolClosed // Close pulled the browser away
		default:
		}
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = s.Close()
		return nil, ErrPoolClosed
	}
	p.sessions[s] = struct{}{}
	p.mu.Unlock()
	return s, nil
}

// lease returns a usable browser with one more session counted on it,
// launching one if there is none (crash, recycle).
func (p *Pool) lease(ctx context.Context) (*instance, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if inst := p.cur; inst != nil && !inst.isDead() && !inst.retiring {
			inst.active++
			inst.contexts++
			if p.cfg.RecycleAfter > 0 && inst.contexts >= p.cfg.RecycleAfter {
				inst.retiring = true
				p.stats.recycles.Add(1)
				p.cfg.Logger.Info("recycling browser", "generation", inst.gen, "contexts", inst.contexts)
				p.startLaunchLocked() // the replacement starts while this browser drains
			}
			p.mu.Unlock()
			p.stats.contexts.Add(1)
			return inst, nil
		}
		a := p.startLaunchLocked()
		p.mu.Unlock()
		select {
		case <-a.done:
		case <-ctx.Done():
			return nil, ctxError("waiting for the browser", ctx.Err())
		case <-p.closing:
			return nil, ErrPoolClosed
		}
		if a.err != nil {
			return nil, a.err
		}
	}
}

// startLaunchLocked starts a launch unless one is running, and returns it.
// p.mu must be held.
func (p *Pool) startLaunchLocked() *launchAttempt {
	if p.launching != nil {
		return p.launching
	}
	a := &launchAttempt{done: make(chan struct{})}
	if p.closed {
		a.err = ErrPoolClosed
		close(a.done)
		return a
	}
	p.launching = a
	p.gen++
	gen := p.gen
	wait := time.Until(p.lastLaunchFailure.Add(launchRetryDelay))
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-p.closing:
			}
		}
		var (
			inst *instance
			err  error
		)
		select {
		case <-p.closing:
			err = ErrPoolClosed
		default:
			inst, err = p.launch(gen)
		}
		var closeNow []*instance
		p.mu.Lock()
		p.launching = nil
		switch {
		case errors.Is(err, ErrPoolClosed):
			a.err = err
		case err != nil:
			p.stats.launchFailures.Add(1)
			p.lastLaunchFailure = time.Now()
			a.err = &BrowserError{Op: "launch", Err: err}
			if old := p.cur; old != nil && old.retiring && !old.isDead() {
				// Keep serving from the old browser rather than failing tasks;
				// try to recycle it again later.
				old.retiring = false
				old.contexts = 0
			}
		case p.closed:
			closeNow = append(closeNow, inst)
			a.err = ErrPoolClosed
		default:
			p.instances[inst] = struct{}{}
			p.bg.Add(1)
			go p.watch(inst)
			old := p.cur
			p.cur = inst
			if old != nil {
				old.retiring = true
				if old.active == 0 {
					closeNow = append(closeNow, old)
				}
			}
		}
		p.mu.Unlock()
		close(a.done)
		if err != nil && !errors.Is(err, ErrPoolClosed) {
			p.cfg.Logger.Error("browser launch failed", "generation", gen, "error", err)
		}
		for _, inst := range closeNow {
			p.closeInstance(inst)
		}
	}()
	return a
}

// launchRetryDelay is the least time between a failed launch and the next.
const launchRetryDelay = 2 * time.Second

// launch starts a driver and a Chromium. It is bounded by LaunchTimeout; a
// launch that finishes after giving up is closed.
func (p *Pool) launch(gen int) (*instance, error) {
	inst := &instance{gen: gen, marker: fmt.Sprintf("%s.%d", p.id, gen), dead: make(chan struct{})}
	err := bounded(context.Background(), p.cfg.LaunchTimeout, "launch", func() error {
		return p.start(inst)
	}, func() { p.closeInstance(inst) })
	if err != nil {
		inst.killLeftovers()
		return nil, err
	}
	p.stats.launched.Add(1)
	p.cfg.Logger.Info("browser launched", "generation", gen, "pid", inst.pid, "driver_pid", inst.driverPID)
	return inst, nil
}

func (p *Pool) start(inst *instance) error {
	pw, err := playwright.Run(&playwright.RunOptions{
		DriverDirectory:     p.cfg.DriverDir,
		SkipInstallBrowsers: true,
		Verbose:             false,
		Stdout:              io.Discard,
		Stderr:              p.cfg.DriverStderr,
		Logger:              p.cfg.Logger, // without one, playwright-go redirects the standard logger
	})
	if err != nil {
		return fmt.Errorf("starting the Playwright driver from %s: %w", p.cfg.DriverDir, err)
	}
	inst.pw = pw
	inst.driverPID = pw.Pid()

	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env[markerEnv] = inst.marker
	timeoutMs := float64(p.cfg.LaunchTimeout.Milliseconds())
	b, err := pw.Chromium.Launch(playwright.BrowserTypeLaunchOptions{
		ExecutablePath:  playwright.String(p.cfg.ExecutablePath),
		Headless:        playwright.Bool(true),
		Args:            p.cfg.launchArgs(),
		Env:             env,
		Timeout:         &timeoutMs,
		ChromiumSandbox: playwright.Bool(false),
	})
	if err != nil {
		_ = pw.Stop()
		return fmt.Errorf("launching %s: %w", p.cfg.ExecutablePath, err)
	}
	inst.browser = b
	inst.pid, inst.start = browserPID(inst.marker)
	b.OnDisconnected(func(playwright.Browser) { p.instanceLost(inst, "browser disconnected") })
	return nil
}

// watchdogInterval is how often an idle pool checks that its driver and
// browser processes are still alive. Playwright reports Chromium's exit, but
// not the driver's: without this, a pool whose driver died would look
// healthy until the next task failed.
const watchdogInterval = time.Second

func (p *Pool) watch(inst *instance) {
	defer p.bg.Done()
	t := time.NewTicker(watchdogInterval)
	defer t.Stop()
	for {
		select {
		case <-inst.dead:
			return
		case <-p.closing:
			return
		case <-t.C:
			switch {
			case inst.driverPID > 0 && !processAlive(inst.driverPID):
				p.instanceLost(inst, "playwright driver exited")
				return
			case inst.pid > 0 && !inst.browserAlive():
				p.instanceLost(inst, "chromium exited")
				return
			}
		}
	}
}

// instanceLost handles the browser or its driver going away. When the pool
// did not ask for it (crash, kill, OOM), the browser is replaced at once.
func (p *Pool) instanceLost(inst *instance, reason string) {
	inst.markDead()
	if inst.closing.Load() {
		return
	}
	inst.lostOnce.Do(func() { p.replaceLost(inst, reason) })
}

func (p *Pool) replaceLost(inst *instance, reason string) {
	p.mu.Lock()
	wasCurrent := p.cur == inst
	if wasCurrent {
		p.cur = nil
	}
	closed := p.closed
	if !closed {
		p.bg.Add(1)
	}
	if !closed && wasCurrent {
		p.stats.restarts.Add(1)
		p.startLaunchLocked()
	}
	p.mu.Unlock()
	if closed {
		return
	}
	p.cfg.Logger.Warn("browser lost; relaunching", "reason", reason,
		"generation", inst.gen, "pid", inst.pid, "driver_pid", inst.driverPID)
	go func() {
		defer p.bg.Done()
		p.closeInstance(inst)
	}()
}

// release ends one session's lease on inst and closes inst if it was retired
// and this was its last session.
func (p *Pool) release(inst *instance) {
	p.mu.Lock()
	inst.active--
	closeIt := inst.active == 0 && inst != p.cur && (inst.retiring || inst.isDead()) && !p.closed
	if closeIt {
		p.bg.Add(1)
	}
	p.mu.Unlock()
	if closeIt {
		go func() {
			defer p.bg.Done()
			p.closeInstance(inst)
		}()
	}
}

// closeInstance closes a browser and its driver, then kills any of its
// processes still alive. Safe to call more than once.
func (p *Pool) closeInstance(inst *instance) {
	inst.closeOnce.Do(func() {
		inst.closing.Store(true)
		p.mu.Lock()
		delete(p.instances, inst)
		if p.cur == inst {
			p.cur = nil
		}
		p.mu.Unlock()
		if inst.browser != nil {
			_ = bounded(context.Background(), p.cfg.CloseTimeout, "close browser", func() error {
				return inst.browser.Close()
			}, nil)
		}
		if inst.pw != nil {
			err := bounded(context.Background(), p.cfg.CloseTimeout, "stop driver", inst.pw.Stop, nil)
			var te *TimeoutError
			if errors.As(err, &te) && inst.driverPID > 0 {
				// The driver ignores its closed stdin. It is our child and not
				// yet reaped (Stop is still waiting for it), so the pid is its.
				_ = syscall.Kill(inst.driverPID, syscall.SIGKILL)
			}
		}
		if n := inst.killLeftovers(); n > 0 {
			p.cfg.Logger.Warn("killed leftover chromium processes", "generation", inst.gen, "count", n)
		}
		inst.markDead()
	})
}

// Close closes every session still open (their calls fail with
// ErrPoolClosed), closes the browsers and the drivers, and kills any Chromium
// process left. Call it after the tasks have drained: it does not wait for
// them. Acquire fails with ErrPoolClosed afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.bg.Wait()
		return nil
	}
	p.closed = true
	close(p.closing)
	sessions := make([]*Session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	insts := make([]*instance, 0, len(p.instances))
	for inst := range p.instances {
		insts = append(insts, inst)
	}
	p.mu.Unlock()

	for _, s := range sessions {
		s.abort(ErrPoolClosed)
	}
	for _, inst := range insts {
		p.closeInstance(inst)
	}
	p.bg.Wait()
	return nil
}

// Healthy reports nil when the pool has a connected browser (or is about to:
// a relaunch in progress is healthy), an error otherwise.
func (p *Pool) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return ErrPoolClosed
	case p.cur != nil && !p.cur.isDead() && p.cur.browser.IsConnected():
		return nil
	case p.launching != nil:
		return nil
	}
	return &BrowserError{Op: "health", Err: errors.New("no connected browser")}
}

// Stats returns a snapshot of the pool's gauges and counters.
func (p *Pool) Stats() Stats {
	s := Stats{
		MaxConcurrent:    p.cfg.MaxConcurrent,
		BrowsersLaunched: p.stats.launched.Load(),
		BrowserRestarts:  p.stats.restarts.Load(),
		BrowserRecycles:  p.stats.recycles.Load(),
		LaunchFailures:   p.stats.launchFailures.Load(),
		ContextsCreated:  p.stats.contexts.Load(),
		RequestsBlocked:  p.stats.blocked.Load(),
		DialogsDismissed: p.stats.dialogs.Load(),
		PopupsOpened:     p.stats.popups.Load(),
		DownloadsRefused: p.stats.downloads.Load(),
		NavigationErrors: map[core.ErrorType]int64{},
	}
	p.stats.navMu.Lock()
	for k, v := range p.stats.navErrors {
		s.NavigationErrors[k] = v
	}
	p.stats.navMu.Unlock()
	p.mu.Lock()
	s.SessionsInUse = len(p.sessions)
	s.BrowsersRunning = len(p.instances)
	if c := p.cur; c != nil && !c.isDead() {
		s.BrowserConnected = c.browser.IsConnected()
		s.BrowserPID = c.pid
	}
	p.mu.Unlock()
	s.PagesInUse = s.SessionsInUse + int(p.stats.popupsOpen.Load())
	return s
}

func (p *Pool) countNavError(err error) {
	if err == nil {
		return
	}
	t := Classify(err)
	p.stats.navMu.Lock()
	p.stats.navErrors[t]++
	p.stats.navMu.Unlock()
}

func (p *Pool) forget(s *Session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// bounded runs fn, which cannot be cancelled, and waits for it at most d or
// until ctx is done. If it gives up, late is called once fn has returned (to
// close whatever fn created) and the error is a *TimeoutError.
func bounded(ctx context.Context, d time.Duration, op string, fn func() error, late func()) error {
	var (
		mu       sync.Mutex
		finished bool
		gaveUp   bool
	)
	done := make(chan error, 1)
	go func() {
		err := fn()
		mu.Lock()
		finished = true
		lateNow := gaveUp
		mu.Unlock()
		if lateNow && late != nil {
			late()
		}
		done <- err
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	var cause error
	select {
	case err := <-done:
		return err
	case <-t.C:
		cause = fmt.Errorf("no answer within %s", d)
	case <-ctx.Done():
		cause = ctx.Err()
	}
	mu.Lock()
	if finished {
		mu.Unlock()
		return <-done
	}
	gaveUp = true
	mu.Unlock()
	if errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%s: %w", op, cause)
	}
	return &TimeoutError{Op: op, Err: cause}
}

// ctxError turns a context's error into this package's: a deadline is a
// timeout, a cancellation is a shutdown (system_error).
func ctxError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Op: op, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
