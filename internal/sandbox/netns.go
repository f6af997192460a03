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
//
// A thread made asJailUser then gives up root: its uids and gids become
// jailUID, its supplementary groups and capabilities go. Credentials are
// per thread in the kernel (Go's own Setuid changes every thread, so raw
// system calls are used here), and a child inherits its forking thread's:
// a jail started from it runs as jailUID from the start, with no user
// namespace for the parent to create, so the fork is a vfork. The thread
// can also set the rlimits of its jail's processes, which share its uid,
// without CAP_SYS_RESOURCE. The Go runtime never clones a new thread from a
// locked one (it asks its template thread), so the credentials stay on this
// thread. The kernel marks the process not dumpable when a thread's uid
// changes, and that is left so: it keeps processes of uid jailUID from
// tracing this one.
type netnsThread struct {
	calls      chan func()
	asJailUser bool
	uid        int // the uid and gid an asJailUser thread runs as
	tid        int // the OS thread's id
}

// newNetnsThread starts a thread in a new network namespace, running as
// jailUID when asJailUser. It fails without CAP_SYS_ADMIN (and CAP_SETUID
// and CAP_SETGID for asJailUser).
func newNetnsThread(asJailUser bool) (*netnsThread, error) {
	return newNetnsThreadAs(asJailUser, jailUID)
}

// newNetnsThreadAs is newNetnsThread with the uid (and gid) an asJailUser
// thread takes (Config.SandboxUID).
func newNetnsThreadAs(asJailUser bool, uid int) (*netnsThread, error) {
	t := &netnsThread{calls: make(chan func()), asJailUser: asJailUser, uid: uid}
	errc := make(chan error, 1)
	go t.run(errc, nil)
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

// run serves the thread's calls. It locks its goroutine to its thread and
// never unlocks it: when it returns, the thread exits rather than go back
// to the scheduler in the wrong namespace. locked, when set, is closed
// once it holds its thread.
func (t *netnsThread) run(errc chan<- error, locked chan<- struct{}) {
	runtime.LockOSThread()
	if locked != nil {
		close(locked)
	}
	if unix.Gettid() == unix.Getpid() {
		// The main thread: /proc/<pid> shows its namespaces and uid as
		// the whole process's, so it is never changed. Start again on
		// another thread; while this goroutine holds the main thread,
		// the new one cannot be scheduled on it.
		next := make(chan struct{})
		go t.run(errc, next)
		<-next
		runtime.UnlockOSThread()
		return
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		errc <- fmt.Errorf("sandbox: new network namespace: %w", err)
		return
	}
	t.tid = unix.Gettid()
	if t.asJailUser {
		if err := becomeJailUser(t.uid); err != nil {
			errc <- err
			return
		}
	}
	errc <- nil
	for fn := range t.calls {
		fn()
	}
}

// becomeJailUser drops the calling thread's credentials to uid (and gid
// uid), and only this thread's.
func becomeJailUser(uid int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
		return fmt.Errorf("sandbox: thread setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("sandbox: thread setresgid %d: %w", uid, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return fmt.Errorf("sandbox: thread setresuid %d: %w", uid, e)
	}
	return nil
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
	maxIdle    int
	asJailUser bool // for new threads
	uid        int  // for new asJailUser threads; 0: jailUID
	mu         sync.Mutex
	idle       []*netnsThread
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
	if p.uid != 0 {
		return newNetnsThreadAs(p.asJailUser, p.uid)
	}
	return newNetnsThread(p.asJailUser)
}

// drain retires the idle threads.
func (p *netnsPool) drain() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, t := range idle {
		t.retire()
	}
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
