package workspace

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Everything in this file works beneath an os.Root: a path that leads out
// of the directory (an absolute symlink, a symlink or ".." climbing out) is
// refused by the kernel-side resolution, whatever the jail made of the
// tree. Files are opened O_NONBLOCK|O_NOFOLLOW where a link must not be
// followed, and checked with fstat after opening: a FIFO would block the
// runtime, a device is never read.

// openRegular opens name beneath root for reading and returns it if it is
// a regular file of at most maxBytes.
func openRegular(root *os.Root, name string, maxBytes int64) (*os.File, int64, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file (%s)", name, kind(st.Mode()))
	}
	if st.Size() > maxBytes {
		f.Close()
		return nil, 0, fmt.Errorf("%s is %d bytes, over the limit of %d", name, st.Size(), maxBytes)
	}
	return f, st.Size(), nil
}

// readRegular reads a regular file of at most maxBytes beneath root.
func readRegular(root *os.Root, name string, maxBytes int64) ([]byte, error) {
	f, _, err := openRegular(root, name, maxBytes)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("%s grew past the limit of %d bytes", name, maxBytes)
	}
	return data, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// owner is who the files the jail may write belong to; chown only when the
// runtime is root (otherwise they are the runtime's, which the jail's
// namespace maps to 65534).
type owner struct {
	uid, gid int
	chown    bool
}

func (o owner) fchown(f *os.File) error {
	if !o.chown {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}

// writeFile creates or replaces name beneath root with data, its parents
// included, all owned by o. A directory or anything but a regular file at
// name is an error. Existing files keep their mode; new ones get perm.
func writeFile(root *os.Root, name string, data []byte, perm fs.FileMode, o owner) error {
	if dir := path.Dir(name); dir != "." {
		if err := mkdirAll(root, dir, o); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is %s", name, kind(st.Mode()))
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := o.fchown(f); err != nil {
		return err
	}
	return f.Close()
}

// mkdirAll makes dir and its parents beneath root, owned by o, by
// descriptors (one openat per element: linear in the path, where a Mkdir
// of each prefix through root would be quadratic). A link on the way is
// not followed (an error).
func mkdirAll(root *os.Root, dir string, o owner) error {
	cur := &dirCursor{root: root, o: o}
	defer cur.close()
	_, err := cur.enter(dir)
	return err
}

// localPath checks a seed's or a tool's relative path: not absolute, no
// "..", no NUL, at most maxPathBytes; returned cleaned, slash-separated.
func localPath(p string) (string, bool) {
	if p == "" || len(p) > maxPathBytes || strings.IndexByte(p, 0) >= 0 || !filepath.IsLocal(p) {
		return "", false
	}
	c := path.Clean(p)
	if c == "." {
		return "", false
	}
	return c, true
}

// usage counts what lies beneath root without following anything: bytes of
// regular files (rounded up to 4 KiB blocks, as a filesystem holds them)
// and entries (files, directories, links).
func usage(ctx context.Context, root *os.Root) (bytes int64, entries int, err error) {
	err = walkTree(ctx, root, func(_ *os.File, e dirEntry) error {
		entries++
		if e.isRegular() {
			bytes += (e.st.Size + 4095) &^ 4095
		}
		return nil
	})
	return bytes, entries, err
}

// caps are the bounds a seed must fit in.
type caps struct {
	maxBytes int64
	maxFiles int
	bytes    int64
	files    int
}

func (c *caps) add(name string, size int64) error {
	c.files++
	c.bytes += (size + 4095) &^ 4095
	if c.files > c.maxFiles {
		return &SeedError{Path: name, Reason: fmt.Sprintf("the seed has more than %d files and directories (SANDBOX_WORKSPACE_FILES)", c.maxFiles)}
	}
	if c.bytes > c.maxBytes {
		return &SeedError{Path: name, Reason: fmt.Sprintf("the seed is larger than the workspace's %d MiB (SANDBOX_WORKSPACE_MB)", c.maxBytes>>20)}
	}
	return nil
}

// fileMode normalizes a seed file's mode: executable or not, readable by
// all (the jail's uid reads the seed for the diff).
func fileMode(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// symlinkInside reports whether a link at name with target stays inside
// the tree it is in (relative, never climbing above the root).
func symlinkInside(name, target string) bool {
	if target == "" || path.IsAbs(target) || strings.IndexByte(target, 0) >= 0 {
		return false
	}
	return filepath.IsLocal(path.Join(path.Dir(name), target)) || path.Clean(path.Join(path.Dir(name), target)) == "."
}

// copyTree copies the tree beneath src into dst (both roots), without
// following links: regular files, directories and symlinks that stay inside
// (others are a *SeedError). Modes are normalized, everything owned by o.
// It goes by descriptors (walk.go), so it costs what the tree holds, and
// ends with ctx.
func copyTree(ctx context.Context, src, dst *os.Root, o owner, c *caps) error {
	cp := copier{o: o, caps: c}
	return cp.tree(ctx, src, dst)
}

// copier copies trees by descriptors.
type copier struct {
	o    owner
	caps *caps
	// anyLink copies every symlink as it is (the diff's and the snapshot's
	// copies, never followed); otherwise a link out of the tree is a
	// *SeedError.
	anyLink bool
	// skipGit leaves .git directories out.
	skipGit bool
}

// unbounded are caps that never refuse: for copies of a workspace the
// tmpfs already bounds.
func unbounded() *caps { return &caps{maxBytes: 1 << 62, maxFiles: 1 << 62} }

func (cp copier) tree(ctx context.Context, src, dst *os.Root) error {
	s, err := rootDir(src)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := rootDir(dst)
	if err != nil {
		return err
	}
	defer d.Close()
	return cp.dir(ctx, s, d, "")
}

func (cp copier) dir(ctx context.Context, src, dst *os.File, rel string) error {
	ents, err := readDir(src, rel)
	if err != nil {
		return err
	}
	for i := range ents {
		if err := cp.entry(ctx, src, dst, &ents[i]); err != nil {
			return err
		}
	}
	return nil
}

// entry copies e, an entry of src, into dst under the same name.
func (cp copier) entry(ctx context.Context, src, dst *os.File, e *dirEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(e.path) > maxPathBytes {
		return &SeedError{Path: e.path[:64] + "...", Reason: errPathTooLong.Error()}
	}
	c := cp.caps
	switch {
	case e.isDir():
		if cp.skipGit && e.name == ".git" {
			return nil
		}
		if err := c.add(e.path, 0); err != nil {
			return err
		}
		return cp.subdir(ctx, src, dst, e)
	case e.isRegular():
		if err := c.add(e.path, e.st.Size); err != nil {
			return err
		}
		return copyFileAt(src, dst, e, cp.o)
	case e.isSymlink():
		target, err := readlinkAt(src, e.name)
		if err != nil {
			return fmt.Errorf("readlink %q: %w", e.path, err)
		}
		if !cp.anyLink && !symlinkInside(e.path, target) {
			return &SeedError{Path: e.path, Reason: fmt.Sprintf("symlink to %q leads out of the workspace", target)}
		}
		if err := c.add(e.path, 0); err != nil {
			return err
		}
		if err := symlinkAt(dst, target, e.name, cp.o); err != nil {
			return fmt.Errorf("symlink %q: %w", e.path, err)
		}
		return nil
	}
	return &SeedError{Path: e.path, Reason: "only regular files, directories and symlinks may be in a seed, not " + kind(e.fileMode())}
}

// subdir makes e's directory in dst and copies its contents.
func (cp copier) subdir(ctx context.Context, src, dst *os.File, e *dirEntry) error {
	if err := mkdirOwned(dst, e.name, cp.o); err != nil {
		return fmt.Errorf("mkdir %q: %w", e.path, err)
	}
	d, _, err := openDirAt(dst, e.name, nil)
	if err != nil {
		return fmt.Errorf("opening %q: %w", e.path, err)
	}
	defer d.Close()
	s, restore, err := openDirAt(src, e.name, e)
	if err != nil {
		return fmt.Errorf("opening %q: %w", e.path, err)
	}
	defer restore()
	defer s.Close()
	return cp.dir(ctx, s, d, e.path)
}

// copyFileAt copies the regular file e of src into dst, its mode
// normalized (fileMode), owned by o.
func copyFileAt(src, dst *os.File, e *dirEntry, o owner) error {
	f, restore, err := openAt(src, e.name, e, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", e.path, err)
	}
	defer restore()
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%q is no longer a regular file", e.path)
	}
	return writeAt(dst, e, io.LimitReader(f, st.Size()), fileMode(st.Mode()), o)
}

// readlinkAt reads the link name beneath dir.
func readlinkAt(dir *os.File, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(int(dir.Fd()), name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// symlinkAt makes the link name → target beneath dir, owned by o.
func symlinkAt(dir *os.File, target, name string, o owner) error {
	if err := unix.Symlinkat(target, int(dir.Fd()), name); err != nil {
		return err
	}
	if o.chown {
		return unix.Fchownat(int(dir.Fd()), name, o.uid, o.gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// dirCursor holds one open directory beneath a root and its path: the
// entries of a tar come directory by directory, so the next one is mostly
// in the same directory or a child of it, reached with one openat, where
// resolving each entry's path from the root would cost its depth (a tar of
// a chain of N directories cost N²/2 lookups). Elsewhere it goes down from
// the root again: never more than the entry's own path.
type dirCursor struct {
	root *os.Root
	o    owner
	path string   // of dir, "." for the root
	dir  *os.File // nil until the first enter
}

// enter returns the directory at p (slash-separated, "." for the root),
// making what is missing of it, owned by o; a link on the way is an error.
func (c *dirCursor) enter(p string) (*os.File, error) {
	if c.dir != nil && c.path == p {
		return c.dir, nil
	}
	var rest string
	switch {
	case c.dir != nil && c.path == ".":
		rest = p
	case c.dir != nil && strings.HasPrefix(p, c.path+"/"):
		rest = p[len(c.path)+1:]
	default:
		c.close()
		d, err := rootDir(c.root)
		if err != nil {
			return nil, err
		}
		c.dir, c.path, rest = d, ".", p
		if p == "." {
			return d, nil
		}
	}
	done := c.path
	for _, part := range strings.Split(rest, "/") {
		done = joinRel(strings.TrimPrefix(done, "."), part)
		if err := mkdirOwned(c.dir, part, c.o); err != nil {
			return nil, err
		}
		sub, _, err := openDirAt(c.dir, part, nil)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// A symlink: os.Root follows it if it stays beneath the root
			// (and refuses it otherwise), as the tools always have.
			sub, err = openThroughRoot(c.root, done)
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		c.dir.Close()
		c.dir = sub
	}
	c.path = p
	return c.dir, nil
}

// openThroughRoot opens the directory p beneath root, following links
// that stay beneath it.
func openThroughRoot(root *os.Root, p string) (*os.File, error) {
	sub, err := root.OpenRoot(p)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	return rootDir(sub)
}

func (c *dirCursor) close() {
	if c.dir != nil {
		c.dir.Close()
		c.dir = nil
	}
}

// mkdirOwned makes the directory name beneath dir, owned by o, unless it
// exists.
func mkdirOwned(dir *os.File, name string, o owner) error {
	err := unix.Mkdirat(int(dir.Fd()), name, 0o755)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	if o.chown {
		return unix.Fchownat(int(dir.Fd()), name, o.uid, o.gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// writeAt creates e beneath dir (it must not exist as anything but a
// regular file) with r's content, mode perm, owned by o.
func writeAt(dir *os.File, e *dirEntry, r io.Reader, perm fs.FileMode, o owner) error {
	fd, err := unix.Openat(int(dir.Fd()), e.name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm))
	if err != nil {
		return &fs.PathError{Op: "create", Path: e.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), e.name)
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", e.path)
	}
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := o.fchown(f); err != nil {
		return err
	}
	return f.Close()
}

// extractTar unpacks a tar (gzip-compressed when gz) into dst: regular
// files, directories, symlinks that stay inside, and hard links to files
// extracted before (copied). Absolute paths, "..", links out of the tree,
// devices and FIFOs are a *SeedError.
func extractTar(ctx context.Context, r io.Reader, gz bool, dst *os.Root, o owner, c *caps, name string) error {
	if gz {
		z, err := gzip.NewReader(r)
		if err != nil {
			return &SeedError{Path: name, Reason: "not a gzip file: " + err.Error()}
		}
		defer z.Close()
		r = z
	}
	tr := tar.NewReader(r)
	cur := &dirCursor{root: dst, o: o}
	defer cur.close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &SeedError{Path: name, Reason: "reading the tar: " + err.Error()}
		}
		p, ok := localPath(h.Name)
		if !ok {
			if strings.Trim(h.Name, "./") == "" && h.Typeflag == tar.TypeDir {
				continue // "./" itself
			}
			return &SeedError{Path: h.Name, Reason: "an absolute path or one with .. in the tar"}
		}
		dir, err := cur.enter(path.Dir(p))
		if err != nil {
			return seedFSError(p, err)
		}
		base := path.Base(p)
		e := &dirEntry{name: base, path: p}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := c.add(p, 0); err != nil {
				return err
			}
			if err := mkdirOwned(dir, base, o); err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeReg:
			if err := c.add(p, h.Size); err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
				e.st = st
				return &SeedError{Path: p, Reason: "the tar has this path twice, first as " + kind(e.fileMode())}
			}
			if err := writeAt(dir, e, io.LimitReader(tr, h.Size), fileMode(fs.FileMode(h.Mode)), o); err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeSymlink:
			if !symlinkInside(p, h.Linkname) {
				return &SeedError{Path: p, Reason: fmt.Sprintf("symlink to %q leads out of the workspace", h.Linkname)}
			}
			if err := c.add(p, 0); err != nil {
				return err
			}
			if err := symlinkAt(dir, h.Linkname, base, o); err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeLink:
			target, ok := localPath(h.Linkname)
			if !ok {
				return &SeedError{Path: p, Reason: fmt.Sprintf("hard link to %q leads out of the workspace", h.Linkname)}
			}
			f, size, err := openRegular(dst, target, c.maxBytes)
			if err != nil {
				return &SeedError{Path: p, Reason: fmt.Sprintf("hard link to %q, which is not a file extracted before: %v", h.Linkname, err)}
			}
			err = c.add(p, size)
			if err == nil {
				err = writeAt(dir, e, f, 0o644, o)
			}
			f.Close()
			if err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeXGlobalHeader:
		default:
			return &SeedError{Path: p, Reason: fmt.Sprintf("tar entry of type %q: only files, directories and links may be in a seed", string(h.Typeflag))}
		}
	}
}

// seedFSError keeps a *SeedError as it is and names the path otherwise.
func seedFSError(p string, err error) error {
	var se *SeedError
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return &SeedError{Path: p, Reason: "the seed does not fit in the workspace's caps"}
	}
	// A fresh tree refuses an entry for what the seed made of it before
	// (a link where a file goes, a file where a directory goes).
	for _, e := range []error{unix.ELOOP, unix.EEXIST, unix.ENOTDIR, unix.EISDIR} {
		if errors.Is(err, e) {
			return &SeedError{Path: p, Reason: err.Error()}
		}
	}
	if strings.Contains(err.Error(), "path escapes") {
		return &SeedError{Path: p, Reason: "the path leads out of the workspace through a link of the seed"}
	}
	return fmt.Errorf("seed %s: %w", p, err)
}
