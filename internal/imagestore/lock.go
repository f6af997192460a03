package imagestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockPoll is how often a blocked lock is tried again. flock has no
// timeout and a blocked flock cannot be cancelled, so locks are taken
// without blocking and retried until the context ends.
const lockPoll = 20 * time.Millisecond

// fileLock is an advisory lock (flock) on a file of the store. flock locks
// belong to an open file description, so they exclude other processes and
// other goroutines of this one alike, and die with their process.
type fileLock struct{ f *os.File }

// lock takes a lock (unix.LOCK_SH or unix.LOCK_EX) on path, creating the
// file, and waits for it until ctx ends.
func lock(ctx context.Context, path string, how int) (*fileLock, error) {
	for {
		l, ok, err := tryLock(path, how)
		if err != nil || ok {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// tryLock takes a lock on path if no one holds a conflicting one.
func tryLock(path string, how int) (*fileLock, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return &fileLock{f}, true, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		f.Close()
		return nil, false, nil
	default:
		f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
}

// unlock releases the lock (closing the file releases it).
func (l *fileLock) unlock() {
	if l != nil {
		l.f.Close()
	}
}
