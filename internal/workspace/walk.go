package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// The runtime's walks of a tree (the seed's copy, the size count, the
// diff's comparison) go by descriptors: each directory is opened with
// openat(2) from its parent's descriptor (O_NOFOLLOW), each entry
// examined with fstatat(2) beside it. An os.Root resolves a path element by
// element from its root on every call, so walking a chain of N directories
// through it costs N²/2 lookups (a seed 6,000 directories deep took 10
// minutes); by descriptors it costs N. Every walk checks its context
// between entries, so a task's deadline ends it.

// maxPathBytes bounds a path beneath a workspace that the runtime walks,
// copies or compares: PATH_MAX less its NUL. No program of the jail can
// open a longer path by name either (git cannot diff it); a seed with one
// is refused, a diff that meets one says it is incomplete.
const maxPathBytes = 4095

// errPathTooLong is the error of a path past maxPathBytes.
var errPathTooLong = fmt.Errorf("a path longer than %d bytes", maxPathBytes)

// dirEntry is one entry of a directory with its lstat.
type dirEntry struct {
	name, path string
	st         unix.Stat_t
}

func (e dirEntry) mode() uint32     { return e.st.Mode & unix.S_IFMT }
func (e dirEntry) isDir() bool      { return e.mode() == unix.S_IFDIR }
func (e dirEntry) isRegular() bool  { return e.mode() == unix.S_IFREG }
func (e dirEntry) isSymlink() bool  { return e.mode() == unix.S_IFLNK }
func (e dirEntry) executable() bool { return e.st.Mode&0o111 != 0 }
func (e dirEntry) fileMode() fs.FileMode {
	switch e.mode() {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return 0
}

// joinRel joins a relative directory ("" for the root) and a name.
func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// readDir lists dir's entries, sorted by name, each with its lstat. rel is
// dir's path, for the entries' paths.
func readDir(dir *os.File, rel string) ([]dirEntry, error) {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading directory %q: %w", orDot(rel), err)
	}
	sort.Strings(names)
	out := make([]dirEntry, 0, len(names))
	for _, name := range names {
		e := dirEntry{name: name, path: joinRel(rel, name)}
		if err := unix.Fstatat(int(dir.Fd()), name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("lstat %q: %w", e.path, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// openAt opens name beneath dir without following a link (flags add to
// O_RDONLY|O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK). When the runtime is refused
// the entry's mode (a directory of mode 000 the jail made, which a
// runtime that is not root only owns), it grants itself read (and search)
// for the open; restore puts the mode back and must be called once the
// file is no longer needed. As root the mode never stops it.
func openAt(dir *os.File, name string, e *dirEntry, flags int) (f *os.File, restore func(), err error) {
	restore = func() {}
	open := func() (*os.File, error) {
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|flags, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	f, err = open()
	if errors.Is(err, unix.EACCES) && e != nil && int(e.st.Uid) == os.Geteuid() {
		orig := e.st.Mode & 0o7777
		grant := orig | 0o400
		if e.isDir() {
			grant |= 0o100
		}
		// No process of the jail runs between steps: the entry is the one
		// lstat saw, and fchmodat cannot be sent elsewhere.
		if cerr := unix.Fchmodat(int(dir.Fd()), name, grant, 0); cerr == nil {
			restore = func() { _ = unix.Fchmodat(int(dir.Fd()), name, orig, 0) }
			f, err = open()
			if err != nil {
				restore()
				restore = func() {}
			}
		}
	}
	if err != nil {
		return nil, restore, err
	}
	return f, restore, nil
}

// openDirAt opens the directory name beneath dir (see openAt).
func openDirAt(dir *os.File, name string, e *dirEntry) (*os.File, func(), error) {
	return openAt(dir, name, e, unix.O_DIRECTORY)
}

// rootDir opens root's own directory, the start of a walk.
func rootDir(root *os.Root) (*os.File, error) {
	return root.OpenFile(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
}

// walkTree calls fn for every entry beneath root, parents before their
// children, names sorted, without following links; dir is the entry's
// directory (for *at calls). fn returning errSkip skips a directory's
// contents. A path past maxPathBytes is errPathTooLong (wrapped with it).
func walkTree(ctx context.Context, root *os.Root, fn func(dir *os.File, e dirEntry) error) error {
	d, err := rootDir(root)
	if err != nil {
		return err
	}
	defer d.Close()
	return walkDir(ctx, d, "", fn)
}

// errSkip, returned by a walk's fn for a directory, skips its contents.
var errSkip = errors.New("skip this directory")

func walkDir(ctx context.Context, dir *os.File, rel string, fn func(*os.File, dirEntry) error) error {
	ents, err := readDir(dir, rel)
	if err != nil {
		return err
	}
	for i := range ents {
		e := &ents[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(e.path) > maxPathBytes {
			return fmt.Errorf("%q...: %w", e.path[:64], errPathTooLong)
		}
		if err := fn(dir, *e); err != nil {
			if errors.Is(err, errSkip) {
				continue
			}
			return err
		}
		if !e.isDir() {
			continue
		}
		sub, restore, err := openDirAt(dir, e.name, e)
		if err != nil {
			return fmt.Errorf("opening directory %q: %w", e.path, err)
		}
		err = walkDir(ctx, sub, e.path, fn)
		sub.Close()
		restore()
		if err != nil {
			return err
		}
	}
	return nil
}
