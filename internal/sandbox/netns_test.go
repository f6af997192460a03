package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// startChild starts sleep from th; it is killed when the test ends.
func startChild(t *testing.T, th *netnsThread) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "5")
	if err := th.do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// childNetns starts a child from th and returns its network namespace.
func childNetns(t *testing.T, th *netnsThread) string {
	t.Helper()
	ns, err := os.Readlink("/proc/" + strconv.Itoa(startChild(t, th).Process.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestNetnsThreads(t *testing.T) {
	first, err := newNetnsThread(false)
	if err != nil {
		t.Skipf("no network namespaces here (needs CAP_SYS_ADMIN): %v", err)
	}
	defer first.retire()
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ns1 := childNetns(t, first)
	if ns1 == host {
		t.Fatalf("a child of the thread is in the host's network namespace %s", host)
	}
	if again := childNetns(t, first); again != ns1 {
		t.Errorf("the thread's children are in %s then %s: want one namespace per thread", ns1, again)
	}
	// The calling goroutine's thread is not moved.
	if now, _ := os.Readlink("/proc/self/ns/net"); now != host {
		t.Errorf("this thread moved to %s", now)
	}

	// The pool never hands one thread to two runs at once, and reuses a
	// returned one.
	p := &netnsPool{maxIdle: 1}
	p.put(first)
	a, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || childNetns(t, a) == childNetns(t, b) {
		t.Fatal("two runs at once share a network namespace")
	}
	p.put(a)
	p.put(b) // over maxIdle: retired
	if len(p.idle) != 1 || p.idle[0] != a {
		t.Errorf("idle = %v, want just the first thread returned", p.idle)
	}
	if c, _ := p.get(); c != a {
		t.Error("an idle thread was not reused")
	}
}

// TestNetnsThreadAsJailUser: a thread made asJailUser forks children that
// run as the jail's uid and gid, while the rest of the process stays root.
func TestNetnsThreadAsJailUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	th, err := newNetnsThread(true)
	if err != nil {
		t.Skipf("no network namespaces here (needs CAP_SYS_ADMIN): %v", err)
	}
	defer th.retire()
	cmd := startChild(t, th)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("child of the thread: status lacks %q:\n%s", want, status)
		}
	}
	for _, line := range strings.Split(string(status), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok && strings.TrimSpace(g) != "" {
			t.Errorf("child of the thread has supplementary groups %q", g)
		}
	}
	// The thread can set its children's rlimits; root elsewhere in the
	// process keeps its uid.
	lim := []rlimit{{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", 32, 32}}
	if err := th.do(func() error { return setRlimits(cmd.Process.Pid, lim) }); err != nil {
		t.Errorf("setting the child's rlimit from the thread: %v", err)
	}
	if os.Geteuid() != 0 || os.Getuid() != 0 {
		t.Errorf("this thread's uid changed: %d/%d", os.Getuid(), os.Geteuid())
	}
}
