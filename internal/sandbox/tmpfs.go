package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The jail's /tmp is bounded in inodes as well as in bytes. A tmpfs with
// size= but no nr_inodes= takes as many inodes as half the host's RAM in
// pages (millions here), and an inode with its dentry costs about 1 KiB of
// kernel memory that no rlimit counts: a jail making empty directories grew
// the kernel's slab by 1.5 GB in 20 s.

// tmpfsBytesPerInode sets the inode cap from the size: one inode per 16 KiB
// of /tmp (4,096 for the default 64 MiB), so that the inodes' own kernel
// memory stays under a tenth of the size.
const tmpfsBytesPerInode = 16 << 10

// minTmpfsInodes is the cap of a small /tmp.
const minTmpfsInodes = 1024

// tmpfsInodes is the nr_inodes= of a /tmp of size bytes.
func tmpfsInodes(size int64) int64 {
	return max(size/tmpfsBytesPerInode, minTmpfsInodes)
}

// capTmpfsInodes sets nr_inodes on the tmpfs at /tmp of process pid, a
// bwrap jail that will wait on --block-fd blockFD: bwrap has --size for a
// tmpfs but no inode option, so the parent reconfigures the tmpfs bwrap
// mounted, before the program runs.
//
// bwrap reports the jail's pid before the jail has set up its mounts, so
// this first waits (polling /proc/<pid>/syscall, at most timeout) until the
// jail blocks in read(2) on blockFD: its mounts are final then, and bwrap
// changes into /tmp only after the block. fspick(2) on /proc/<pid>/root/tmp
// then reaches the mount in the jail's mount namespace from ours;
// reconfiguring it takes CAP_SYS_ADMIN over the jail's user namespace,
// which a root parent has, and changes only the parameter given (the size
// stays). Reading /proc/<pid>/syscall and /proc/<pid>/root takes ptrace
// access to the jail: done with the jail's uid and gid as the thread's
// filesystem ids (bwrap made the jail dumpable, and it is our descendant),
// it needs no CAP_SYS_PTRACE; the ids are restored before the thread is
// released.
func capTmpfsInodes(pid, uid, gid int, inodes int64, blockFD int, timeout time.Duration) error {
	fd, err := pickJailTmp(pid, uid, gid, blockFD, timeout)
	if err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.FsconfigSetString(fd, "nr_inodes", strconv.FormatInt(inodes, 10)); err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: nr_inodes=%d: %w", inodes, err)
	}
	if err := unix.FsconfigReconfigure(fd); err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: reconfigure: %w", err)
	}
	return nil
}

// pickJailTmp waits for the jail to block on blockFD and returns an
// fspick(2) descriptor of its /tmp, from a thread whose filesystem ids are
// the jail's meanwhile.
func pickJailTmp(pid, uid, gid, blockFD int, timeout time.Duration) (int, error) {
	runtime.LockOSThread()
	prevGID, _ := unix.SetfsgidRetGid(gid)
	prevUID, _ := unix.SetfsuidRetUid(uid)
	fd, err := -1, waitBlockedInRead(pid, blockFD, timeout)
	if err == nil {
		fd, err = unix.Fspick(unix.AT_FDCWD, "/proc/"+strconv.Itoa(pid)+"/root/tmp", unix.FSPICK_CLOEXEC|unix.FSPICK_NO_AUTOMOUNT)
		if err != nil {
			err = fmt.Errorf("fspick: %w", err)
		}
	}
	_, _ = unix.SetfsuidRetUid(prevUID)
	_, _ = unix.SetfsgidRetGid(prevGID)
	// setfs[ug]id return the previous value: a second call tells whether
	// the first restored it. If not, the thread is not released: it exits
	// with its goroutine instead of serving others with the jail's ids.
	u, _ := unix.SetfsuidRetUid(prevUID)
	g, _ := unix.SetfsgidRetGid(prevGID)
	if u == prevUID && g == prevGID {
		runtime.UnlockOSThread()
	}
	return fd, err
}

// waitBlockedInRead polls until process pid is in read(2) on fd.
func waitBlockedInRead(pid, fd int, timeout time.Duration) error {
	path := "/proc/" + strconv.Itoa(pid) + "/syscall"
	want := strconv.Itoa(unix.SYS_READ) + " 0x" + strconv.FormatInt(int64(fd), 16) + " "
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 128)
	// Setup takes a millisecond or two; every poll costs a few
	// microseconds, every pause adds up to its length to the run.
	const pause = 100 * time.Microsecond
	for {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("waiting for the jail's setup: %w", err)
		}
		n, err := f.Read(buf)
		f.Close()
		if err != nil {
			return fmt.Errorf("waiting for the jail's setup: %w", err)
		}
		if strings.HasPrefix(string(buf[:n]), want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the jail did not finish its setup in %s (%s: %q)", timeout, path, strings.TrimSpace(string(buf[:n])))
		}
		time.Sleep(pause)
	}
}
