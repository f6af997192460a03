package imagestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"io/fs"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInUse is returned when removing an image a jail is using.
var ErrInUse = errors.New("in use")

// removeImage removes image im if no one uses it, and the names pointing
// to it. The caller holds the store lock exclusive.
func (s *Store) removeImage(st *state, im storedImage) error {
	l, ok, err := tryLock(filepath.Join(s.dir, imagePath(im.hex), useLockFile), unix.LOCK_EX)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("image %s: %w", im.ID, ErrInUse)
	}
	defer l.unlock()
	for _, r := range st.refs {
		if r.Image == im.ID {
			if err := s.root.Remove(refPath(r.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	// The record goes first: a removal cut short leaves no half image that
	// looks whole; GC removes the rest.
	if err := s.root.Remove(path.Join(imagePath(im.hex), imageFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.root.RemoveAll(imagePath(im.hex)); err != nil {
		return err
	}
	s.log.Info("image removed", "image", im.ID, "names", st.names[im.ID])
	return nil
}

// removeUnusedLayers removes the layers no image of st uses, and returns
// how many and their bytes.
func (s *Store) removeUnusedLayers(st *state) (int, int64, error) {
	used := map[string]bool{}
	for _, im := range st.images {
		for _, l := range im.Layers {
			used[l] = true
		}
	}
	entries, err := fs.ReadDir(s.root.FS(), layersDir)
	if err != nil {
		return 0, 0, err
	}
	var n int
	var freed int64
	for _, e := range entries {
		id := "sha256:" + e.Name()
		if used[id] {
			continue
		}
		if err := s.root.Remove(path.Join(layerPath(e.Name()), layerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, freed, err
		}
		if err := s.root.RemoveAll(layerPath(e.Name())); err != nil {
			return n, freed, err
		}
		n++
		freed += st.layers[id]
		delete(st.layers, id)
	}
	return n, freed, nil
}

// Remove removes the name r; when r is an id, or no other name points to
// its image, the image too (and the layers no other image uses).
func (s *Store) Remove(ctx context.Context, r string) error {
	sl, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer sl.unlock()
	id, err := s.resolve(r)
	if err != nil {
		return err
	}
	st, err := s.state()
	if err != nil {
		return err
	}
	var im storedImage
	for _, x := range st.images {
		if x.ID == id {
			im = x
		}
	}
	byName := !strings.HasPrefix(id, "sha256:"+strings.TrimPrefix(r, "sha256:"))
	if byName {
		n, _ := NormalizeName(r)
		if len(st.names[id]) > 1 {
			return s.root.Remove(refPath(n))
		}
	}
	if err := s.removeImage(st, im); err != nil {
		return err
	}
	st.images = without(st.images, im.ID)
	_, _, err = s.removeUnusedLayers(st)
	return err
}

func without(imgs []storedImage, id string) []storedImage {
	var out []storedImage
	for _, im := range imgs {
		if im.ID != id {
			out = append(out, im)
		}
	}
	return out
}

// GCReport is what GC removed.
type GCReport struct {
	// Images removed: no name pointed to them, or evicted to fit the cap.
	Images []string
	Layers int
	// Bytes freed.
	Bytes int64
	// Usage after.
	Usage Usage
}

// GC removes what interrupted work left (temporary directories, names of
// missing images), images no name points to, layers no image uses, and
// then the least recently used images until the store fits its cap. It
// waits for adds and uses in progress to finish.
func (s *Store) GC(ctx context.Context) (GCReport, error) {
	sl, err := s.lockStore(ctx, unix.LOCK_EX)
	if err != nil {
		return GCReport{}, err
	}
	defer sl.unlock()
	var rep GCReport
	// Everything in tmp/ and locks/ belongs to an add, and adds hold the
	// store lock.
	for _, d := range []string{tmpDir, locksDir} {
		entries, err := fs.ReadDir(s.root.FS(), d)
		if err != nil {
			return rep, err
		}
		for _, e := range entries {
			if err := s.root.RemoveAll(path.Join(d, e.Name())); err != nil {
				return rep, err
			}
		}
	}
	st, err := s.state()
	if err != nil {
		return rep, err
	}
	// Image directories without a record (a removal cut short).
	dirs, err := fs.ReadDir(s.root.FS(), imagesDir)
	if err != nil {
		return rep, err
	}
	for _, d := range dirs {
		if _, err := s.root.Stat(path.Join(imagePath(d.Name()), imageFile)); errors.Is(err, fs.ErrNotExist) {
			if err := s.root.RemoveAll(imagePath(d.Name())); err != nil {
				return rep, err
			}
		}
	}
	present := map[string]bool{}
	for _, im := range st.images {
		present[im.ID] = true
	}
	for _, r := range st.refs {
		if !present[r.Image] {
			if err := s.root.Remove(refPath(r.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return rep, err
			}
		}
	}
	for _, im := range st.images {
		if len(st.names[im.ID]) > 0 {
			continue
		}
		if _, err := s.drop(st, im, &rep); err != nil {
			return rep, err
		}
	}
	n, freed, err := s.removeUnusedLayers(st)
	rep.Layers += n
	rep.Bytes += freed
	if err != nil {
		return rep, err
	}
	ev, err := s.evictLocked(st)
	rep.Images = append(rep.Images, ev.Images...)
	rep.Layers += ev.Layers
	rep.Bytes += ev.Bytes
	rep.Usage = st.usage(s.maxBytes)
	return rep, err
}

// drop removes im from the store and from st, counting it in rep; false
// (and no error) when a jail is using it.
func (s *Store) drop(st *state, im storedImage, rep *GCReport) (bool, error) {
	if err := s.removeImage(st, im); errors.Is(err, ErrInUse) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	rep.Images = append(rep.Images, im.ID)
	rep.Bytes += im.RootBytes
	st.images = without(st.images, im.ID)
	return true, nil
}

// evict removes least recently used images until the store fits its cap,
// sparing keep (the images just added). It runs only if it can take the
// store lock at once: if others are adding or using images, the next add
// (or GC) evicts.
func (s *Store) evict(keep ...string) {
	sl, ok, err := tryLock(filepath.Join(s.dir, storeLockFile), unix.LOCK_EX)
	if err != nil || !ok {
		return
	}
	defer sl.unlock()
	st, err := s.state()
	if err == nil {
		_, err = s.evictLocked(st, keep...)
	}
	if err != nil {
		s.log.Warn("image store eviction", "err", err)
	}
}

// evictLocked is evict with the store lock held; st is updated.
func (s *Store) evictLocked(st *state, keep ...string) (GCReport, error) {
	var rep GCReport
	if st.usage(s.maxBytes).Bytes <= s.maxBytes {
		return rep, nil
	}
	n, freed, err := s.removeUnusedLayers(st)
	rep.Layers, rep.Bytes = n, freed
	if err != nil {
		return rep, err
	}
	lru := append([]storedImage(nil), st.images...)
	sort.Slice(lru, func(i, j int) bool { return lru[i].used.Before(lru[j].used) })
	for _, im := range lru {
		if st.usage(s.maxBytes).Bytes <= s.maxBytes {
			break
		}
		if slices.Contains(keep, im.ID) {
			continue
		}
		if dropped, err := s.drop(st, im, &rep); err != nil {
			return rep, err
		} else if !dropped {
			continue
		}
		n, freed, err := s.removeUnusedLayers(st)
		rep.Layers += n
		rep.Bytes += freed
		if err != nil {
			return rep, err
		}
	}
	if u := st.usage(s.maxBytes); u.Bytes > s.maxBytes {
		s.log.Warn("image store over its cap: the rest is in use or just added", "bytes", u.Bytes, "max_bytes", s.maxBytes)
	}
	if len(rep.Images) > 0 {
		s.log.Info("image store evicted", "images", rep.Images, "layers", rep.Layers, "bytes", rep.Bytes)
	}
	return rep, nil
}

// archivePrefix marks an environment read from an archive under
// Config.ArchiveDir ("archive:NAME").
const archivePrefix = core.EnvironmentArchivePrefix

// Get opens the image a task's environment names, obtaining it first when
// the store does not have it: "archive:NAME" is imported from NAME under
// the archive directory (and named by it), anything else is a reference
// pulled from its registry (a name present in the store is used as it
// is: pull again, or remove it, to refresh a tag).
func (s *Store) Get(ctx context.Context, env string) (*Handle, error) {
	ref := env
	if rel, ok := strings.CutPrefix(env, archivePrefix); ok {
		ref = archiveName(rel)
	}
	h, err := s.Use(ctx, ref)
	if !errors.Is(err, ErrNotFound) {
		return h, err
	}
	if rel, ok := strings.CutPrefix(env, archivePrefix); ok {
		p, err := s.archivePath(rel)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoSuchImage, err)
		}
		if _, err := s.Import(ctx, p, ref); err != nil {
			return nil, err
		}
	} else if _, err := s.Pull(ctx, env); err != nil {
		if registryMissing(err) {
			return nil, fmt.Errorf("%w: %w", ErrNoSuchImage, err)
		}
		return nil, err
	}
	return s.Use(ctx, ref)
}

// ErrNoSuchImage is returned by Get when the environment does not exist:
// no such archive, or the registry answers that it has no such image. Any
// other failure (the registry unreachable, the disk full) may pass.
var ErrNoSuchImage = errors.New("no such image")

// registryMissing reports whether a pull failed because the registry has
// no such repository or manifest.
func registryMissing(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// archiveName is the name an archive of the archive directory is kept by.
// Its path, made a valid repository name, with a hash of the path so that
// "a.tar" and "a-tar" differ.
func archiveName(rel string) string {
	clean := strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(rel)), "-")
	sum := sha256.Sum256([]byte(rel))
	return "localhost/archive/" + clean + "-" + hex.EncodeToString(sum[:4])
}

// archivePath is the path of archive rel under the archive directory,
// refused if it leads out of it (by "..", or a symlink).
func (s *Store) archivePath(rel string) (string, error) {
	if s.cfg.ArchiveDir == "" {
		return "", fmt.Errorf("archive %q: no archive directory is set (SANDBOX_IMAGE_ARCHIVES)", rel)
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("archive %q: not a path beneath the archive directory", rel)
	}
	base, err := filepath.EvalSymlinks(s.cfg.ArchiveDir)
	if err != nil {
		return "", fmt.Errorf("archive directory: %w", err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(base, rel))
	if err != nil {
		return "", fmt.Errorf("archive %q: %w", rel, err)
	}
	if r, err := filepath.Rel(base, p); err != nil || !filepath.IsLocal(r) {
		return "", fmt.Errorf("archive %q: leads out of the archive directory", rel)
	}
	return p, nil
}
