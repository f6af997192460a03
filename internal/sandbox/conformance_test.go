package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// The conformance suite: every backend present runs the same table, each
// case asserting the exact outcome, then checking that nothing of the run
// survived (no process, no file) and that the jail still runs hello world.
//
// Cases run one after the other: several of them saturate the machine on
// purpose (fork bomb, busy loop, output flood) and would distort each other
// on a small host. No case asserts timings.

// testLimits keeps the suite quick: short wall and CPU limits, small
// memory and process caps (threads as many as processes: the cases that
// fork and start threads test the kernel's cap, limits_test.go the
// process count).
func testLimits() Limits {
	l := DefaultLimits()
	l.Wall = 4 * time.Second
	l.CPU = 2 * time.Second
	l.MemoryBytes = 256 << 20
	l.MaxProcs = 16
	l.MaxThreads = 16
	l.MaxFileBytes = 8 << 20
	l.TmpfsBytes = 16 << 20
	return l
}

// jailSetup is what a conformance test needs.
type jailSetup struct {
	jail Jail
}

// forEachBackend runs fn against every backend present, skipping (with the
// reason) the ones whose binaries are not installed.
func forEachBackend(t *testing.T, fn func(t *testing.T, s jailSetup)) {
	t.Helper()
	for _, backend := range []string{BackendNsjail, BackendBwrap} {
		t.Run(backend, func(t *testing.T) {
			s := setupJail(t, backend)
			fn(t, s)
		})
	}
}

func setupJail(t *testing.T, backend string) jailSetup {
	t.Helper()
	j, err := New(backend, Config{})
	if errors.Is(err, ErrNoJail) {
		t.Skipf("%s conformance skipped: %v", backend, err)
	}
	if err != nil {
		t.Fatalf("New(%q): %v", backend, err)
	}
	if j.Name() != backend {
		t.Fatalf("Name() = %q, want %q", j.Name(), backend)
	}
	return jailSetup{jail: j}
}

type conformanceCase struct {
	name   string
	code   string
	stdin  string
	limits func(*Limits)
	check  func(t *testing.T, res Result)
	// checkImage, when set, replaces check on an image root (forEachRoot:
	// the image's user is root inside, and site is on).
	checkImage func(t *testing.T, res Result)
	// skip, when set, names why the case does not apply to this jail;
	// skipAfter is asked after the run (what the run taught of the host).
	skip      func(j Jail) string
	skipAfter func(j Jail) string
}

var conformanceCases = []conformanceCase{
	{
		name: "hello world",
		code: `print("hello")`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "hello\n")
		},
	},
	{
		name: "exception",
		code: "def f():\n    return 1 / 0\nf()\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrRuntime)
			wantExit(t, res, 1, "")
			wantContains(t, res.Stderr, "ZeroDivisionError: division by zero")
			wantContains(t, res.ErrorMessage, "ZeroDivisionError")
		},
	},
	{
		name: "sys.exit(3)",
		code: "import sys\nprint('bye')\nsys.exit(3)\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrRuntime)
			wantExit(t, res, 3, "")
			wantStdout(t, res, "bye\n")
		},
	},
	{
		name: "syntax error",
		code: "def f(:\n    pass\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrCompile)
			wantContains(t, res.ErrorMessage, "SyntaxError")
		},
	},
	{
		name: "indentation error",
		code: "if True:\nprint('x')\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrCompile)
			wantContains(t, res.ErrorMessage, "IndentationError")
		},
	},
	{
		name: "stdlib imports",
		code: "import json, math, re, itertools, collections, ctypes, decimal, fractions, heapq, functools, datetime, hashlib, random, string, statistics\n" +
			"print(json.dumps({'pi': round(math.pi, 2)}), sum(itertools.islice(itertools.count(), 5)), random.random() < 1)\n",
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "{\"pi\": 3.14} 10 True\n")
		},
	},
	{
		name: "identity and isolation",
		code: `import os, socket, sys
print(os.getuid(), os.getgid(), os.geteuid(), os.getgroups())
print(socket.gethostname())
print(sorted(k for k in os.environ if k not in ("SANDBOX_RUN_ID", "PWD")))
print(sys.flags.isolated, sys.flags.no_site)
print(sorted(os.listdir("/")))
print(sorted(os.listdir("/dev")))
open_fds = []
for fd in range(3, 64):
    try:
        os.fstat(fd)
        open_fds.append(fd)
    except OSError:
        pass
print(open_fds)
`,
		check: func(t *testing.T, res Result) {
			checkIdentity(t, res, "65534 65534 65534 []", "1 1")
		},
		checkImage: func(t *testing.T, res Result) {
			// Root inside, 65534 outside (TestImageRootUserOutside).
			checkIdentity(t, res, "0 0 0 []", "1 0")
		},
	},
	{
		name: "infinite loop",
		code: "while True:\n    pass\n",
		check: func(t *testing.T, res Result) {
			// The CPU limit (SIGXCPU) or the wall limit, whichever first.
			wantType(t, res, core.ErrTimeout)
		},
	},
	{
		name: "while True allocation",
		code: "a = []\nwhile True:\n    a.append(bytearray(10 << 20))\n",
		check: func(t *testing.T, res Result) {
			// MemoryError under RLIMIT_AS; the OOM killer under a memory
			// cgroup.
			wantType(t, res, core.ErrMemoryLimit)
			if !strings.Contains(res.Stderr, "MemoryError") && res.Signal != "SIGKILL" {
				t.Errorf("neither MemoryError nor SIGKILL: signal %q, stderr %q", res.Signal, res.Stderr)
			}
		},
	},
	{
		name: "2 GB bytearray",
		code: "b = bytearray(2 * 1024 ** 3)\nprint(len(b))\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrMemoryLimit)
			wantStdout(t, res, "")
		},
	},
	{
		name: "fork bomb",
		code: `import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`,
		check: func(t *testing.T, res Result) {
			// Contained by RLIMIT_NPROC; ends at the time limit, not as a
			// jail failure.
			wantType(t, res, core.ErrTimeout)
		},
	},
	{
		name: "fork until refused",
		code: `import os, time
n = 0
while n < 1000:
    try:
        pid = os.fork()
    except OSError as e:
        print("refused after", n, e.errno)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			m := regexp.MustCompile(`^refused after (\d+) 11\n$`).FindStringSubmatch(res.Stdout)
			if m == nil {
				t.Fatalf("stdout = %q, want fork refused with EAGAIN", res.Stdout)
			}
			// The interpreter itself counts: at most MaxProcs-1 children.
			if n, _ := strconv.Atoi(m[1]); n < 1 || n > testLimits().MaxProcs-1 {
				t.Errorf("forked %d children, want 1..%d", n, testLimits().MaxProcs-1)
			}
		},
	},
	{
		name: "many threads",
		code: `import threading
ev = threading.Event()
n = 0
for i in range(500):
    try:
        threading.Thread(target=ev.wait, daemon=True).start()
    except RuntimeError:
        break
    n += 1
ev.set()
print(n)
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			n, err := strconv.Atoi(strings.TrimSpace(res.Stdout))
			if err != nil || n < 1 || n >= testLimits().MaxThreads {
				t.Errorf("started %q threads, want 1..%d", res.Stdout, testLimits().MaxThreads-1)
			}
		},
	},
	{
		name: "write outside scratch",
		code: `import errno, os
for p in ["/x", "/etc/passwd", "/etc/x", "/usr/x", "/usr/lib/x", "/sandbox/x", "/dev/x"]:
    try:
        with open(p, "w") as f:
            f.write("x")
        print("WROTE", p)
    except OSError as e:
        print(p, errno.errorcode[e.errno])
for d in ["/etc", "/newdir"]:
    try:
        os.mkdir(d)
        print("MKDIR", d)
    except OSError as e:
        print(d, errno.errorcode[e.errno])
with open("/tmp/ok", "w") as f:
    f.write("scratch")
print(open("/tmp/ok").read())
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			if strings.Contains(res.Stdout, "WROTE") || strings.Contains(res.Stdout, "MKDIR") {
				t.Fatalf("wrote outside /tmp:\n%s", res.Stdout)
			}
			for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
				if line == "scratch" {
					continue
				}
				f := strings.Fields(line)
				if len(f) != 2 || (f[1] != "EROFS" && f[1] != "EACCES" && f[1] != "ENOENT" && f[1] != "EPERM") {
					t.Errorf("unexpected line %q", line)
				}
			}
			wantContains(t, res.Stdout, "scratch\n")
		},
	},
	{
		name: "scratch is bounded",
		code: `import errno
try:
    with open("/tmp/big", "wb") as f:
        for i in range(64):
            f.write(b"x" * (1 << 20))
    print("WROTE 64 MiB")
except OSError as e:
    print(errno.errorcode[e.errno])
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			// RLIMIT_FSIZE (8 MiB, EFBIG) or the 16 MiB tmpfs (ENOSPC).
			if s := strings.TrimSpace(res.Stdout); s != "EFBIG" && s != "ENOSPC" {
				t.Errorf("stdout = %q, want EFBIG or ENOSPC", res.Stdout)
			}
		},
	},
	{
		name: "host secrets",
		code: `import os
for p in ["/etc/shadow", "/etc/passwd", "/proc/1/environ", "/proc/self/environ", "/root/.bash_history"]:
    try:
        data = open(p, "rb").read()
        print("READ", p, len(data), data[:200])
    except OSError as e:
        print(p, type(e).__name__)
print(dict(os.environ))
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			if strings.Contains(res.Stdout, "READ") {
				t.Errorf("read a host file:\n%s", res.Stdout)
			}
			wantContains(t, res.Stdout, "/etc/shadow FileNotFoundError")
			wantContains(t, res.Stdout, "/proc/1/environ FileNotFoundError")
			if strings.Contains(res.Stdout, hostCanary) {
				t.Errorf("the host's environment leaked into the jail:\n%s", res.Stdout)
			}
		},
	},
	{
		name: "network",
		// Only loopback and an address that is routed nowhere: in a
		// network namespace without interfaces connect fails locally.
		code: `import errno, socket
for host, port in [("127.0.0.1", 80), ("10.1.2.3", 80)]:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, port))
        print("CONNECTED", host)
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, e.errno))
    s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("10.1.2.3", 53))
    print("SENT")
except OSError as e:
    print("udp", errno.errorcode.get(e.errno, e.errno))
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "127.0.0.1 ENETUNREACH\n10.1.2.3 ENETUNREACH\nudp ENETUNREACH\n")
		},
	},
	{
		name: "dns lookup",
		code: `import socket
try:
    print(socket.getaddrinfo("example.com", 80))
except socket.gaierror as e:
    print("gaierror")
`,
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "gaierror\n")
		},
	},
	{
		name: "100 MB stdout flood",
		code: `import sys
line = "x" * 1023 + "\n"
for i in range(100 * 1024):
    sys.stdout.write(line)
sys.stderr.write("FINISHED\n")
`,
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrOutputLimit)
			if !res.StdoutTruncated {
				t.Error("StdoutTruncated = false")
			}
			if len(res.Stdout) > testLimits().KeepOutputBytes+100 {
				t.Errorf("kept %d bytes of stdout, want at most about %d", len(res.Stdout), testLimits().KeepOutputBytes)
			}
			if strings.Contains(res.Stderr, "FINISHED") {
				t.Error("the flood ran to completion: the jail was not killed early")
			}
		},
	},
	{
		name: "segfault via ctypes",
		code: "import ctypes\nctypes.string_at(0)\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrRuntime)
			wantExit(t, res, 139, "SIGSEGV")
			wantContains(t, res.ErrorMessage, "SIGSEGV")
		},
	},
	{
		name: "sleep past the limit",
		code: "import time\nprint('start')\ntime.sleep(60)\nprint('end')\n",
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrTimeout)
			// Unbuffered output survives the kill.
			wantStdout(t, res, "start\n")
		},
	},
	{
		name: "child ignores SIGTERM, parent exits",
		code: `import os, signal, time
pid = os.fork()
if pid == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    time.sleep(60)
    os._exit(0)
print("parent done")
`,
		check: func(t *testing.T, res Result) {
			// The jail ends with its program; the child dies with the pid
			// namespace (checked by the leftover scan).
			wantOK(t, res)
			wantStdout(t, res, "parent done\n")
		},
	},
	{
		name: "SIGTERM ignored everywhere, past the limit",
		code: `import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(1)
`,
		check: func(t *testing.T, res Result) {
			wantType(t, res, core.ErrTimeout)
		},
	},
	{
		name: "unicode output",
		code: "print('héllo wörld ✓ 日本語 🐍')\nimport sys\nprint('ß→∞', file=sys.stderr)\n",
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "héllo wörld ✓ 日本語 🐍\n")
			if res.Stderr != "ß→∞\n" {
				t.Errorf("stderr = %q", res.Stderr)
			}
		},
	},
	{
		name: "empty program",
		code: "",
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "")
		},
	},
	{
		// Near the largest task (core.MaxTaskBytes), with every byte that
		// needs escaping on its way into nsjail's configuration.
		name: "large program",
		code: strings.Repeat("# padding \"quoted\" \\ back ü ✓\t\n", 24000) + "print(len(open(__file__, 'rb').read()))\n",
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			want := len(strings.Repeat("# padding \"quoted\" \\ back ü ✓\t\n", 24000) + "print(len(open(__file__, 'rb').read()))\n")
			wantStdout(t, res, fmt.Sprintf("%d\n", want))
		},
	},
	{
		name:  "stdin passed through",
		code:  "import sys\ndata = sys.stdin.read()\nprint(data.upper(), end='')\nprint(len(data))\n",
		stdin: "abc\nDéf\n",
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "ABC\nDÉF\n8\n")
		},
	},
	{
		name: "program ignores its stdin",
		code: "print('ignored')\n",
		// More than a pipe buffer: the writer must not hang when the jail
		// exits without reading.
		stdin: strings.Repeat("y", 1<<20),
		check: func(t *testing.T, res Result) {
			wantOK(t, res)
			wantStdout(t, res, "ignored\n")
		},
	},
}

// checkIdentity checks the identity case's output: ids and sys.flags as
// given, the rest as on every root.
func checkIdentity(t *testing.T, res Result, ids, flags string) {
	wantOK(t, res)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	want := []string{
		ids,
		"sandbox",
		"['HOME', 'LANG', 'MALLOC_ARENA_MAX', 'PATH', 'TMPDIR']", // bwrap adds PWD (filtered)
		flags,
	}
	if len(lines) != 7 {
		t.Fatalf("stdout = %q", res.Stdout)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i+1, lines[i], w)
		}
	}
	for _, banned := range []string{"'etc'", "'proc'", "'root'", "'home'", "'var'", "'sys'"} {
		if strings.Contains(lines[4], banned) {
			t.Errorf("root of the jail contains %s: %s", banned, lines[4])
		}
	}
	if lines[5] != "['null', 'urandom', 'zero']" {
		t.Errorf("/dev = %s, want only null, urandom, zero", lines[5])
	}
	if lines[6] != "[]" {
		t.Errorf("file descriptors %s leaked into the jail", lines[6])
	}
}

// hostCanary is set in the test process's environment; it must never be
// visible inside the jail.
const hostCanary = "ADP_HOST_CANARY_d1f0a3"

func TestConformance(t *testing.T) {
	t.Setenv(hostCanary, hostCanary)
	forEachRoot(t, func(t *testing.T, img *Image) {
		testConformance(t, img)
	})
}

// forEachRoot runs fn with the host's /usr as the jail's root (img nil)
// and with a test image's root: the image's user is root inside (still
// 65534 outside), the most a program can be given.
func forEachRoot(t *testing.T, fn func(t *testing.T, img *Image)) {
	t.Run("host-root", func(t *testing.T) { fn(t, nil) })
	t.Run("image-root", func(t *testing.T) {
		fn(t, testImage(t, v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}}))
	})
}

func testConformance(t *testing.T, img *Image) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		for _, tc := range conformanceCases {
			t.Run(tc.name, func(t *testing.T) {
				if tc.skip != nil {
					if why := tc.skip(s.jail); why != "" {
						t.Skip(why)
					}
				}
				lim := testLimits()
				if tc.limits != nil {
					tc.limits(&lim)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				res, err := s.jail.Run(ctx, Request{Code: tc.code, Stdin: []byte(tc.stdin), Limits: lim, Image: img})
				if err != nil {
					t.Fatalf("Run: %v (result %+v)", err, res)
				}
				if res.ErrorType == core.ErrSystem {
					t.Fatalf("system error: %s", res.ErrorMessage)
				}
				if tc.skipAfter != nil {
					if why := tc.skipAfter(s.jail); why != "" {
						t.Skip(why)
					}
				}
				if img != nil && tc.checkImage != nil {
					tc.checkImage(t, res)
				} else {
					tc.check(t, res)
				}
				t.Logf("%s: type=%q exit=%d signal=%q wall=%s msg=%q stdout=%q", s.jail.Name(), res.ErrorType, res.ExitCode, res.Signal, res.Wall.Round(time.Millisecond), res.ErrorMessage, clipShort(res.Stdout))
				if t.Failed() {
					t.Logf("result: type=%s msg=%q exit=%d signal=%s wall=%s\nstdout=%q\nstderr=%q",
						res.ErrorType, res.ErrorMessage, res.ExitCode, res.Signal, res.Wall, clip(res.Stdout), clip(res.Stderr))
				}
				assertNoLeftovers(t, s, res.RunID)
				assertQuiet(t, s)
				assertServes(t, s)
			})
		}
	})
}

// TestConformanceConcurrent runs several jails at once: each must see only
// its own input, and none may disturb another.
func TestConformanceConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		const n = 6
		type out struct {
			res Result
			err error
		}
		results := make(chan out, n)
		for i := range n {
			go func() {
				res, err := s.jail.Run(context.Background(), Request{
					Code:   "import sys\nprint(int(sys.stdin.read()) * 2)\n",
					Stdin:  []byte(strconv.Itoa(i)),
					Limits: testLimits(),
				})
				results <- out{res, err}
			}()
		}
		seen := map[string]bool{}
		for range n {
			o := <-results
			if o.err != nil {
				t.Fatalf("Run: %v", o.err)
			}
			wantOK(t, o.res)
			seen[o.res.Stdout] = true
			assertNoLeftovers(t, s, o.res.RunID)
		}
		assertQuiet(t, s)
		for i := range n {
			if !seen[fmt.Sprintf("%d\n", 2*i)] {
				t.Errorf("no run printed %d; got %v", 2*i, seen)
			}
		}
	})
}

// TestProcessLimitPerJail: RLIMIT_NPROC counts each jail's processes
// apart. A jail holding all the processes it may have must not keep
// another jail, of the same uid, from forking. The second jail starts once
// the first holds its processes (seen in /proc), whatever the time that
// takes on a busy machine; the first holds them until it is cancelled.
func TestProcessLimitPerJail(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		lim := testLimits()
		lim.Wall = time.Minute
		lim.CPU = time.Minute
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type out struct {
			res Result
			err error
		}
		full := make(chan out, 1)
		go func() {
			res, err := s.jail.Run(ctx, Request{Limits: lim, Code: `import os, time
n = 0
while n < 1000:
    try:
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
    except OSError:
        break
    n += 1
print("holding", n, flush=True)
time.sleep(120)
`})
			full <- out{res, err}
		}()
		// The interpreter and its children: MaxProcs when every fork
		// that could succeed did.
		for n := 0; n < lim.MaxProcs; n = len(jailProcessesOfTest()) {
			select {
			case o := <-full:
				t.Fatalf("the first jail ended before holding its processes: %v, %s %q stdout %q", o.err, o.res.ErrorType, o.res.ErrorMessage, o.res.Stdout)
			case <-time.After(20 * time.Millisecond):
			}
		}
		res, err := s.jail.Run(context.Background(), Request{Limits: testLimits(), Code: `import os
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("forked 4")
`})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		wantStdout(t, res, "forked 4\n")
		assertNoLeftovers(t, s, res.RunID)
		cancel()
		first := <-full
		if !errors.Is(first.err, context.Canceled) {
			t.Errorf("first jail: err = %v, want it cancelled", first.err)
		}
		// At its limit: with one count for both jails, the second could
		// not have had its interpreter and a child.
		if want := fmt.Sprintf("holding %d\n", lim.MaxProcs-1); first.res.Stdout != want {
			t.Errorf("first jail: stdout %q, want %q", first.res.Stdout, want)
		}
		assertNoLeftovers(t, s, first.res.RunID)
		assertQuiet(t, s)
	})
}

// jailProcessesOfTest lists the jailed processes (SANDBOX_RUN_ID in their
// environment) that descend from the test process: the jails of this test
// only, not those of anything else on the host.
func jailProcessesOfTest() []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		env, _ := os.ReadFile(p + "/environ")
		if !bytes.Contains(env, []byte("\x00"+runIDEnv+"=")) && !bytes.HasPrefix(env, []byte(runIDEnv+"=")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(p))
		for a := parentPid(pid); a > 1; a = parentPid(a) {
			if a == os.Getpid() {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// TestContextCancel: cancelling the caller's context kills the jail and is
// reported as an error (the program did not fail); a context deadline
// shorter than the wall limit is a timeout.
func TestContextCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel)
		res, err := s.jail.Run(ctx, Request{Code: "import time\ntime.sleep(60)\n", Limits: testLimits()})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled run: err = %v, want context.Canceled", err)
		}
		if res.ErrorType != core.ErrSystem {
			t.Errorf("cancelled run: ErrorType = %q, want system_error", res.ErrorType)
		}
		assertNoLeftovers(t, s, res.RunID)

		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err = s.jail.Run(ctx, Request{Code: "import time\ntime.sleep(60)\n", Limits: testLimits()})
		if err != nil {
			t.Fatalf("deadline run: %v", err)
		}
		wantType(t, res, core.ErrTimeout)
		assertNoLeftovers(t, s, res.RunID)
	})
}

func TestCheck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		if err := s.jail.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// assertServes runs hello world: the jail keeps working after every case.
func assertServes(t *testing.T, s jailSetup) {
	t.Helper()
	res, err := s.jail.Run(context.Background(), Request{Code: `print("still here")`, Limits: testLimits()})
	if err != nil || !res.OK() || res.Stdout != "still here\n" {
		t.Fatalf("hello world after the case: err=%v type=%s msg=%q stdout=%q stderr=%q", err, res.ErrorType, res.ErrorMessage, res.Stdout, res.Stderr)
	}
	assertNoLeftovers(t, s, res.RunID)
	assertQuiet(t, s)
}

// assertNoLeftovers scans /proc for any process of the run: its id is in
// the jail's environment (SANDBOX_RUN_ID) and in the supervisor's command
// line. It runs right after Run returned: nothing of the run may be alive
// at that point. Only the run's own processes count: the host (other tests,
// other jails, anything else running there) may have uid-65534 processes
// and zombies of its own at any time.
func assertNoLeftovers(t *testing.T, s jailSetup, runID string) {
	t.Helper()
	if runID == "" {
		t.Fatal("Result.RunID is empty")
	}
	for _, p := range runProcesses(runID) {
		status, _ := os.ReadFile(p + "/status")
		cmdline, _ := os.ReadFile(p + "/cmdline")
		t.Errorf("leftover process of run %s: %s %q\n%s", runID, p, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), firstLines(status, 9))
	}
}

// runProcesses lists the /proc entries of the processes of run runID.
func runProcesses(runID string) []string {
	marker := []byte(runIDEnv + "=" + runID)
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		env, _ := os.ReadFile(p + "/environ")
		cmdline, _ := os.ReadFile(p + "/cmdline")
		if bytes.Contains(env, marker) || bytes.Contains(cmdline, []byte(runID)) {
			out = append(out, p)
		}
	}
	return out
}

// assertQuiet checks, when no run of s is in progress, that no process of
// a jail (uid 65534) is still a child of the test process, not even a
// zombie (a supervisor the run loop failed to reap), and that no
// descriptor of a run is left open. Children of this process are ours
// alone, whatever else runs on the host.
func assertQuiet(t *testing.T, s jailSetup) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		status, _ := os.ReadFile(p + "/status")
		pid, _ := strconv.Atoi(filepath.Base(p))
		if statusUID(status) == jailUID && parentPid(pid) == os.Getpid() {
			t.Errorf("jail process %s still a child of the test:\n%s", p, firstLines(status, 9))
		}
	}
	// Nor a descriptor of a run: the program's memfd, pipes to a jail.
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.Contains(target, "adp-program") {
			t.Errorf("leftover descriptor %s -> %s", fd, target)
		}
	}
}

// statusUID returns the real uid from /proc/<pid>/status, -1 if unknown.
func statusUID(status []byte) int {
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			if err == nil {
				return uid
			}
		}
	}
	return -1
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func clipShort(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + " ... " + s[len(s)-1000:]
	}
	return s
}

func wantOK(t *testing.T, res Result) {
	t.Helper()
	if !res.OK() {
		t.Errorf("ErrorType = %q (%s), want success; exit %d, stderr %q", res.ErrorType, res.ErrorMessage, res.ExitCode, clip(res.Stderr))
	}
	if res.ExitCode != 0 || res.Signal != "" {
		t.Errorf("exit = %d signal = %q, want 0", res.ExitCode, res.Signal)
	}
}

func wantType(t *testing.T, res Result, want core.ErrorType) {
	t.Helper()
	if res.ErrorType != want {
		t.Errorf("ErrorType = %q (%s), want %q", res.ErrorType, res.ErrorMessage, want)
	}
	if want != core.ErrNone && res.ErrorMessage == "" {
		t.Error("ErrorMessage is empty")
	}
}

func wantExit(t *testing.T, res Result, code int, signal string) {
	t.Helper()
	if res.ExitCode != code || res.Signal != signal {
		t.Errorf("exit = %d signal = %q, want %d %q", res.ExitCode, res.Signal, code, signal)
	}
}

func wantStdout(t *testing.T, res Result, want string) {
	t.Helper()
	if res.Stdout != want {
		t.Errorf("stdout = %q, want %q", clip(res.Stdout), want)
	}
}

func wantContains(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("%q does not contain %q", clip(s), sub)
	}
}
