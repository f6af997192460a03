package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
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

// capTmpfsInodesAfterBlock releases a bwrap jail blocked on --block-fd
// (the write end of that pipe is blockW) and sets nr_inodes on its /tmp:
// bwrap has --size for a tmpfs but no inode option, so the parent
// reconfigures the tmpfs bwrap mounted.
//
// bwrap reports the jail's pid before the jail sets up its mounts; the one
// moment it tells is when it has read the block byte: it closes the pipe
// then (nothing else holds its read end), which the write end sees as an
// error condition. The mounts are final by then. The jail is not held
// meanwhile: it goes on to its filter, its exec and the interpreter's start
// (milliseconds) while the parent caps /tmp. A program that made more
// inodes than the cap before that would make the reconfiguration fail: the
// jail is then killed as a launch failure, never left without the cap.
//
// fspick(2) on /proc/<pid>/root/tmp reaches the mount in the jail's mount
// namespace from ours; reconfiguring it takes CAP_SYS_ADMIN over the jail's
// user namespace, which a root parent has, and changes only the parameter
// given (the size stays). A pidfd taken while the jail was known to be
// bwrap's child tells afterwards that /proc/<pid> was still the jail (the
// pid was not reused): if the jail is gone, there is nothing to cap.
func capTmpfsInodesAfterBlock(pid, uid, gid int, inodes int64, blockW *os.File, timeout time.Duration) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: %w", err)
	}
	defer unix.Close(pidfd)
	if _, err := blockW.Write([]byte{1}); err != nil {
		return err
	}
	if err := waitReaderClosed(blockW, timeout); err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: waiting for the jail's setup: %w", err)
	}
	if err = capTmpfsInodes(pid, uid, gid, inodes); err != nil && jailEnded(pidfd, jailExitWait) {
		// A jail that ran its program before the parent got here (under
		// load) and is exiting has no /tmp any more: nothing to cap. The
		// parent learns how it ended from its supervisor.
		return nil
	}
	return err
}

// jailExitWait bounds the wait for a jail whose /tmp could not be capped
// to show that it is exiting.
const jailExitWait = 100 * time.Millisecond

// jailEnded reports whether the process of pidfd has exited, a zombie
// included, or does within timeout (a process that has released its
// filesystem context is on its way there).
func jailEnded(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// waitReaderClosed waits until the pipe's read end is closed everywhere.
func waitReaderClosed(w *os.File, timeout time.Duration) error {
	conn, err := w.SyscallConn() // not w.Fd(), which would make w blocking
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var perr error
	cerr := conn.Control(func(fd uintptr) {
		for {
			left := time.Until(deadline)
			if left <= 0 {
				perr = fmt.Errorf("not done after %s", timeout)
				return
			}
			// No events asked: poll returns on POLLERR, which a pipe's
			// write end reports once it has no reader.
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				perr = err
				return
			}
			if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	return perr
}

// capTmpfsInodes sets nr_inodes on the tmpfs at /tmp of process pid, whose
// mounts are final. Reaching /proc/<pid>/root takes ptrace read access to
// the jail: done with the jail's uid and gid as the thread's filesystem ids
// (bwrap made the jail dumpable), it needs no CAP_SYS_PTRACE; the ids are
// restored before the thread is released.
func capTmpfsInodes(pid, uid, gid int, inodes int64) error {
	fd, err := pickJailTmp(pid, uid, gid)
	if err != nil {
		return fmt.Errorf("capping the inodes of the jail's /tmp: fspick: %w", err)
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

// pickJailTmp returns an fspick(2) descriptor of the jail's /tmp, from a
// thread whose filesystem ids are the jail's meanwhile.
func pickJailTmp(pid, uid, gid int) (int, error) {
	runtime.LockOSThread()
	prevGID, _ := unix.SetfsgidRetGid(gid)
	prevUID, _ := unix.SetfsuidRetUid(uid)
	fd, err := unix.Fspick(unix.AT_FDCWD, "/proc/"+strconv.Itoa(pid)+"/root/tmp", unix.FSPICK_CLOEXEC|unix.FSPICK_NO_AUTOMOUNT)
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
