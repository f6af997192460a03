package imagestore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// An image's root is assembled from its unpacked layers with hard links:
// its directories are its own, every other entry (file, symlink) is a hard
// link to the inode in the layer that last wrote it. One directory to bind
// read-only as a jail's root, under nsjail and bubblewrap alike, with no
// overlay mount, no whiteout devices or privileged xattrs, and no limit
// on the number of layers; files cost nothing per image (only the
// directories do), so images on one base share the base's bytes.
//
// Layers are merged bottom first, as overlayfs merges them: a layer's
// whiteouts and opaque directories remove what the layers below put
// there, then its entries are added; a directory merges with a directory
// below, anything else replaces what was below.

// assemble builds in store, at dst, the root of the image whose layers
// (bottom first) are at layerDirs, with their metas.
func assemble(store *os.Root, dst string, layerDirs []string, metas []layerMeta) error {
	if err := store.Mkdir(dst, ownerDirBits); err != nil {
		return err
	}
	dirModes := map[string]fs.FileMode{}
	for i, src := range layerDirs {
		m := metas[i]
		for _, d := range m.Opaque {
			if err := removeBelow(store, dst, d, true); err != nil {
				return fmt.Errorf("layer %s: opaque %q: %w", m.DiffID, d, err)
			}
		}
		for _, w := range m.Whiteouts {
			if err := removeBelow(store, dst, w, false); err != nil {
				return fmt.Errorf("layer %s: whiteout %q: %w", m.DiffID, w, err)
			}
		}
		if err := mergeLayer(store, src, dst, dirModes); err != nil {
			return fmt.Errorf("layer %s: %w", m.DiffID, err)
		}
		for _, l := range m.Links {
			target := path.Join(dst, l.Target)
			fi, err := lstatBeneath(store, dst, l.Target)
			if err != nil || fi.IsDir() {
				return fmt.Errorf("layer %s: hard link %q to %q: no such file below", m.DiffID, l.Name, l.Target)
			}
			name := path.Join(dst, l.Name)
			if err := removeExisting(store, name); err != nil {
				return err
			}
			if err := link(store, target, name); err != nil {
				return fmt.Errorf("layer %s: hard link %q: %w", m.DiffID, l.Name, err)
			}
		}
	}
	for name, mode := range dirModes {
		if fi, err := store.Lstat(name); err == nil && fi.IsDir() {
			if err := store.Chmod(name, jailReadable(mode|ownerDirBits)); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeBelow removes rel beneath dst (only its contents when contents),
// if it is there through directories only: beneath a symlink it is not
// what the layer's path names (the layer replaces that symlink).
func removeBelow(store *os.Root, dst, rel string, contents bool) error {
	fi, err := lstatBeneath(store, dst, rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	name := path.Join(dst, rel)
	if !contents {
		return removeExisting(store, name)
	}
	if !fi.IsDir() {
		return nil // the layer's own directory replaces it
	}
	entries, err := fs.ReadDir(store.FS(), name)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := store.RemoveAll(path.Join(name, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// lstatBeneath is Lstat of rel beneath dst, refusing to pass through a
// parent that is not a directory (fs.ErrNotExist then).
func lstatBeneath(store *os.Root, dst, rel string) (fs.FileInfo, error) {
	p := dst
	parts := strings.Split(rel, "/")
	for i, part := range parts {
		p = path.Join(p, part)
		fi, err := store.Lstat(p)
		if err != nil {
			return nil, err
		}
		if i == len(parts)-1 {
			return fi, nil
		}
		if !fi.IsDir() {
			return nil, fs.ErrNotExist
		}
	}
	return nil, fs.ErrNotExist
}

// mergeLayer adds the entries of the layer tree at src to the root at dst.
func mergeLayer(store *os.Root, src, dst string, dirModes map[string]fs.FileMode) error {
	return fs.WalkDir(store.FS(), src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == src {
			return nil
		}
		rel := strings.TrimPrefix(p, src+"/")
		to := path.Join(dst, rel)
		have, err := store.Lstat(to)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		exists := err == nil
		if d.IsDir() {
			if exists && !have.IsDir() {
				if err := store.Remove(to); err != nil {
					return err
				}
				exists = false
			}
			if !exists {
				if err := store.Mkdir(to, ownerDirBits); err != nil {
					return err
				}
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			dirModes[to] = fi.Mode() & keptModeBits
			return nil
		}
		if exists {
			if err := removeExisting(store, to); err != nil {
				return err
			}
		}
		return link(store, p, to)
	})
}

// link hard-links oldname to newname beneath store. When the file has as
// many links as the file system allows (ext4: 65000), newname gets a copy.
func link(store *os.Root, oldname, newname string) error {
	err := store.Link(oldname, newname)
	if !errors.Is(err, syscall.EMLINK) {
		return err
	}
	fi, err := store.Lstat(oldname)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		target, err := store.Readlink(oldname)
		if err != nil {
			return err
		}
		return store.Symlink(target, newname)
	}
	in, err := store.Open(oldname)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := store.OpenFile(newname, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return store.Chtimes(newname, fi.ModTime(), fi.ModTime())
}
