package imagestore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

// Result is what adding an image did.
type Result struct {
	Image Image
	// Names are the names now pointing to it.
	Names []string
	// Present: the image was already unpacked (nothing was read).
	Present bool
	// LayersUnpacked were read and unpacked now; LayersShared were already
	// in the store (another image has them, or another process unpacked
	// them meanwhile).
	LayersUnpacked, LayersShared int
	// BytesAdded is the disk space the store grew by for it.
	BytesAdded int64
}

// platform is the platform pulled from an image index: this machine's.
var platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// Pull obtains the image ref names from its registry (unless it is in the
// store already by that digest) and names it ref.
func (s *Store) Pull(ctx context.Context, r string) (*Result, error) {
	ref, err := name.ParseReference(r, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("pull %q: %w", r, err)
	}
	reg := ref.Context().Registry
	if s.insecure(reg.RegistryStr()) {
		if ref, err = name.ParseReference(r, name.Insecure); err != nil {
			return nil, fmt.Errorf("pull %q: %w", r, err)
		}
	} else if reg.Scheme() == "http" {
		return nil, fmt.Errorf("pull %q: registry %s would be reached over plain HTTP; list it in SANDBOX_INSECURE_REGISTRIES to allow that", r, reg.RegistryStr())
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(s.cfg.Keychain), remote.WithPlatform(platform))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.Name(), err)
	}
	res, err := s.add(ctx, img, []string{ref.Name()}, ref.Name())
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref.Name(), err)
	}
	return res, nil
}

func (s *Store) insecure(registry string) bool {
	for _, r := range s.cfg.InsecureRegistries {
		if r == registry {
			return true
		}
	}
	return false
}

// Import adds the images of an archive: a docker save or podman save tar,
// an OCI image layout directory, or a tar of one (podman save --format
// oci-archive). Each image is named by the archive's own tags (RepoTags,
// or the layout's image name annotations); as names it is given the
// archive's only image is named (and the archive's names are ignored).
func (s *Store) Import(ctx context.Context, archive string, names ...string) ([]*Result, error) {
	// The store lock is held shared from the start: an OCI archive is
	// unpacked in tmp/, which GC (exclusive) clears.
	sl, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	out, err := s.importLocked(ctx, archive, names)
	sl.unlock()
	var keep []string
	for _, r := range out {
		keep = append(keep, r.Image.ID)
	}
	if len(keep) > 0 {
		s.evict(keep...)
	}
	return out, err
}

func (s *Store) importLocked(ctx context.Context, archive string, names []string) ([]*Result, error) {
	imgs, cleanup, err := s.readArchive(archive)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", archive, err)
	}
	defer cleanup()
	if len(names) > 0 {
		if len(imgs) != 1 {
			return nil, fmt.Errorf("import %s: %d images in the archive, so names cannot be given", archive, len(imgs))
		}
		imgs[0].names = names
	}
	var out []*Result
	for _, ai := range imgs {
		if len(ai.names) == 0 {
			return out, fmt.Errorf("import %s: an image without a name in the archive: give one", archive)
		}
		var norm []string
		for _, n := range ai.names {
			nn, err := NormalizeName(n)
			if err != nil {
				return out, fmt.Errorf("import %s: %w", archive, err)
			}
			norm = append(norm, nn)
		}
		res, err := s.addLocked(ctx, ai.img, norm, archive)
		if err != nil {
			return out, fmt.Errorf("import %s (%s): %w", archive, strings.Join(norm, ", "), err)
		}
		out = append(out, res)
	}
	return out, nil
}

// archiveImage is an image read from an archive, with its names there.
type archiveImage struct {
	img   v1.Image
	names []string
}

// Name annotations of OCI layouts: containerd's full name, then the spec's
// (a full reference, or only a tag, which is no name here).
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// readArchive reads the images of the archive at p; cleanup removes what
// reading it left in tmp/, once they are added. The caller holds the
// store lock.
func (s *Store) readArchive(p string) (imgs []archiveImage, cleanup func(), err error) {
	cleanup = func() {}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, cleanup, err
	}
	if fi.IsDir() {
		imgs, err = readLayout(p)
		return imgs, cleanup, err
	}
	imgs, tmp, err := s.readArchiveFile(p)
	if tmp != "" {
		cleanup = func() { s.root.RemoveAll(tmp) }
	}
	if err != nil {
		cleanup()
	}
	return imgs, cleanup, err
}

// readArchiveFile reads an archive file, and returns the directory in tmp/
// it unpacked an OCI archive to.
func (s *Store) readArchiveFile(p string) ([]archiveImage, string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	has, err := tarHas(p, "manifest.json", "index.json")
	if err != nil {
		return nil, "", err
	}
	switch {
	case has["manifest.json"]: // docker save, podman save (docker-archive)
		m, err := tarball.LoadManifest(opener)
		if err != nil {
			return nil, "", err
		}
		if len(m) == 1 {
			img, err := tarball.Image(opener, nil)
			if err != nil {
				return nil, "", err
			}
			return []archiveImage{{img, m[0].RepoTags}}, "", nil
		}
		var out []archiveImage
		for _, d := range m {
			if len(d.RepoTags) == 0 {
				return nil, "", fmt.Errorf("%d images and one without a tag", len(m))
			}
			tag, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, "", err
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, "", err
			}
			out = append(out, archiveImage{img, d.RepoTags})
		}
		return out, "", nil
	case has["index.json"]: // an OCI layout in a tar
		dir, err := s.mkdirTemp("oci-archive-")
		if err != nil {
			return nil, "", err
		}
		sub, err := s.root.OpenRoot(dir)
		if err != nil {
			return nil, dir, err
		}
		defer sub.Close()
		f, err := os.Open(p)
		if err != nil {
			return nil, dir, err
		}
		defer f.Close()
		if _, err := unpackLayer(sub, f, "", s.maxBytes); err != nil {
			return nil, dir, fmt.Errorf("OCI archive: %w", err)
		}
		// A layout's blobs are read by path: a symlink among them would
		// read a file of the host.
		if err := onlyFilesAndDirs(sub); err != nil {
			return nil, dir, fmt.Errorf("OCI archive: %w", err)
		}
		imgs, err := readLayout(filepath.Join(s.dir, dir))
		return imgs, dir, err
	default:
		return nil, "", errors.New("neither a docker archive (manifest.json) nor an OCI layout (index.json)")
	}
}

// tarHas reports which of names are entries of the tar at p.
func tarHas(p string, names ...string) (map[string]bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	has := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return has, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not an image archive: %w", err)
		}
		for _, n := range names {
			if path.Clean(hdr.Name) == n {
				has[n] = true
			}
		}
	}
}

// readLayout reads the images of an OCI layout directory: each manifest of
// its index, or of a nested index the one for this platform.
func readLayout(dir string) ([]archiveImage, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []archiveImage
	for _, d := range im.Manifests {
		var names []string
		if n := d.Annotations[annotationContainerdName]; n != "" {
			names = append(names, n)
		} else if n := d.Annotations[annotationRefName]; n != "" && strings.ContainsAny(n, "/:") {
			names = append(names, n)
		}
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			var child v1.ImageIndex
			if child, err = idx.ImageIndex(d.Digest); err == nil {
				img, err = imageFor(child)
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		out = append(out, archiveImage{img, names})
	}
	if len(out) == 0 {
		return nil, errors.New("no image in the layout's index")
	}
	return out, nil
}

// imageFor picks this platform's image of an index.
func imageFor(idx v1.ImageIndex) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(platform) && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s/%s", platform.OS, platform.Architecture)
}

// add unpacks img (unless it is there) and points names to it. The store
// lock is held shared throughout, so removals wait; layers and images are
// each unpacked under their own lock, so concurrent adds of one image
// (from any process) unpack it once.
func (s *Store) add(ctx context.Context, img v1.Image, names []string, source string) (*Result, error) {
	sl, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	res, err := s.addLocked(ctx, img, names, source)
	sl.unlock()
	if err != nil {
		return nil, err
	}
	s.evict(res.Image.ID)
	return res, nil
}

func (s *Store) addLocked(ctx context.Context, img v1.Image, names []string, source string) (*Result, error) {
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	id := cfgName.String()
	h, err := idHex(id)
	if err != nil {
		return nil, err
	}
	res := &Result{Names: names}
	if res.Image, err = s.image(h); err == nil {
		res.Present = true
	} else {
		if res.Image, err = s.unpackImage(ctx, img, id, source, res); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		if err := s.setRef(n, id); err != nil {
			return nil, fmt.Errorf("name %s: %w", n, err)
		}
	}
	return res, s.touch(h)
}

// unpackImage unpacks img's layers that are missing and assembles its root.
func (s *Store) unpackImage(ctx context.Context, img v1.Image, id, source string, res *Result) (Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("config: %w", err)
	}
	if cf.OS != platform.OS || cf.Architecture != platform.Architecture {
		return Image{}, fmt.Errorf("image for %s/%s: this machine runs %s/%s", cf.OS, cf.Architecture, platform.OS, platform.Architecture)
	}
	layers, err := img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("layers: %w", err)
	}
	rec := Image{
		ID: id, Source: source, Platform: cf.OS + "/" + cf.Architecture, Added: time.Now().UTC(),
		Config: RunConfig{Env: cf.Config.Env, WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd},
	}
	if d, err := img.Digest(); err == nil {
		rec.Digest = d.String()
	}
	var dirs []string
	var metas []layerMeta
	var imageBytes int64 // of its layers so far: an image larger than the cap is refused
	for _, l := range layers {
		diffID, err := l.DiffID()
		if err != nil {
			return Image{}, fmt.Errorf("layer diff id: %w", err)
		}
		m, unpacked, err := s.ensureLayer(ctx, l, diffID.String(), s.maxBytes-imageBytes)
		if err != nil {
			return Image{}, err
		}
		imageBytes += m.Bytes
		if unpacked {
			res.LayersUnpacked++
			res.BytesAdded += m.Bytes
		} else {
			res.LayersShared++
		}
		lh, _ := idHex(m.DiffID)
		rec.Layers = append(rec.Layers, m.DiffID)
		dirs = append(dirs, path.Join(layerPath(lh), treeDir))
		metas = append(metas, m)
	}

	h, _ := idHex(id)
	il, err := lock(ctx, filepath.Join(s.dir, locksDir, "image-"+h), unix.LOCK_EX)
	if err != nil {
		return Image{}, err
	}
	defer il.unlock()
	if done, err := s.image(h); err == nil {
		return done, nil // another process assembled it meanwhile
	}
	tmp, err := s.mkdirTemp("image-")
	if err != nil {
		return Image{}, err
	}
	defer s.root.RemoveAll(tmp)
	if err := assemble(s.root, path.Join(tmp, rootDir), dirs, metas); err != nil {
		return Image{}, fmt.Errorf("assemble root: %w", err)
	}
	// The jail's uid (not the store's) must reach the root and search it.
	for _, d := range []string{tmp, path.Join(tmp, rootDir)} {
		if err := s.root.Chmod(d, searchableDirMode); err != nil {
			return Image{}, err
		}
	}
	if rec.RootBytes, err = diskUsage(s.root, path.Join(tmp, rootDir), fs.FileInfo.IsDir); err != nil {
		return Image{}, fmt.Errorf("assemble root: %w", err)
	}
	res.BytesAdded += rec.RootBytes
	if err := s.writeJSON(path.Join(tmp, imageFile), rec); err != nil {
		return Image{}, err
	}
	if err := s.root.WriteFile(path.Join(tmp, usedFile), nil, 0o644); err != nil {
		return Image{}, err
	}
	// A removal cut short may have left the directory without its record.
	if err := s.root.RemoveAll(imagePath(h)); err != nil {
		return Image{}, err
	}
	if err := s.root.Rename(tmp, imagePath(h)); err != nil {
		return Image{}, fmt.Errorf("install image: %w", err)
	}
	s.log.Info("image unpacked", "image", id, "source", source, "layers", len(rec.Layers), "root_bytes", rec.RootBytes)
	return rec, nil
}

// ensureLayer unpacks layer l (diff id diffID) unless it is in the store,
// and returns its meta and whether it unpacked it. Its files may take
// maxBytes.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffID string, maxBytes int64) (layerMeta, bool, error) {
	h, err := idHex(diffID)
	if err != nil {
		return layerMeta{}, false, fmt.Errorf("layer: %w", err)
	}
	var m layerMeta
	metaPath := path.Join(layerPath(h), layerFile)
	if err := s.readJSON(metaPath, &m); err == nil {
		return m, false, nil
	}
	ll, err := lock(ctx, filepath.Join(s.dir, locksDir, "layer-"+h), unix.LOCK_EX)
	if err != nil {
		return m, false, err
	}
	defer ll.unlock()
	if err := s.readJSON(metaPath, &m); err == nil {
		return m, false, nil // another process unpacked it meanwhile
	}
	tmp, err := s.mkdirTemp("layer-")
	if err != nil {
		return m, false, err
	}
	defer s.root.RemoveAll(tmp)
	if err := s.root.Mkdir(path.Join(tmp, treeDir), ownerDirBits); err != nil {
		return m, false, err
	}
	tree, err := s.root.OpenRoot(path.Join(tmp, treeDir))
	if err != nil {
		return m, false, err
	}
	defer tree.Close()
	rc, err := l.Uncompressed()
	if err != nil {
		return m, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	m, err = unpackLayer(tree, &ctxReader{ctx, rc}, diffID, maxBytes)
	rc.Close()
	if err != nil {
		return m, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if m.Bytes, err = diskUsage(s.root, path.Join(tmp, treeDir), func(fs.FileInfo) bool { return true }); err != nil {
		return m, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if err := s.writeJSON(path.Join(tmp, layerFile), m); err != nil {
		return m, false, err
	}
	// A removal cut short may have left the directory without its record.
	if err := s.root.RemoveAll(layerPath(h)); err != nil {
		return m, false, err
	}
	if err := s.root.Rename(tmp, layerPath(h)); err != nil {
		return m, false, fmt.Errorf("install layer %s: %w", diffID, err)
	}
	return m, true, nil
}

// ctxReader stops a read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// onlyFilesAndDirs refuses a tree beneath root holding anything but
// regular files and directories.
func onlyFilesAndDirs(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		return nil
	})
}
