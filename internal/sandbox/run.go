package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// Names inside the jail and on the host.
const (
	// jailCodeDir is the directory of the program inside the jail; both
	// backends create it in the jail's own root (no file on the host).
	jailCodeDir = "/sandbox"
	// scriptName is the program's file name in jailCodeDir, read-only.
	scriptName = "main.py"
	// runIDEnv carries the run id into the jail's environment.
	runIDEnv = "SANDBOX_RUN_ID"
)

// Timings of the parent's kill path.
const (
	// killGrace is how long a jail has to die after the backend's stop
	// before its supervisor process (bwrap, nsjail) is SIGKILLed; the jail
	// dies with it (parent-death signal).
	killGrace = 2 * time.Second
	// drainTimeout bounds the wait for the output pipes to reach EOF once
	// the jail's supervisor has been reaped.
	drainTimeout = 2 * time.Second
	// maxAuxBytes bounds what is kept of the backend's own channel (bwrap's
	// JSON status, nsjail's log).
	maxAuxBytes = 64 << 10
)

// launcher is what a backend contributes to the shared run loop.
type launcher interface {
	// command builds the jail's command for one run of spec, with code
	// as /sandbox/main.py, read-only.
	command(lim Limits, code string, spec runSpec, runID string) (*launch, error)
	// interpreter is the Python the jail runs by default.
	interpreter() interpreter
	// owner is the host uid and gid of the jail's 65534.
	owner() (uid, gid int)
	// stop starts killing the jail's whole process tree. It is called at
	// most once per run, normally before the supervisor has been reaped;
	// it may race with the supervisor's exit, so it must not signal by
	// a bare pid that could have been reused (os.Process signals through
	// a pidfd).
	stop(r *running)
	// launchFailure reports whether the jail failed before the program
	// ran, with the reason.
	launchFailure(o outcome, stdout string, aux []byte) (string, bool)
	// memoryKill reports whether an unexplained SIGKILL is most likely the
	// memory limit (cgroup memory controller in use).
	memoryKill() bool
}

// launch is one run's command as a backend built it.
type launch struct {
	cmd *exec.Cmd
	// The jail's fd 3 is always the backend's own channel (bwrap's
	// --json-status-fd, nsjail's --log_fd), read into running.aux.
	// childFiles become fd 4, 5, ...; the parent closes its copies after
	// Start.
	childFiles []*os.File
	// started, when set, runs once the jail has started (the wall limit
	// already applies); an error ends the run as a launch failure.
	started func(r *running) error
	// spawn, when set, starts the command: it calls start on the thread
	// the jail must be forked from.
	spawn func(start func() error) error
	// memoryKilled, when set, reports after the run whether the memory
	// limit killed a process of the jail (the run's memory cgroup says).
	memoryKilled func() bool
	// done, when set, releases what the backend kept for the run
	// (descriptors, the thread). supervisorExited: the
	// supervisor was reaped after exiting by itself, so the jail it
	// supervised is gone too (not killed from outside, which could leave
	// the jail dying for a moment longer).
	done func(supervisorExited bool)
}

// jail is the Jail implementation shared by both backends: the backend
// builds the command line, this runs it under the parent's limits.
type jail struct {
	name string
	l    launcher
}

func (j *jail) Name() string { return j.name }

func (j *jail) Owner() (uid, gid int) { return j.l.owner() }

// Check runs print("ok") and fails unless it printed ok.
func (j *jail) Check(ctx context.Context) error {
	lim := DefaultLimits()
	lim.Wall = 10 * time.Second
	// The ids too: nsjail may be given them by name (nsjail_ids.go), and a
	// host file changed since the start must not go unnoticed.
	res, err := j.Run(ctx, Request{Code: `import posix; print("ok", posix.getuid(), posix.getgid())`, Limits: lim})
	if err != nil {
		return fmt.Errorf("sandbox %s: check: %w", j.name, err)
	}
	if want := fmt.Sprintf("ok %d %d\n", jailUID, jailUID); !res.OK() || res.Stdout != want {
		return fmt.Errorf("sandbox %s: check: trivial program failed or ran with other ids than %d: %s %s (exit %d, stdout %q, stderr %q)",
			j.name, jailUID, res.ErrorType, res.ErrorMessage, res.ExitCode, res.Stdout, res.Stderr)
	}
	return nil
}

// Run implements Jail.
func (j *jail) Run(ctx context.Context, req Request) (Result, error) {
	lim := req.Limits.withDefaults()
	runID := newRunID()
	res := Result{RunID: runID}

	if err := ctx.Err(); err != nil {
		return systemError(res, fmt.Errorf("sandbox: not started: %w", err))
	}
	// A context deadline earlier than the wall limit is the wall limit.
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < lim.Wall {
			lim.Wall = max(left, time.Millisecond)
		}
	}

	spec, err := specOf(req, j.l.interpreter())
	if err != nil {
		return systemError(res, err)
	}
	ln, err := j.l.command(lim, req.Code, spec, runID)
	if err != nil {
		return systemError(res, err)
	}
	supervisorExited := false
	if ln.done != nil {
		defer func() { ln.done(supervisorExited) }()
	}
	r, err := start(ln, j.l, req.Stdin, lim)
	if err != nil {
		return systemError(res, fmt.Errorf("sandbox %s: starting the jail: %w", j.name, err))
	}

	timer := time.AfterFunc(lim.Wall, func() { r.kill(killWall) })
	stopCount := make(chan struct{})
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		r.watchProcesses(lim.MaxProcs, stopCount)
	}()
	stopWatch := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.kill(killWall)
		} else {
			r.kill(killCancel)
		}
	})
	var startErr error
	if ln.started != nil {
		if startErr = ln.started(r); startErr != nil {
			r.kill(killLaunch)
		}
	}
	o, stdout, stderr, aux := r.wait()
	close(stopCount)
	<-counted
	timer.Stop()
	stopWatch()
	supervisorExited = r.cmd.ProcessState != nil && r.cmd.ProcessState.Exited()

	o.limits = lim
	o.memoryKill = j.l.memoryKill() || (ln.memoryKilled != nil && ln.memoryKilled())
	res.Wall = o.wall
	res.ExitCode = o.exitCode
	res.Signal = signalName(o.signal)
	res.Stdout, res.StdoutTruncated = stdout.String()
	res.Stderr, res.StderrTruncated = stderr.String()
	o.stderr = res.Stderr

	if msg, failed := j.l.launchFailure(o, res.Stdout, aux); failed && (o.killed == killNone || o.killed == killLaunch) {
		return systemError(res, fmt.Errorf("sandbox %s: the jail failed to launch: %s", j.name, msg))
	}
	if o.killed == killLaunch {
		return systemError(res, fmt.Errorf("sandbox %s: the jail failed to launch: %w", j.name, startErr))
	}
	if o.killed == killCancel {
		return systemError(res, fmt.Errorf("sandbox %s: run cancelled: %w", j.name, context.Cause(ctx)))
	}
	res.ErrorType, res.ErrorMessage = classify(o)
	res.ProcessLimit = o.killed == killProcesses
	return res, nil
}

func systemError(res Result, err error) (Result, error) {
	res.ErrorType = core.ErrSystem
	res.ErrorMessage = err.Error()
	return res, err
}

func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// running is one started jail: its supervisor process, the readers of its
// output, and the kill state.
type running struct {
	cmd   *exec.Cmd
	l     launcher
	start time.Time

	total    atomic.Int64 // bytes written to stdout+stderr so far
	maxTotal int64

	mu      sync.Mutex
	killed  killReason
	exited  bool
	aux     []byte        // the backend's channel (fd 3) so far
	auxMore chan struct{} // signalled after each read of fd 3
	auxEOF  chan struct{} // closed at the end of fd 3

	readers        sync.WaitGroup
	pipes          []*os.File    // read ends, closed after draining
	stdout, stderr *streamBuffer // written by the readers only
}

// start launches the command with pipes for stdout, stderr and fd 3, and
// starts reading them. Everything the readers use (the launcher, through
// kill) is set before they start: a reader may pass the output cap and
// kill the jail before start returns.
func start(ln *launch, l launcher, stdin []byte, lim Limits) (*running, error) {
	cmd := ln.cmd
	r := &running{
		cmd: cmd, l: l, maxTotal: lim.MaxOutputBytes,
		auxMore: make(chan struct{}, 1), auxEOF: make(chan struct{}),
		stdout: newStreamBuffer(lim.KeepOutputBytes), stderr: newStreamBuffer(lim.KeepOutputBytes),
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(ln.childFiles...)
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		closeAll(ln.childFiles...)
		return nil, err
	}
	auxR, auxW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW, errR, errW)
		closeAll(ln.childFiles...)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = append([]*os.File{auxW}, ln.childFiles...)
	if len(stdin) > 0 {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// Stdin is copied by a goroutine of os/exec; it ends with EPIPE when
	// the jail dies without reading it all.
	cmd.WaitDelay = drainTimeout

	r.start = time.Now()
	// Every jail is forked from a thread that has just joined a fresh
	// session keyring (keyring.go): the backend's thread (spawn), or the
	// calling goroutine's, locked meanwhile.
	launch := func() error {
		if err := joinFreshSessionKeyring(); err != nil {
			return err
		}
		return cmd.Start()
	}
	if ln.spawn != nil {
		err = ln.spawn(launch)
	} else {
		err = onLockedThread(launch)
	}
	closeAll(outW, errW, auxW) // the jail holds its own copies
	closeAll(ln.childFiles...)
	if err != nil {
		closeAll(outR, errR, auxR)
		return nil, err
	}
	r.pipes = []*os.File{outR, errR, auxR}
	r.readers.Add(3)
	go r.readStream(outR, r.stdout)
	go r.readStream(errR, r.stderr)
	go r.readAux(auxR)
	return r, nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// readStream copies a stream into its buffer and kills the jail once the
// total output passes the cap.
func (r *running) readStream(f *os.File, buf *streamBuffer) {
	defer r.readers.Done()
	p := make([]byte, 32<<10)
	for {
		n, err := f.Read(p)
		if n > 0 {
			buf.Write(p[:n])
			if r.total.Add(int64(n)) > r.maxTotal {
				r.kill(killOutput)
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *running) readAux(f *os.File) {
	defer r.readers.Done()
	defer close(r.auxEOF)
	p := make([]byte, 4<<10)
	for {
		n, err := f.Read(p)
		if n > 0 {
			r.mu.Lock()
			if room := maxAuxBytes - len(r.aux); room > 0 {
				r.aux = append(r.aux, p[:min(n, room)]...)
			}
			r.mu.Unlock()
			select {
			case r.auxMore <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return
		}
	}
}

// waitAux waits until the backend's channel holds what match looks for,
// and returns match's result; an error when the channel ends first or
// after timeout.
func waitAux[T any](r *running, timeout time.Duration, match func([]byte) (T, bool)) (T, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if v, ok := match(r.auxSnapshot()); ok {
			return v, nil
		}
		select {
		case <-r.auxMore:
		case <-r.auxEOF:
			if v, ok := match(r.auxSnapshot()); ok {
				return v, nil
			}
			var zero T
			return zero, errors.New("the jail exited during setup")
		case <-deadline.C:
			var zero T
			return zero, fmt.Errorf("no status from the jail after %s", timeout)
		}
	}
}

// auxSnapshot returns what the backend's channel has said so far.
func (r *running) auxSnapshot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.aux...)
}

// kill records the first reason and starts the backend's stop, then a
// fallback: SIGKILL to the supervisor after killGrace. Once the supervisor
// has been reaped it does nothing (its pid may be reused).
func (r *running) kill(why killReason) {
	r.mu.Lock()
	if r.exited || r.killed != killNone {
		r.mu.Unlock()
		return
	}
	r.killed = why
	r.mu.Unlock()

	r.l.stop(r)
	time.AfterFunc(killGrace, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.exited {
			// os.Process signals through a pidfd: safe even if it races
			// with the reaping.
			_ = r.cmd.Process.Kill()
		}
	})
}

// wait reaps the supervisor, drains the pipes and returns the outcome.
func (r *running) wait() (outcome, *streamBuffer, *streamBuffer, []byte) {
	waitErr := r.cmd.Wait()
	wall := time.Since(r.start)
	r.mu.Lock()
	r.exited = true
	killed := r.killed
	r.mu.Unlock()

	// The supervisor is gone, and the jail with it: the pipes reach EOF
	// at once. The deadline only guards against a leaked writer.
	drained := make(chan struct{})
	go func() { r.readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		for _, f := range r.pipes {
			_ = f.SetReadDeadline(time.Now())
		}
		<-drained
	}
	closeAll(r.pipes...)

	o := outcome{killed: killed, wall: wall}
	if st := r.cmd.ProcessState; st != nil {
		if ws, ok := st.Sys().(syscall.WaitStatus); ok {
			o.exitCode, o.signal = exitStatus(ws)
		}
		o.cpu = st.UserTime() + st.SystemTime()
	} else if waitErr != nil {
		o.exitCode = -1
	}
	return o, r.stdout, r.stderr, r.auxSnapshot()
}

// pid is the supervisor's process id.
func (r *running) pid() int { return r.cmd.Process.Pid }

// firstLine returns the first line of s, trimmed.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
