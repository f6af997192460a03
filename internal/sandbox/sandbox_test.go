package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewBackendSelection(t *testing.T) {
	if _, err := New("docker", Config{}); err == nil || !strings.Contains(err.Error(), "unknown backend") {
		t.Errorf("New(docker): %v", err)
	}
	if _, err := New("none", Config{}); err == nil {
		t.Error("New(none) succeeded: there is no unsandboxed mode")
	}
	_, err := New(BackendAuto, Config{NsjailPath: "/nonexistent/nsjail", BwrapPath: "/nonexistent/bwrap"})
	if !errors.Is(err, ErrNoJail) {
		t.Fatalf("New(auto) with nothing installed: %v", err)
	}
	for _, want := range []string{"install nsjail", "apt-get install bubblewrap"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	_, err = New(BackendBwrap, Config{BwrapPath: "/nonexistent/bwrap"})
	if !errors.Is(err, ErrNoJail) || !strings.Contains(err.Error(), "apt-get install bubblewrap") {
		t.Errorf("New(bwrap) without bwrap: %v", err)
	}
	if _, err := New(BackendBwrap, Config{PythonPath: "python3"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative python path: %v", err)
	}

	if _, err := os.Stat("/usr/bin/bwrap"); err == nil {
		j, err := New(BackendAuto, Config{NsjailPath: "/nonexistent/nsjail"})
		if err != nil || j.Name() != BackendBwrap {
			t.Errorf("New(auto) without nsjail = %v, %v; want bwrap", j, err)
		}
	}
	if os.Geteuid() == 0 {
		bin, _ := fakeNsjail(t, "exit 0")
		j, err := New(BackendAuto, Config{NsjailPath: bin})
		if err != nil || j.Name() != BackendNsjail {
			t.Errorf("New(auto) with nsjail = %v, %v; want nsjail", j, err)
		}
	}
}

func TestFindNsjailConfig(t *testing.T) {
	// From the package directory, the repository's file is two levels up.
	p, err := FindNsjailConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, filepath.FromSlash(DefaultNsjailConfig)) {
		t.Errorf("FindNsjailConfig = %q", p)
	}
	abs := filepath.Join(t.TempDir(), "x.cfg")
	os.WriteFile(abs, []byte("mode: ONCE\n"), 0o644)
	if got, err := FindNsjailConfig(abs); err != nil || got != abs {
		t.Errorf("FindNsjailConfig(abs) = %q, %v", got, err)
	}
	if _, err := FindNsjailConfig("/nonexistent/x.cfg"); err == nil {
		t.Error("missing absolute path accepted")
	}
	if _, err := FindNsjailConfig("configs/nsjail/nonexistent.cfg"); err == nil || !strings.Contains(err.Error(), "NSJAIL_CONFIG") {
		t.Errorf("missing relative path: %v", err)
	}
}

func TestResolveInterpreter(t *testing.T) {
	py, err := resolveInterpreter("/usr/bin/python3")
	if err != nil {
		t.Fatal(err)
	}
	if py.path != "/usr/bin/python3" || py.prefix != "" {
		t.Errorf("resolveInterpreter(/usr/bin/python3) = %+v", py)
	}
	script := filepath.Join(t.TempDir(), "python3")
	os.WriteFile(script, []byte("#!/bin/sh\nexec pyenv exec python3 \"$@\"\n"), 0o755)
	if _, err := resolveInterpreter(script); err == nil || !strings.Contains(err.Error(), "shim") {
		t.Errorf("a shell script accepted as the interpreter: %v", err)
	}
	if _, err := resolveInterpreter("/nonexistent/python3"); err == nil {
		t.Error("missing interpreter accepted")
	}
	// An interpreter outside /usr brings its prefix.
	bin := filepath.Join(t.TempDir(), "opt", "py", "bin")
	os.MkdirAll(bin, 0o755)
	real, _ := os.ReadFile("/usr/bin/python3")
	os.WriteFile(filepath.Join(bin, "python3.99"), real, 0o755)
	os.Symlink("python3.99", filepath.Join(bin, "python3"))
	py, err = resolveInterpreter(filepath.Join(bin, "python3"))
	if err != nil {
		t.Fatal(err)
	}
	if py.path != filepath.Join(bin, "python3.99") || py.prefix != filepath.Dir(bin) {
		t.Errorf("resolveInterpreter(outside /usr) = %+v", py)
	}
}

func TestBwrapArgs(t *testing.T) {
	b := &bwrapJail{
		bwrap:  "/usr/bin/bwrap",
		interp: interpreter{path: "/usr/bin/python3"},
		root:   []rootEntry{{path: "/lib", target: "usr/lib"}, {path: "/lib64"}},
	}
	lim := Limits{
		Wall: time.Second, CPU: 1500 * time.Millisecond, MemoryBytes: 100 << 20, MaxProcs: 3, MaxThreads: 7,
		MaxFileBytes: 3 << 20, MaxOpenFiles: 20, TmpfsBytes: 8 << 20,
	}
	gotRL := map[string][2]uint64{}
	for _, l := range rlimits(lim, cgroupSupport{}) {
		gotRL[l.name] = [2]uint64{l.soft, l.hard}
	}
	wantRL := map[string][2]uint64{
		"RLIMIT_AS":     {100 << 20, 100 << 20},
		"RLIMIT_CPU":    {2, 3}, // SIGXCPU at 2 s, SIGKILL at 3 s
		"RLIMIT_NPROC":  {7, 7}, // the program is the namespace's init: no overhead
		"RLIMIT_FSIZE":  {3 << 20, 3 << 20},
		"RLIMIT_NOFILE": {20, 20},
		"RLIMIT_CORE":   {0, 0},
	}
	if !maps.Equal(gotRL, wantRL) {
		t.Errorf("rlimits = %v, want %v", gotRL, wantRL)
	}
	// With a memory cgroup the cgroup bounds memory: no RLIMIT_AS (the
	// runtime's own, normally unlimited), the rest unchanged.
	delete(wantRL, "RLIMIT_AS")
	clear(gotRL)
	for _, l := range rlimits(lim, cgroupSupport{memory: true, pids: true}) {
		gotRL[l.name] = [2]uint64{l.soft, l.hard}
	}
	if !maps.Equal(gotRL, wantRL) {
		t.Errorf("rlimits with a memory cgroup = %v, want %v", gotRL, wantRL)
	}
	a := b.bwrapArgs(lim, mustSpec(t, Request{}, b.interp), "id")
	s := strings.Join(a, " ")
	for _, want := range []string{
		"--unshare-user --uid 65534 --gid 65534 --disable-userns",
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname sandbox",
		"--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop ALL", "--clearenv",
		"--setenv SANDBOX_RUN_ID id", "--setenv MALLOC_ARENA_MAX 2",
		"--ro-bind /usr /usr", "--symlink usr/lib /lib", "--ro-bind /lib64 /lib64",
		"--dev-bind /dev/null /dev/null", "--dev-bind /dev/zero /dev/zero", "--dev-bind /dev/urandom /dev/urandom",
		"--perms 1777 --size 8388608 --tmpfs /tmp",
		"--perms 0444 --ro-bind-data 5 /sandbox/main.py", "--remount-ro /", "--json-status-fd 3", "--block-fd 4",
		"-- /usr/bin/python3 -I -S -u /sandbox/main.py",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("bwrap args lack %q:\n%s", want, s)
		}
	}
	// The parent's network namespace is used: bwrap's own would bring
	// loopback up. No /proc, no host /etc.
	for _, banned := range []string{"--unshare-net", "--share-net", "--proc", "--dev /dev", "/etc"} {
		if strings.Contains(s, banned) {
			t.Errorf("bwrap args contain %q:\n%s", banned, s)
		}
	}
	const newNet, newUser = 1 << 30, 1 << 28 // CLONE_NEWNET, CLONE_NEWUSER
	attr := b.sysProcAttr(nil)
	if attr.Cloneflags&newNet == 0 || attr.Cloneflags&newUser == 0 || len(attr.UidMappings) != 1 || !attr.Setpgid {
		t.Errorf("SysProcAttr = %+v", attr)
	}
	// From a thread in a reused network namespace the jail takes the
	// thread's; from one running as the jail's uid, its uid too, and bwrap
	// creates the user namespace (no namespace flags, so a vfork).
	if attr := b.sysProcAttr(&netnsThread{}); attr.Cloneflags&newNet != 0 || attr.Cloneflags&newUser == 0 {
		t.Errorf("from a root thread: SysProcAttr = %+v", attr)
	}
	if attr := b.sysProcAttr(&netnsThread{asJailUser: true}); attr.Cloneflags != 0 || attr.UidMappings != nil || attr.Credential != nil || !attr.Setpgid || attr.Pdeathsig == 0 {
		t.Errorf("from a thread running as the jail's uid: SysProcAttr = %+v", attr)
	}
}

func TestBwrapLaunchFailure(t *testing.T) {
	b := &bwrapJail{}
	if msg, failed := b.launchFailure(outcome{exitCode: 1, stderr: "bwrap: Can't find source path /x: No such file or directory\n"}, "", nil); !failed || !strings.HasPrefix(msg, "bwrap: Can't find") {
		t.Errorf("bwrap setup error: %q, %v", msg, failed)
	}
	if _, failed := b.launchFailure(outcome{exitCode: 1, stderr: "Traceback ...\nValueError\n"}, "", nil); failed {
		t.Error("a program failure taken for a launch failure")
	}
	if _, failed := b.launchFailure(outcome{exitCode: 1, stderr: "bwrap: fake\n"}, "printed before\n", nil); failed {
		t.Error("a program that printed is taken for a launch failure")
	}
}

// TestBwrapLaunchFailureEndToEnd makes bwrap itself fail (the interpreter
// is missing inside the jail): an error and system_error, not a program
// failure.
func TestBwrapLaunchFailureEndToEnd(t *testing.T) {
	s := setupJail(t, BackendBwrap)
	b := s.jail.(*jail).l.(*bwrapJail)
	broken := *b
	broken.interp.path = "/usr/bin/no-such-python"
	j := &jail{name: BackendBwrap, l: &broken}
	res, err := j.Run(context.Background(), Request{Code: "print(1)", Limits: testLimits()})
	if err == nil || res.ErrorType != "system_error" || !strings.Contains(err.Error(), "bwrap: ") {
		t.Fatalf("err = %v, result %s %q", err, res.ErrorType, res.ErrorMessage)
	}
	assertNoLeftovers(t, s, res.RunID)
	assertQuiet(t, s)
}

// TestBwrapOtherInterpreter runs an interpreter installed outside /usr
// (pyenv here), whose prefix is bound into the jail.
func TestBwrapOtherInterpreter(t *testing.T) {
	matches, _ := filepath.Glob("/root/.pyenv/versions/*/bin/python3")
	if len(matches) == 0 {
		t.Skip("no pyenv interpreter on this machine")
	}
	j, err := New(BackendBwrap, Config{PythonPath: matches[0]})
	if errors.Is(err, ErrNoJail) {
		t.Skip(err)
	}
	if os.Geteuid() == 0 && traversableByOthers(filepath.Dir(filepath.Dir(matches[0]))) != nil {
		// /root is 0700: the jail's uid could not reach the interpreter,
		// and New must say so instead of failing every run.
		if err == nil || !strings.Contains(err.Error(), "not traversable") {
			t.Fatalf("New with an unreachable interpreter: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Run(context.Background(), Request{Code: "import json, sys\nprint(json.dumps(sys.prefix.startswith('/root')))\n", Limits: testLimits()})
	if err != nil || !res.OK() || res.Stdout != "true\n" {
		t.Fatalf("err = %v, result %s %q stdout %q stderr %q", err, res.ErrorType, res.ErrorMessage, res.Stdout, res.Stderr)
	}
}

func TestTraversableByOthers(t *testing.T) {
	dir := t.TempDir() // 0700 parent
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	if err := traversableByOthers(filepath.Join(private)); err == nil || !strings.Contains(err.Error(), "not traversable") {
		t.Errorf("0700 directory accepted: %v", err)
	}
	if err := traversableByOthers(os.TempDir()); err != nil {
		t.Errorf("%s rejected: %v", os.TempDir(), err)
	}
}

// TestKillOrphanedJails: a process that looks like a jail left by a killed
// runtime (uid 65534, parent init, bwrap's command line with the run id
// variable) is killed; the same command line under a live parent is not.
func TestKillOrphanedJails(t *testing.T) {
	bw, err := exec.LookPath("bwrap")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and bwrap")
	}
	// argv[0] is bwrap's path; the process sleeps.
	jailLike := fmt.Sprintf(`import os; os.execv(%q, [%q, "-c", "import time; time.sleep(60)", "--setenv", "SANDBOX_RUN_ID", "x"])`, DefaultPythonPath, bw)
	orphanCode := `import os, sys
pid = os.fork()
if pid:
    print(pid, flush=True)
    os._exit(0)
os.setsid()
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
` + jailLike
	out, err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", DefaultPythonPath, "-c", orphanCode).Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	t.Cleanup(func() { _ = syscall.Kill(orphan, syscall.SIGKILL) })
	live := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", DefaultPythonPath, "-c", jailLike)
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	for parentPid(orphan) != 1 { // re-parented once its parent exited
		time.Sleep(10 * time.Millisecond)
	}
	// Looks like a jail only once it has executed "bwrap": before that,
	// under load, it is still python and rightly left alone.
	for i := 0; i < 1000; i++ {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", orphan))
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); argv0 == bw {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	killOrphanedJails(bw, jailUID)
	for i := 0; i < 500 && parentPid(orphan) != 0; i++ { // gone once init reaps it
		time.Sleep(10 * time.Millisecond)
	}
	if parentPid(orphan) != 0 {
		t.Errorf("the orphaned jail %d is still there", orphan)
	}
	if err := live.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a jail with a live parent was killed: %v", err)
	}
}

func mustSpec(t *testing.T, req Request, py interpreter) runSpec {
	t.Helper()
	s, err := specOf(req, py)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
