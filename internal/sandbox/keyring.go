package sandbox

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// A fresh session keyring for every jail.
//
// A process inherits its session keyring from the thread that forks it,
// and a runtime started by runc or Docker has one of its own, which every
// thread of the runtime shares: without a new one each jail could read
// what the runtime's parent stored there, and what an earlier jail added.
// (The seccomp filter denies keyctl, add_key and request_key as well; the
// fresh keyring is the second layer, and the one that also holds where the
// filter cannot be installed.)
//
// KEYCTL_JOIN_SESSION_KEYRING with a NULL name gives the calling thread,
// and only it (credentials are per thread), a new anonymous keyring that no
// other process can join by name; the thread's previous one is released.
// So the thread that starts a jail joins one just before (run.go's start),
// and the jail (bwrap or nsjail, then the program) takes it with it; the
// next jail started from that thread gets another.

// joinFreshSessionKeyring gives the calling OS thread a new anonymous
// session keyring. The caller must hold the thread (runtime.LockOSThread)
// until it has started the jail.
func joinFreshSessionKeyring() error {
	// Not unix.KeyctlJoinSessionKeyring(""): that passes an empty name,
	// which creates (or joins!) a keyring named "" that any process of the
	// same uid could join too.
	_, _, e := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	if e != 0 {
		return fmt.Errorf("sandbox: a fresh session keyring for the jail: %w", e)
	}
	return nil
}

// onLockedThread runs fn with the calling goroutine locked to its thread:
// the start of a jail whose backend has no thread of its own. The thread
// then goes back to the Go scheduler with the jail's keyring (an empty
// one, which the jail cannot write to: the filter denies the keyring
// calls); the runtime starts nothing but jails, and every jail start joins
// a new one first. The thread lives on, so PR_SET_PDEATHSIG (sent when the
// forking thread exits) is not triggered by it.
func onLockedThread(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return fn()
}
