package workspace

import (
	"archive/tar"
	"compress/gzip"
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

// mkdirAll makes dir and its parents beneath root, owned by o.
func mkdirAll(root *os.Root, dir string, o owner) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		err := root.Mkdir(p, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err == nil {
			if d, err := root.OpenFile(p, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0); err == nil {
				err = o.fchown(d)
				d.Close()
				if err != nil {
					return err
				}
			} else {
				return err
			}
		}
	}
	return nil
}

// localPath checks a seed's or a tool's relative path: not absolute, no
// "..", no NUL; returned cleaned, slash-separated.
func localPath(p string) (string, bool) {
	if p == "" || strings.IndexByte(p, 0) >= 0 || !filepath.IsLocal(p) {
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
func usage(root *os.Root) (bytes int64, entries int, err error) {
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		entries++
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			bytes += (info.Size() + 4095) &^ 4095
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
// (others are a *SeedError when seed is set, an error otherwise). Modes are
// normalized, everything owned by o.
func copyTree(src, dst *os.Root, o owner, c *caps) error {
	return fs.WalkDir(src.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
			if err := c.add(p, 0); err != nil {
				return err
			}
			if err := dst.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			return chownDir(dst, p, o)
		case t.IsRegular():
			f, size, err := openRegular(src, p, c.maxBytes)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := c.add(p, size); err != nil {
				return err
			}
			info, err := f.Stat()
			if err != nil {
				return err
			}
			return writeFrom(dst, p, io.LimitReader(f, size), fileMode(info.Mode()), o)
		case t&fs.ModeSymlink != 0:
			target, err := src.Readlink(p)
			if err != nil {
				return err
			}
			if !symlinkInside(p, target) {
				return &SeedError{Path: p, Reason: fmt.Sprintf("symlink to %q leads out of the workspace", target)}
			}
			if err := c.add(p, 0); err != nil {
				return err
			}
			return symlink(dst, target, p, o)
		default:
			return &SeedError{Path: p, Reason: "only regular files, directories and symlinks may be in a seed, not " + kind(t)}
		}
	})
}

// writeFrom creates name beneath root (it must not exist as anything but a
// regular file) with r's content.
func writeFrom(root *os.Root, name string, r io.Reader, perm fs.FileMode, o owner) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", name)
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

func chownDir(root *os.Root, name string, o owner) error {
	if !o.chown {
		return nil
	}
	d, err := root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	return o.fchown(d)
}

func symlink(root *os.Root, target, name string, o owner) error {
	if err := root.Symlink(target, name); err != nil {
		return err
	}
	if o.chown {
		return root.Lchown(name, o.uid, o.gid)
	}
	return nil
}

// extractTar unpacks a tar (gzip-compressed when gz) into dst: regular
// files, directories, symlinks that stay inside, and hard links to files
// extracted before (copied). Absolute paths, "..", links out of the tree,
// devices and FIFOs are a *SeedError.
func extractTar(r io.Reader, gz bool, dst *os.Root, o owner, c *caps, name string) error {
	if gz {
		z, err := gzip.NewReader(r)
		if err != nil {
			return &SeedError{Path: name, Reason: "not a gzip file: " + err.Error()}
		}
		defer z.Close()
		r = z
	}
	tr := tar.NewReader(r)
	for {
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
		if dir := path.Dir(p); dir != "." {
			if err := mkdirAll(dst, dir, o); err != nil {
				return seedFSError(p, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := c.add(p, 0); err != nil {
				return err
			}
			if err := dst.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return seedFSError(p, err)
			}
			if err := chownDir(dst, p, o); err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeReg:
			if err := c.add(p, h.Size); err != nil {
				return err
			}
			if st, err := dst.Lstat(p); err == nil && !st.Mode().IsRegular() {
				return &SeedError{Path: p, Reason: "the tar has this path twice, first as " + kind(st.Mode())}
			}
			if err := writeFrom(dst, p, io.LimitReader(tr, h.Size), fileMode(fs.FileMode(h.Mode)), o); err != nil {
				return seedFSError(p, err)
			}
		case tar.TypeSymlink:
			if !symlinkInside(p, h.Linkname) {
				return &SeedError{Path: p, Reason: fmt.Sprintf("symlink to %q leads out of the workspace", h.Linkname)}
			}
			if err := c.add(p, 0); err != nil {
				return err
			}
			if err := symlink(dst, h.Linkname, p, o); err != nil {
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
				err = writeFrom(dst, p, f, 0o644, o)
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
