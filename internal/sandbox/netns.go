package sandbox

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Network namespaces for jails, reused.
//
// Every jail needs a network namespace with no interface up. Creating one
// per run, and the kernel tearing it down afterwards, costs about a
// millisecond on the critical path and more in a kernel worker. A network
// namespace holds nothing once its processes are gone (no interface is up,
// and nothing in a jail has the privilege to change that or any other
// setting: the namespace belongs to the host's user namespace), so jails
// that run one after another can share one.
//
// A process inherits the network namespace of the thread that forks it. A
// netnsThread is an OS thread, locked to its goroutine, that moved into a
// network namespace of its own; a jail is started from it. The thread is
// taken for the whole run, so two jails never share a namespace at the
// same time (they could otherwise reach each other through abstract Unix
// sockets), and returned once the jail is gone.
//
// The thread is also the jail's parent thread for PR_SET_PDEATHSIG: it
// lives until it is retired, which happens only while no jail runs from it.
type netnsThread struct {
	calls chan func()
}

// newNetnsThread starts a thread in a new network namespace. It fails
// without CAP_SYS_ADMIN.
func newNetnsThread() (*netnsThread, error) {
	t := &netnsThread{calls: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when the goroutine returns, the thread exits
		// rather than go back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("sandbox: new network namespace: %w", err)
			return
		}
		errc <- nil
		for fn := range t.calls {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// do runs fn on the thread and waits for it.
func (t *netnsThread) do(fn func() error) error {
	var err error
	done := make(chan struct{})
	t.calls <- func() { err = fn(); close(done) }
	<-done
	return err
}

// retire ends the thread, and the namespace with it.
func (t *netnsThread) retire() { close(t.calls) }

// netnsPool keeps up to maxIdle idle threads.
type netnsPool struct {
	maxIdle int
	mu      sync.Mutex
	idle    []*netnsThread
}

func (p *netnsPool) get() (*netnsThread, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		t := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return t, nil
	}
	p.mu.Unlock()
	return newNetnsThread()
}

// put returns a thread whose jail is gone.
func (p *netnsPool) put(t *netnsThread) {
	p.mu.Lock()
	if len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, t)
		t = nil
	}
	p.mu.Unlock()
	if t != nil {
		t.retire()
	}
}
