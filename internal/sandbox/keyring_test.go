package sandbox

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJoinFreshSessionKeyring: each join gives the thread a new anonymous
// keyring ("_ses"), not one found by name, and none holds a key of the
// previous one.
func TestJoinFreshSessionKeyring(t *testing.T) {
	done := make(chan struct{})
	var skip error
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with its keyring
		if err := joinFreshSessionKeyring(); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
				skip = err
				return
			}
			t.Error(err)
			return
		}
		first, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := unix.AddKey("user", "adp-test-first", []byte("x"), unix.KEY_SPEC_SESSION_KEYRING); err != nil {
			t.Error(err)
			return
		}
		if err := joinFreshSessionKeyring(); err != nil {
			t.Error(err)
			return
		}
		second, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
		if err != nil {
			t.Error(err)
			return
		}
		if first == second {
			t.Errorf("the same keyring %d twice", first)
		}
		desc, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, second)
		if err != nil || len(desc) < 5 || desc[len(desc)-5:] != ";_ses" {
			t.Errorf("new session keyring described as %q (%v), want an anonymous _ses", desc, err)
		}
		if _, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", "adp-test-first", 0); !errors.Is(err, unix.ENOKEY) {
			t.Errorf("the previous keyring's key: search err = %v, want ENOKEY", err)
		}
	}()
	<-done
	if skip != nil {
		t.Skipf("keyrings unavailable here: %v", skip)
	}
}
