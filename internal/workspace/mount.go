package workspace

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// reservedInodes are the live tmpfs's own entries besides the workspace's
// files: its root, work/, state/ and the shell's state files.
const reservedInodes = 16

// stateBytes is room for the shell's state beyond MaxBytes.
const stateBytes = 256 << 10

// mountLive mounts a tmpfs at dir bounded by the caps: size MaxBytes plus
// room for the state, nr_inodes MaxFiles plus the tmpfs's own; nosuid,
// nodev; its root owned by o. It needs CAP_SYS_ADMIN; the caller falls
// back to a plain directory (caps checked after each step) without it.
func mountLive(dir string, maxBytes int64, maxFiles int, o owner) error {
	opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755", maxBytes+stateBytes, maxFiles+reservedInodes)
	if o.chown {
		opts += fmt.Sprintf(",uid=%d,gid=%d", o.uid, o.gid)
	}
	if err := unix.Mount("adp-workspace", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting the workspace's tmpfs at %s: %w", dir, err)
	}
	return nil
}

// unmountBelow detaches every mount at or below dir (the live tmpfs, and
// what a crashed manager left), deepest first.
func unmountBelow(dir string) error {
	mounts, err := mountsBelow(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountsBelow lists the mount points at or below dir, from
// /proc/self/mountinfo, in mount order.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// full reports whether the tmpfs at dir has no block or no inode left: a
// write of the last step failed (or would have) for the caps.
func full(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Bfree == 0 || st.Ffree == 0, nil
}

// removeTree unmounts what is mounted below dir and removes it.
func removeTree(dir string) error {
	if err := unmountBelow(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// lockSuffix names a manager directory's lock file, beside it.
const lockSuffix = ".lock"

// makeManagerDir makes a manager's directory beneath root and its lock
// file, locked (flock) until the manager closes it or its process dies:
// whatever shares root, in any pid namespace, can tell a live manager's
// directory from one a crashed runtime left.
func makeManagerDir(root string) (string, *os.File, error) {
	dir, err := os.MkdirTemp(root, fmt.Sprintf("%s%d-", managerDirPrefix, os.Getpid()))
	if err != nil {
		return "", nil, err
	}
	lock, err := os.OpenFile(dir+lockSuffix, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err == nil {
		err = os.Chmod(dir, 0o711)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.Remove(dir + lockSuffix)
		os.Remove(dir)
		return "", nil, err
	}
	return dir, lock, nil
}

// staleUnlockedAge: a manager directory without a lock file is left alone
// this long (its manager may be between making the two).
const staleUnlockedAge = time.Minute

// removeStaleManagers removes the directories of managers that are gone:
// their lock file is not locked (or, after staleUnlockedAge, missing).
func removeStaleManagers(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, managerDirPrefix+"*"))
	for _, d := range dirs {
		if strings.HasSuffix(d, lockSuffix) {
			continue
		}
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() {
			continue
		}
		lock, err := os.OpenFile(d+lockSuffix, os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && time.Since(st.ModTime()) > staleUnlockedAge {
				_ = removeTree(d)
			}
			continue
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = removeTree(d)
			_ = os.Remove(d + lockSuffix)
		}
		lock.Close()
	}
}
