package sandbox

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentdataplatform/adp/internal/core"
)

// killReason says why the parent killed the jail.
type killReason int

const (
	killNone      killReason = iota
	killWall                 // the wall-clock limit (or the ctx deadline) passed
	killOutput               // the program wrote more than MaxOutputBytes
	killCancel               // ctx was cancelled
	killLaunch               // the jail's setup failed (the backend's started hook)
	killProcesses            // the jail had more than MaxProcs processes
)

// outcome is everything classify needs to know about a finished run.
type outcome struct {
	exitCode int            // exit status; 128+N for signal N
	signal   syscall.Signal // 0 when the program exited
	killed   killReason
	wall     time.Duration
	cpu      time.Duration // user+system time of the whole jail
	stderr   string        // the kept part of stderr
	limits   Limits
	// memoryKill is true when an unexplained SIGKILL is most likely the
	// cgroup memory limit (nsjail with the memory controller).
	memoryKill bool
}

var (
	// A traceback's last line names the exception; compile errors are
	// SyntaxError and its subclasses IndentationError and TabError.
	compileErrorLine = regexp.MustCompile(`^(SyntaxError|IndentationError|TabError)(:|$)`)
	memoryErrorLine  = regexp.MustCompile(`(?m)^MemoryError(:|$)`)
)

// classify maps an outcome to an error type and a one-line message. The
// order matters: the parent's own kill reasons are certain, signals come
// next, then what the interpreter said on stderr.
func classify(o outcome) (core.ErrorType, string) {
	lim := o.limits
	switch o.killed {
	case killOutput:
		return core.ErrOutputLimit, fmt.Sprintf("output limit exceeded: the program wrote more than %d bytes to stdout and stderr and was killed", lim.MaxOutputBytes)
	case killWall:
		return core.ErrTimeout, fmt.Sprintf("time limit exceeded: the program was still running after %s (wall clock) and was killed", lim.Wall.Round(time.Millisecond))
	case killCancel:
		return core.ErrSystem, "the run was cancelled"
	case killLaunch:
		return core.ErrSystem, "the jail failed to launch"
	case killProcesses:
		return core.ErrRuntime, fmt.Sprintf("process limit exceeded: the program had more than %d processes and was killed", lim.MaxProcs)
	}
	cpuLimit := time.Duration(cpuSeconds(lim.cpuTime())) * time.Second
	switch {
	case o.signal == syscall.SIGXCPU:
		return core.ErrTimeout, fmt.Sprintf("CPU time limit of %s exceeded (SIGXCPU)", cpuLimit)
	case o.signal == syscall.SIGKILL && o.cpu >= cpuKillThreshold(cpuLimit):
		return core.ErrTimeout, fmt.Sprintf("CPU time limit of %s exceeded (killed by SIGKILL)", cpuLimit)
	case o.signal == syscall.SIGKILL && o.wall >= lim.Wall:
		// The jail's own time limit (nsjail --time_limit) fired first.
		return core.ErrTimeout, fmt.Sprintf("time limit exceeded: the program was still running after %s (wall clock) and was killed", lim.Wall.Round(time.Millisecond))
	}
	if o.exitCode == 0 && o.signal == 0 {
		return core.ErrNone, ""
	}
	if memoryErrorLine.MatchString(o.stderr) {
		return core.ErrMemoryLimit, fmt.Sprintf("memory limit exceeded: MemoryError with a memory limit of %d MiB", lim.MemoryBytes>>20)
	}
	if o.signal == syscall.SIGKILL && o.memoryKill {
		return core.ErrMemoryLimit, fmt.Sprintf("memory limit exceeded: killed by SIGKILL at the memory limit of %d MiB", lim.MemoryBytes>>20)
	}
	last := lastLine(o.stderr)
	if compileErrorLine.MatchString(last) {
		return core.ErrCompile, last
	}
	if o.signal != 0 {
		return core.ErrRuntime, fmt.Sprintf("killed by %s", signalName(o.signal))
	}
	if last != "" {
		return core.ErrRuntime, fmt.Sprintf("exit status %d: %s", o.exitCode, last)
	}
	return core.ErrRuntime, fmt.Sprintf("exit status %d", o.exitCode)
}

// lastLine returns the last non-blank line of s, trimmed, at most 500 bytes.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		s = strings.ToValidUTF8(s[:500], "") + "..."
	}
	return s
}

// exitStatus turns a wait status into (exit code, signal). Both jails
// report a program killed by signal N as exit status 128+N; a jail process
// killed itself (by the parent's fallback kill) reports the signal directly.
func exitStatus(ws syscall.WaitStatus) (int, syscall.Signal) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), ws.Signal()
	}
	code := ws.ExitStatus()
	if code > 128 && code <= 128+64 {
		return code, syscall.Signal(code - 128)
	}
	return code, 0
}

// signalName returns "SIGSEGV" for syscall.SIGSEGV.
func signalName(s syscall.Signal) string {
	if s == 0 {
		return ""
	}
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// cpuKillThreshold is the CPU time (as wait4 reports it) from which an
// unexplained SIGKILL is taken for the CPU hard limit, which both backends
// set one second above the limit. The kernel enforces RLIMIT_CPU on its
// tick-sampled CPU time, while wait4 reports the precise time, which can be
// lower by several per cent on a busy machine (a kill at 2 s reported as
// 1.82 to 2.0 s of CPU under load): the threshold is the limit itself, or
// 90 % of the hard limit for long limits where one second of slack is less
// than that. The program is its pid namespace's init, which nothing inside
// the jail can SIGKILL, so the other causes are the host's OOM killer and
// an administrator.
func cpuKillThreshold(cpuLimit time.Duration) time.Duration {
	return min(cpuLimit, (cpuLimit+time.Second)*9/10)
}

// cpuSeconds rounds a CPU limit up to whole seconds (RLIMIT_CPU's unit).
func cpuSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// ceilMiB rounds bytes up to MiB (nsjail's unit for rlimit_as and
// rlimit_fsize).
func ceilMiB(b int64) int64 {
	return max((b+(1<<20)-1)>>20, 1)
}

// ExitError classifies a Python program that exited by itself with
// exitCode after writing stderr, as Run does for a whole run: the code
// agent uses it for the program's part of a run that also ran its tests.
func ExitError(exitCode int, stderr string, lim Limits) (core.ErrorType, string) {
	return classify(outcome{exitCode: exitCode, stderr: stderr, limits: lim.withDefaults()})
}
