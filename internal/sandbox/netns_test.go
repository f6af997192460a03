package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// childNetns starts sleep from t and returns its network namespace.
func childNetns(t *testing.T, th *netnsThread) string {
	t.Helper()
	cmd := exec.Command("sleep", "5")
	if err := th.do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ns, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestNetnsThreads(t *testing.T) {
	first, err := newNetnsThread()
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
