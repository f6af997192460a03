package sandbox

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestClassify(t *testing.T) {
	lim := testLimits() // wall 4s, CPU 2s
	tb := "Traceback (most recent call last):\n  File \"/sandbox/main.py\", line 1, in <module>\n"
	cases := []struct {
		name    string
		o       outcome
		want    core.ErrorType
		wantMsg string
	}{
		{"success", outcome{}, core.ErrNone, ""},
		{"success despite MemoryError text", outcome{stderr: "MemoryError\n"}, core.ErrNone, ""},
		{"syntax error", outcome{exitCode: 1, stderr: "  File \"/sandbox/main.py\", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax\n"}, core.ErrCompile, "SyntaxError: invalid syntax"},
		{"indentation error", outcome{exitCode: 1, stderr: "  File \"/sandbox/main.py\", line 2\nIndentationError: expected an indented block\n"}, core.ErrCompile, "IndentationError"},
		{"tab error", outcome{exitCode: 1, stderr: "TabError: inconsistent use of tabs and spaces in indentation\n"}, core.ErrCompile, "TabError"},
		{"syntax error raised at run time by eval", outcome{exitCode: 1, stderr: tb + "SyntaxError: unexpected EOF while parsing\n"}, core.ErrCompile, "SyntaxError"},
		{"SyntaxError mentioned, other exception last", outcome{exitCode: 1, stderr: tb + "ValueError: not a SyntaxError: x\n"}, core.ErrRuntime, "ValueError"},
		{"exception", outcome{exitCode: 1, stderr: tb + "ZeroDivisionError: division by zero\n"}, core.ErrRuntime, "exit status 1: ZeroDivisionError: division by zero"},
		{"exit status without stderr", outcome{exitCode: 3}, core.ErrRuntime, "exit status 3"},
		{"exit 255 of the program", outcome{exitCode: 255}, core.ErrRuntime, "exit status 255"},
		{"MemoryError", outcome{exitCode: 1, stderr: tb + "MemoryError\n"}, core.ErrMemoryLimit, "MemoryError"},
		{"MemoryError with message, then chained", outcome{exitCode: 1, stderr: tb + "MemoryError: cannot allocate\n\nDuring handling of the above exception, another exception occurred:\n\nKeyError: 1\n"}, core.ErrMemoryLimit, "memory limit"},
		{"memory cgroup kill", outcome{exitCode: 137, signal: syscall.SIGKILL, memoryKill: true, wall: time.Second}, core.ErrMemoryLimit, "SIGKILL"},
		{"unexplained SIGKILL", outcome{exitCode: 137, signal: syscall.SIGKILL, wall: time.Second}, core.ErrRuntime, "killed by SIGKILL"},
		{"wall limit (parent kill)", outcome{exitCode: 137, signal: syscall.SIGKILL, killed: killWall, wall: 4 * time.Second}, core.ErrTimeout, "time limit exceeded"},
		{"wall limit wins over MemoryError text", outcome{exitCode: 137, killed: killWall, stderr: "MemoryError\n"}, core.ErrTimeout, "time limit"},
		{"jail's own time limit (nsjail 137)", outcome{exitCode: 137, signal: syscall.SIGKILL, wall: 5 * time.Second}, core.ErrTimeout, "time limit"},
		{"SIGXCPU", outcome{exitCode: 152, signal: syscall.SIGXCPU, wall: 2 * time.Second}, core.ErrTimeout, "CPU time limit of 2s"},
		{"CPU hard limit SIGKILL", outcome{exitCode: 137, signal: syscall.SIGKILL, cpu: 3 * time.Second, wall: 3 * time.Second}, core.ErrTimeout, "CPU time limit"},
		// Killed at 3 s of tick-sampled CPU, reported as less by wait4.
		{"CPU hard limit SIGKILL, CPU under-reported", outcome{exitCode: 137, signal: syscall.SIGKILL, cpu: 2 * time.Second, wall: 3 * time.Second}, core.ErrTimeout, "CPU time limit"},
		{"CPU limit wins over memory kill", outcome{exitCode: 137, signal: syscall.SIGKILL, cpu: 3 * time.Second, memoryKill: true}, core.ErrTimeout, "CPU"},
		{"output cap", outcome{exitCode: 137, signal: syscall.SIGKILL, killed: killOutput}, core.ErrOutputLimit, "output limit exceeded"},
		{"output cap wins over wall", outcome{killed: killOutput, wall: 10 * time.Second}, core.ErrOutputLimit, "output"},
		{"segfault", outcome{exitCode: 139, signal: syscall.SIGSEGV}, core.ErrRuntime, "killed by SIGSEGV"},
		{"abort", outcome{exitCode: 134, signal: syscall.SIGABRT, stderr: "Fatal Python error: Aborted\n"}, core.ErrRuntime, "killed by SIGABRT"},
		{"cancelled", outcome{killed: killCancel}, core.ErrSystem, "cancelled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.limits = lim
			got, msg := classify(tc.o)
			if got != tc.want {
				t.Errorf("classify = %q (%q), want %q", got, msg, tc.want)
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
			if tc.want != core.ErrNone && msg == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	cases := []struct {
		ws       syscall.WaitStatus
		wantCode int
		wantSig  syscall.Signal
	}{
		{0, 0, 0},
		{3 << 8, 3, 0},
		{255 << 8, 255, 0},               // nsjail's own failure, or sys.exit(255)
		{137 << 8, 137, syscall.SIGKILL}, // reported by the jail as 128+9
		{139 << 8, 139, syscall.SIGSEGV}, // 128+11
		{152 << 8, 152, syscall.SIGXCPU}, // 128+24
		{syscall.WaitStatus(syscall.SIGKILL), 137, syscall.SIGKILL}, // the supervisor itself killed
	}
	for _, tc := range cases {
		code, sig := exitStatus(tc.ws)
		if code != tc.wantCode || sig != tc.wantSig {
			t.Errorf("exitStatus(%#x) = %d, %v; want %d, %v", uint32(tc.ws), code, sig, tc.wantCode, tc.wantSig)
		}
	}
	if got := signalName(syscall.SIGSEGV); got != "SIGSEGV" {
		t.Errorf("signalName(SIGSEGV) = %q", got)
	}
}

func TestCPUKillThreshold(t *testing.T) {
	for _, c := range []struct{ limit, want time.Duration }{
		{time.Second, time.Second},
		{2 * time.Second, 2 * time.Second},
		{9 * time.Second, 9 * time.Second},
		{30 * time.Second, 27900 * time.Millisecond}, // 90 % of the 31 s hard limit
	} {
		if got := cpuKillThreshold(c.limit); got != c.want {
			t.Errorf("cpuKillThreshold(%s) = %s, want %s", c.limit, got, c.want)
		}
	}
}

func TestUnits(t *testing.T) {
	if got := cpuSeconds(1500 * time.Millisecond); got != 2 {
		t.Errorf("cpuSeconds(1.5s) = %d", got)
	}
	if got := cpuSeconds(0); got != 1 {
		t.Errorf("cpuSeconds(0) = %d", got)
	}
	if got := ceilMiB(256 << 20); got != 256 {
		t.Errorf("ceilMiB(256 MiB) = %d", got)
	}
	if got := ceilMiB(1); got != 1 {
		t.Errorf("ceilMiB(1) = %d", got)
	}
	if got := ceilMiB(3<<20 + 1); got != 4 {
		t.Errorf("ceilMiB(3 MiB + 1) = %d", got)
	}
}

func TestLimitsDefaults(t *testing.T) {
	d := DefaultLimits()
	if got := (Limits{}).withDefaults(); got != d {
		t.Errorf("zero Limits with defaults = %+v, want %+v", got, d)
	}
	l := Limits{Wall: time.Second, MaxProcs: 3}.withDefaults()
	if l.Wall != time.Second || l.MaxProcs != 3 || l.CPU != d.CPU || l.MaxOutputBytes != d.MaxOutputBytes {
		t.Errorf("partial Limits with defaults = %+v", l)
	}
	if d.Wall != 30*time.Second || d.KeepOutputBytes != 64<<10 || d.MaxOutputBytes != 1<<20 {
		t.Errorf("DefaultLimits changed: %+v (update the doc comments)", d)
	}
}
