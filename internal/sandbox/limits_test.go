package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// The limits a real test suite meets: threads are not processes, memory
// is bounded in a way threaded runtimes tolerate. Each case runs under
// every backend present, with the cgroups this host lets the runtime use
// and with rlimits alone (Config.Cgroups "off"), since hosts differ.

// forEachBound runs fn against every backend present, with cgroups (when
// the host has any) and without.
func forEachBound(t *testing.T, fn func(t *testing.T, s jailSetup)) {
	t.Helper()
	for _, backend := range []string{BackendNsjail, BackendBwrap} {
		for _, cg := range []string{CgroupsAuto, CgroupsV1, CgroupsOff} {
			t.Run(backend+"/cgroups-"+cg, func(t *testing.T) {
				j, err := New(backend, Config{Cgroups: cg})
				if errors.Is(err, ErrNoJail) {
					t.Skipf("%s skipped: %v", backend, err)
				}
				if err != nil {
					t.Fatalf("New(%q): %v", backend, err)
				}
				if cg != CgroupsOff && !cgroupsOf(j).any() {
					t.Skip("no cgroup controllers the runtime may use on this host")
				}
				t.Logf("%s: %s", backend, Bounds(j))
				fn(t, jailSetup{jail: j})
			})
		}
	}
}

// suiteLimits are the production defaults with a shorter time limit.
func suiteLimits() Limits {
	l := DefaultLimits()
	l.Wall, l.CPU = 20*time.Second, 20*time.Second
	return l
}

// threaded starts 64 threads that each allocate and compute, as a
// threaded test suite's workers do.
const threaded = `import threading
ev = threading.Event()
out = []
def work(i):
    ev.wait()
    out.append(sum(bytearray(1 << 16)) + i)
ts = [threading.Thread(target=work, args=(i,)) for i in range(64)]
for t in ts:
    t.start()
ev.set()
for t in ts:
    t.join()
print(len(out), "threads")
`

// realSuite is a repository-like unittest suite: tests that use a
// ThreadPoolExecutor, threads with locks, a subprocess, and files.
const realSuite = `import concurrent.futures, os, subprocess, sys, tempfile, threading, unittest

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

class Pool(unittest.TestCase):
    def test_map(self):
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
            self.assertEqual(list(ex.map(fib, range(18))), [fib(i) for i in range(18)])
    def test_many_pools(self):
        for _ in range(4):
            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
                futs = [ex.submit(sorted, list(range(5000, 0, -1))) for _ in range(64)]
                self.assertTrue(all(f.result()[0] == 1 for f in futs))

class Locks(unittest.TestCase):
    def test_counter(self):
        n, lock = [0], threading.Lock()
        def inc():
            for _ in range(2000):
                with lock:
                    n[0] += 1
        ts = [threading.Thread(target=inc) for _ in range(48)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        self.assertEqual(n[0], 96000)

class Processes(unittest.TestCase):
    def test_subprocess(self):
        out = subprocess.run([sys.executable, "-I", "-S", "-c", "print(6*7)"], capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout, "42\n")

class Files(unittest.TestCase):
    def test_tempdir(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x")
            with open(p, "w") as f:
                f.write("y" * 100000)
            self.assertEqual(os.path.getsize(p), 100000)

r = unittest.TextTestRunner(stream=sys.stdout, verbosity=0).run(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
print("ran", r.testsRun, "ok" if r.wasSuccessful() else "FAILED")
sys.exit(0 if r.wasSuccessful() else 1)
`

func TestLimitsRealPrograms(t *testing.T) {
	forEachBound(t, func(t *testing.T, s jailSetup) {
		run := func(t *testing.T, lim Limits, code string) Result {
			t.Helper()
			res, err := s.jail.Run(context.Background(), Request{Code: code, Limits: lim})
			if err != nil {
				t.Fatal(err)
			}
			assertNoLeftovers(t, s, res.RunID)
			return res
		}
		t.Run("64 threads under the defaults", func(t *testing.T) {
			res := run(t, suiteLimits(), threaded)
			wantOK(t, res)
			wantStdout(t, res, "64 threads\n")
		})
		t.Run("a threaded unittest suite under the defaults", func(t *testing.T) {
			res := run(t, suiteLimits(), realSuite)
			wantOK(t, res)
			if !strings.HasSuffix(res.Stdout, "ran 5 ok\n") {
				t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
			}
		})
		t.Run("threads are not processes", func(t *testing.T) {
			// 4 processes at most, 64 threads in all: 40 threads pass.
			lim := suiteLimits()
			lim.MaxProcs, lim.MaxThreads = 4, 64
			res := run(t, lim, strings.Replace(threaded, "range(64)", "range(40)", 1))
			wantOK(t, res)
			wantStdout(t, res, "40 threads\n")
		})
		t.Run("more processes than MaxProcs", func(t *testing.T) {
			// Forks that the kernel allows (64 threads in all) past the
			// 4 processes: the jail is killed.
			lim := suiteLimits()
			lim.MaxProcs, lim.MaxThreads = 4, 64
			res := run(t, lim, `import os, time
for i in range(20):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
print("forked 20")
time.sleep(30)
`)
			wantType(t, res, core.ErrRuntime)
			wantContains(t, res.ErrorMessage, "process limit exceeded: the program had more than 4 processes")
			if !res.ProcessLimit {
				t.Error("ProcessLimit not set")
			}
		})
		t.Run("fork bomb", func(t *testing.T) {
			lim := suiteLimits()
			lim.Wall, lim.CPU = 4*time.Second, 2*time.Second
			res := run(t, lim, `import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`)
			// Counted past MaxProcs (or, between two counts, refused at
			// MaxThreads): killed either way, before its time is up.
			wantType(t, res, core.ErrRuntime)
			wantContains(t, res.ErrorMessage, "process limit exceeded")
		})
		t.Run("allocating past the memory limit", func(t *testing.T) {
			lim := suiteLimits()
			lim.MemoryBytes = 256 << 20
			res := run(t, lim, "a = []\nwhile True:\n    a.append(b'x' * (10 << 20))\n")
			wantType(t, res, core.ErrMemoryLimit)
			wantContains(t, res.ErrorMessage, "memory limit exceeded")
			wantContains(t, res.ErrorMessage, "256 MiB")
		})
		t.Run("threads allocating past the memory limit", func(t *testing.T) {
			lim := suiteLimits()
			lim.MemoryBytes = 256 << 20
			res := run(t, lim, `import threading
held = []
def grab():
    for _ in range(10):
        held.append(b'x' * (8 << 20))
ts = [threading.Thread(target=grab) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print(len(held))
`)
			if res.ErrorType != core.ErrMemoryLimit {
				// Under RLIMIT_AS a thread's MemoryError ends that thread
				// only (its traceback on stderr); the program goes on.
				if cgroupsOf(s.jail).memory || !strings.Contains(res.Stderr, "MemoryError") {
					t.Errorf("got %s %q, stderr %q: want memory_limit (or a thread's MemoryError under RLIMIT_AS)", res.ErrorType, res.ErrorMessage, res.Stderr)
				}
			}
		})
	})
}

// TestLimitsProcessesHoldingMemory: 12 processes that each try to hold
// 200 MiB, then 300 MiB (the hardening case "12 processes x 200 MiB"),
// both ways. Under rlimits each process gets its own address space, and
// the process count bounds them: at most 5 children hold 200 MiB, none
// 300. Under a memory cgroup the jail as a whole holds at most its limit.
func TestLimitsProcessesHoldingMemory(t *testing.T) {
	var tc conformanceCase
	for _, c := range hardeningCases {
		if c.name == "12 processes x 200 MiB" {
			tc = c
		}
	}
	forEachBound(t, func(t *testing.T, s jailSetup) {
		lim := testLimits()
		tc.limits(&lim)
		res, err := s.jail.Run(context.Background(), Request{Code: tc.code, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		assertNoLeftovers(t, s, res.RunID)
		if !cgroupsOf(s.jail).memory {
			tc.check(t, res)
			return
		}
		if res.ErrorType == core.ErrMemoryLimit {
			return // the interpreter itself was the one killed
		}
		wantOK(t, res)
		var forked, refused, held, over int
		if _, err := fmt.Sscanf(res.Stdout, "forked %d refused %d held200 %d held300 %d", &forked, &refused, &held, &over); err != nil {
			t.Fatalf("stdout = %q", res.Stdout)
		}
		// 256 MiB + 16 MiB of /tmp for the jail: one 200 MiB at most.
		if forked > 5 || forked+refused != 12 || held > 1 || over != 0 {
			t.Errorf("forked %d, refused %d, %d held 200 MiB, %d held 300 MiB: want at most 5 children, at most one holding 200 MiB", forked, refused, held, over)
		}
	})
}

// TestLimitsRepositorySuite: a repository-like project (a package and a
// tests/ directory, as a workspace task's test_command finds it) whose
// unittest suite uses thread pools, threads with locks, subprocesses and
// files, run by bash as `python3 -m unittest discover` under the default
// limits, every way this host allows. (Under the former defaults, 16
// processes-plus-threads and 256 MiB of address space, it fails.)
func TestLimitsRepositorySuite(t *testing.T) {
	files := map[string]string{
		"mylib/__init__.py": `import concurrent.futures

def pmap(f, xs, workers=32):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(f, xs))
`,
		"tests/__init__.py": "",
		"tests/test_pool.py": `import concurrent.futures, threading, unittest
from mylib import pmap

class TestPool(unittest.TestCase):
    def test_pmap(self):
        self.assertEqual(pmap(lambda x: x * x, range(200)), [x * x for x in range(200)])
    def test_nested_pools(self):
        self.assertEqual(sum(pmap(lambda n: sum(pmap(abs, range(-n, n), workers=4)), range(16), workers=8)), sum(n * n for n in range(16)))
    def test_threads_and_locks(self):
        n, lock, ts = [0], threading.Lock(), []
        def inc():
            for _ in range(1000):
                with lock:
                    n[0] += 1
        for _ in range(64):
            ts.append(threading.Thread(target=inc))
            ts[-1].start()
        for t in ts:
            t.join()
        self.assertEqual(n[0], 64000)
`,
		"tests/test_proc.py": `import os, subprocess, sys, tempfile, unittest

class TestProc(unittest.TestCase):
    def test_subprocesses(self):
        for i in range(4):
            out = subprocess.run([sys.executable, "-c", "import sys; print(sys.argv[1])", str(i)], capture_output=True, text=True, check=True)
            self.assertEqual(out.stdout, f"{i}\n")
    def test_files(self):
        with tempfile.TemporaryDirectory() as d:
            for i in range(50):
                with open(os.path.join(d, str(i)), "w") as f:
                    f.write("x" * 10000)
            self.assertEqual(len(os.listdir(d)), 50)
`,
	}
	forEachBound(t, func(t *testing.T, s jailSetup) {
		uid, gid := s.jail.Owner()
		dir := t.TempDir()
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		}); err != nil {
			t.Fatal(err)
		}
		res, err := s.jail.Run(context.Background(), Request{
			Code:   "python3 -m unittest discover -s tests -t . 2>&1 | tail -n 3\nexit ${PIPESTATUS[0]}\n",
			Argv:   []string{"/bin/bash", "--norc", "--noprofile", jailCodeDir + "/" + scriptName},
			Binds:  []Bind{{Host: dir, Jail: "/workspace", Writable: true}},
			Dir:    "/workspace",
			Limits: suiteLimits(),
		})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		if !strings.Contains(res.Stdout, "Ran 5 tests") || !strings.HasSuffix(res.Stdout, "OK\n") {
			t.Errorf("stdout %q", res.Stdout)
		}
		assertNoLeftovers(t, s, res.RunID)
	})
}
