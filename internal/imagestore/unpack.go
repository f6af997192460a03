package imagestore

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Whiteouts as the OCI image spec (layer.md) writes them in a layer's tar.
const (
	// whiteoutPrefix before a name removes that name of the layers below.
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes names reserved for the format (aufs's .wh..wh.plnk
	// and friends); only opaqueMarker means something.
	whiteoutMeta = ".wh..wh."
	// opaqueMarker in a directory hides everything the layers below have in it.
	opaqueMarker = ".wh..wh..opq"
)

// Modes kept from a tar header: the permission bits and sticky. Setuid
// and setgid are dropped: nothing in a jail may gain privileges by them.
const keptModeBits = fs.ModePerm | fs.ModeSticky

// ownerDirBits are always set on a directory of the store: the store must
// be able to fill, walk and remove every tree it unpacked.
const ownerDirBits = 0o700

// jailReadable gives others (the jail's uid, which owns nothing in the
// store) what the owner may read and search: owners are not kept, and a
// program running as the image's user expects to read that user's files,
// 0600 ones included. Nothing is made writable: the jail binds the root
// read-only, and the store's files stay its own user's to change.
func jailReadable(mode fs.FileMode) fs.FileMode { return mode | (mode&0o500)>>6 }

// errTooLarge is returned when a layer's files pass the store's cap.
var errTooLarge = errors.New("larger than the store's cap")

// hardLink is a hard link of a layer whose target is not in the layer: it
// names a file of the layers below, so it is made when an image's root is
// assembled (the layer is shared by images on different bases).
type hardLink struct {
	Name   string `json:"name"`
	Target string `json:"target"`
}

// layerMeta is what unpacking a layer recorded beside its tree.
type layerMeta struct {
	DiffID string `json:"diff_id"`
	// Bytes is the disk space of the layer's tree (allocated blocks).
	Bytes int64 `json:"bytes"`
	// Whiteouts are the paths this layer removes from the layers below.
	Whiteouts []string `json:"whiteouts,omitempty"`
	// Opaque are the directories whose contents below this layer it hides.
	Opaque []string `json:"opaque,omitempty"`
	// Links are hard links to files of the layers below.
	Links []hardLink `json:"links,omitempty"`
	// Skipped counts entries not unpacked: device nodes, fifos, unknown types.
	Skipped int `json:"skipped,omitempty"`
}

// entryName is the clean relative path of a tar entry's name (or a hard
// link's target). Absolute paths and any ".." are refused: a layer names
// files of its own tree, never a way out of it.
func entryName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "" || n == "." || n == "./" {
		return ".", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("absolute path %q", name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q leaves the layer", name)
		}
	}
	return path.Clean(n), nil
}

// unpackLayer unpacks the uncompressed layer tar r into root, verifying
// that its sha256 is diffID ("sha256:<hex>"), and returns what it recorded.
// maxBytes bounds the bytes of regular files it writes.
//
// Every operation goes through root (os.Root, openat beneath it): a
// symlink of the layer is created as it is, never followed out of root;
// an entry whose path leads out of root through a symlink fails the layer.
func unpackLayer(root *os.Root, r io.Reader, diffID string, maxBytes int64) (layerMeta, error) {
	m := layerMeta{DiffID: diffID}
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(r, h))
	dirModes := map[string]fs.FileMode{}
	var charged int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("read tar: %w", err)
		}
		if charged += entryCost(hdr); charged > maxBytes {
			return m, fmt.Errorf("entry %q: layer %w (%d bytes)", hdr.Name, errTooLarge, maxBytes)
		}
		if err := unpackEntry(root, tr, hdr, &m, dirModes); err != nil {
			return m, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// The tar's end padding and anything after it count in the digest.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return m, fmt.Errorf("read tar: %w", err)
	}
	if _, err := io.Copy(h, r); err != nil {
		return m, fmt.Errorf("read layer: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); diffID != "" && got != diffID {
		return m, fmt.Errorf("content is %s, not the diff id %s the image names", got, diffID)
	}
	for name, mode := range dirModes {
		if fi, err := root.Lstat(name); err == nil && fi.IsDir() {
			if err := root.Chmod(name, jailReadable(mode|ownerDirBits)); err != nil {
				return m, fmt.Errorf("chmod %q: %w", name, err)
			}
		}
	}
	return m, nil
}

// entryBlock is what an entry is charged at least against the cap, and
// the unit its size is rounded up to: a file system block. So the charge
// is close to what the entry takes on disk, and a layer of millions of
// empty files (inodes, not bytes) is bounded too.
const entryBlock = 4096

func entryCost(hdr *tar.Header) int64 {
	regular := hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA //nolint:staticcheck // old tars still use it
	if !regular || hdr.Size <= entryBlock {
		return entryBlock
	}
	return (hdr.Size + entryBlock - 1) / entryBlock * entryBlock
}

// unpackEntry unpacks one tar entry.
func unpackEntry(root *os.Root, tr io.Reader, hdr *tar.Header, m *layerMeta, dirModes map[string]fs.FileMode) error {
	name, err := entryName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the root's own entry: the jail's / is the store's
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	switch {
	case base == opaqueMarker:
		m.Opaque = append(m.Opaque, dir)
		return mkdirAll(root, dir)
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	case strings.HasPrefix(base, whiteoutPrefix):
		gone := strings.TrimPrefix(base, whiteoutPrefix)
		if gone == "" || gone == "." || gone == ".." {
			return fmt.Errorf("whiteout of %q", gone)
		}
		m.Whiteouts = append(m.Whiteouts, path.Join(dir, gone))
		return mkdirAll(root, dir)
	}
	if err := mkdirAll(root, dir); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := root.Lstat(name); err == nil && !fi.IsDir() {
			if err := root.RemoveAll(name); err != nil {
				return err
			}
		}
		if err := root.Mkdir(name, ownerDirBits); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		dirModes[name] = hdr.FileInfo().Mode() & keptModeBits
		return nil
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars still use it
		if err := removeExisting(root, name); err != nil {
			return err
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
		if err == nil {
			err = f.Chmod(jailReadable(hdr.FileInfo().Mode().Perm()))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		// Modification times matter (Python compares a .pyc's to its .py's).
		return root.Chtimes(name, time.Time{}, hdr.ModTime)
	case tar.TypeSymlink:
		if err := removeExisting(root, name); err != nil {
			return err
		}
		// The target is kept as written: it is read inside the jail, where
		// "/" is the image's root, and never followed here.
		return root.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link: %w", err)
		}
		if target == "." {
			return fmt.Errorf("hard link to the root")
		}
		if err := removeExisting(root, name); err != nil {
			return err
		}
		fi, err := root.Lstat(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			m.Links = append(m.Links, hardLink{Name: name, Target: target})
			return nil
		case err != nil:
			return fmt.Errorf("hard link to %q: %w", target, err)
		case fi.IsDir():
			return fmt.Errorf("hard link to directory %q", target)
		}
		return root.Link(target, name)
	case tar.TypeXGlobalHeader:
		return nil
	default: // character and block devices, fifos, anything unknown
		m.Skipped++
		return nil
	}
}

// mkdirAll makes dir and its parents beneath root (mode 0755 plus the
// owner's bits), each parent a directory: a parent that is a symlink is
// followed only while it stays beneath root.
func mkdirAll(root *os.Root, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	return root.MkdirAll(dir, 0o755|ownerDirBits)
}

// removeExisting removes name (a file, a link, or a whole directory) if it
// exists: a later entry replaces an earlier one.
func removeExisting(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return root.RemoveAll(name)
	}
	return root.Remove(name)
}

// diskUsage is the disk space of the tree at name beneath root: the blocks
// of each inode counted once, and only those for which count says yes.
func diskUsage(root *os.Root, name string, count func(fs.FileInfo) bool) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := fs.WalkDir(root.FS(), name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] || !count(fi) {
			return nil
		}
		seen[st.Ino] = true
		total += st.Blocks * 512
		return nil
	})
	return total, err
}
