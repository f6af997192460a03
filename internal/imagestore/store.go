// Package imagestore obtains OCI images without a container engine and
// keeps them unpacked on disk, ready to be a jail's root.
//
// An image comes from a registry (by reference, with the credentials of
// the usual docker config) or from an image archive (docker save, podman
// save, an OCI layout directory or tar). Its layers are unpacked once each,
// by diff id, and shared by every image that has them; an image's root is
// a directory assembled from its layers with hard links (see assemble.go).
// The store has a size cap and evicts the least recently used images.
//
// Several processes may share a store. Layout beneath Config.Dir:
//
//	store.lock            flock: shared while adding or using, exclusive to remove
//	layers/<hex>/fs/      a layer's tree, by its diff id's hex
//	layers/<hex>/layer.json  what its unpacking recorded (layerMeta)
//	images/<hex>/root/    an image's root, by its config digest's hex (its id)
//	images/<hex>/image.json  the image's record (Image)
//	images/<hex>/used     its mtime is the image's last use (for eviction)
//	images/<hex>/lock     flock: shared while a jail uses the root
//	refs/<hash>.json      a name and the image id it points to
//	locks/                one lock file per layer or image being unpacked
//	tmp/                  unpacks in progress; renamed into place when done
package imagestore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"
)

// DefaultMaxGB is the store's cap when Config.MaxGB is zero (and
// SANDBOX_IMAGE_STORE_GB's envDefault: a test keeps them equal).
const DefaultMaxGB = 20

// Config configures a Store. Its env tags are the settings of adpctl and
// the sandbox runtime (docs/environments.md); the defaults are here.
type Config struct {
	// Dir is the store's directory. Default: the user's cache directory
	// ($XDG_CACHE_HOME or ~/.cache) + /adp/images. It must be on one file
	// system (roots are hard links into layers).
	Dir string `env:"SANDBOX_IMAGE_STORE"`
	// MaxGB caps the store's disk use in GiB (2^30 bytes). Default 20.
	// After an image is added, the least recently used images that no jail
	// is using are removed until the store fits; an image larger than the
	// cap on its own is refused while unpacking.
	MaxGB float64 `env:"SANDBOX_IMAGE_STORE_GB" envDefault:"20" valid:">0"`
	// ArchiveDir is where tasks' image archives are read from
	// ("archive:NAME" in Get). Empty: tasks cannot name archives.
	ArchiveDir string `env:"SANDBOX_IMAGE_ARCHIVES"`
	// InsecureRegistries are registries (host[:port]) that may be reached
	// over plain HTTP. Any other registry that go-containerregistry would
	// reach over HTTP (localhost, loopback and private addresses) is refused.
	InsecureRegistries []string `env:"SANDBOX_INSECURE_REGISTRIES"`
	// Keychain gives registry credentials. Default authn.DefaultKeychain:
	// $DOCKER_CONFIG/config.json or ~/.docker/config.json (and podman's
	// auth.json), credential helpers included.
	Keychain authn.Keychain
	// Log receives what the store does. Default slog.Default().
	Log *slog.Logger
}

// Paths beneath the store's directory (see the package comment).
const (
	storeLockFile = "store.lock"
	layersDir     = "layers"
	imagesDir     = "images"
	refsDir       = "refs"
	locksDir      = "locks"
	tmpDir        = "tmp"
	treeDir       = "fs"
	layerFile     = "layer.json"
	rootDir       = "root"
	imageFile     = "image.json"
	usedFile      = "used"
	useLockFile   = "lock"
)

// searchableDirMode is the mode of the store's directories on the way to
// an image's root, and of the root itself: a jail runs as another uid.
const searchableDirMode = 0o755

// Store is an image store on disk. Its methods are safe for concurrent use,
// also by several processes sharing the directory.
type Store struct {
	dir      string
	root     *os.Root
	maxBytes int64
	cfg      Config
	log      *slog.Logger
}

// Open checks cfg and opens (creating if need be) the store it names.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("image store: no directory set and no cache directory: %w", err)
		}
		cfg.Dir = filepath.Join(cache, "adp", "images")
	}
	if cfg.MaxGB == 0 {
		cfg.MaxGB = DefaultMaxGB
	}
	if cfg.MaxGB < 0 || math.IsNaN(cfg.MaxGB) || math.IsInf(cfg.MaxGB, 0) {
		return nil, fmt.Errorf("image store: cap %v GB: must be a positive number", cfg.MaxGB)
	}
	for _, r := range cfg.InsecureRegistries {
		if _, err := name.NewRegistry(r); err != nil {
			return nil, fmt.Errorf("image store: insecure registry %q: %w", r, err)
		}
	}
	if cfg.ArchiveDir != "" {
		if fi, err := os.Stat(cfg.ArchiveDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("image store: archive directory %q: not a directory", cfg.ArchiveDir)
		}
	}
	if cfg.Keychain == nil {
		cfg.Keychain = authn.DefaultKeychain
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("image store %q: %w", cfg.Dir, err)
	}
	for _, d := range []string{layersDir, imagesDir, refsDir, locksDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), searchableDirMode); err != nil {
			return nil, fmt.Errorf("image store %q: %w", dir, err)
		}
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return nil, fmt.Errorf("image store %q: not writable: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("image store %q: %w", dir, err)
	}
	return &Store{dir: dir, root: root, maxBytes: int64(cfg.MaxGB * (1 << 30)), cfg: cfg, log: cfg.Log}, nil
}

// Close releases the store's directory handle.
func (s *Store) Close() error { return s.root.Close() }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// MaxBytes is the store's cap in bytes.
func (s *Store) MaxBytes() int64 { return s.maxBytes }

// RunConfig is what an image's config says about running it: the jail
// starts its commands with these.
type RunConfig struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// Image is the record of an unpacked image.
type Image struct {
	// ID is the image's config digest ("sha256:..."), as docker shows it.
	ID string `json:"id"`
	// Digest is the manifest's digest, when the image came with one.
	Digest string `json:"digest,omitempty"`
	// Source is where it came from: a reference or an archive's path.
	Source string `json:"source"`
	// Layers are the diff ids of its layers, bottom first.
	Layers []string `json:"layers"`
	// Platform is the config's os/architecture.
	Platform string    `json:"platform"`
	Config   RunConfig `json:"config"`
	// RootBytes is the disk space of the root's own entries (directories);
	// its files are the layers'.
	RootBytes int64     `json:"root_bytes"`
	Added     time.Time `json:"added"`
}

// Entry is an image as List shows it.
type Entry struct {
	Image
	// Names are the names pointing to it.
	Names []string
	// Bytes is its root's bytes and its layers' (shared ones included).
	Bytes    int64
	LastUsed time.Time
	InUse    bool
}

// Usage is the disk space of the whole store.
type Usage struct {
	Images, Layers int
	// Bytes is the sum of every layer (once) and every image root.
	Bytes    int64
	MaxBytes int64
}

// idHex is the hex of an id "sha256:<hex>", checked.
func idHex(id string) (string, error) {
	h, ok := strings.CutPrefix(id, "sha256:")
	if !ok || len(h) != 64 {
		return "", fmt.Errorf("%q is not a sha256 digest", id)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("%q is not a sha256 digest", id)
	}
	return h, nil
}

func layerPath(hex string) string { return path.Join(layersDir, hex) }
func imagePath(hex string) string { return path.Join(imagesDir, hex) }

// RootPath is the absolute path of an image's root (id "sha256:...").
func (s *Store) RootPath(id string) (string, error) {
	h, err := idHex(id)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, imagePath(h), rootDir), nil
}

// lockStore takes the store lock (unix.LOCK_SH or unix.LOCK_EX).
func (s *Store) lockStore(ctx context.Context, how int) (*fileLock, error) {
	return lock(ctx, filepath.Join(s.dir, storeLockFile), how)
}

// readJSON reads the JSON file name beneath the store into v.
func (s *Store) readJSON(name string, v any) error {
	b, err := s.root.ReadFile(name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// writeJSON writes v to name beneath the store, atomically (a temporary
// file renamed over it).
func (s *Store) writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path.Join(tmpDir, fmt.Sprintf("%s.%d.%d", path.Base(name), os.Getpid(), time.Now().UnixNano()))
	if err := s.root.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := s.root.Rename(tmp, name); err != nil {
		s.root.Remove(tmp)
		return err
	}
	return nil
}

// image reads the record of the image with hex h.
func (s *Store) image(h string) (Image, error) {
	var img Image
	err := s.readJSON(path.Join(imagePath(h), imageFile), &img)
	return img, err
}

// ref is a name pointing to an image (refs/<hash>.json).
type ref struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

func refPath(n string) string {
	sum := sha256.Sum256([]byte(n))
	return path.Join(refsDir, hex.EncodeToString(sum[:16])+".json")
}

// setRef points name n to image id.
func (s *Store) setRef(n, id string) error {
	return s.writeJSON(refPath(n), ref{Name: n, Image: id})
}

// refs reads every name.
func (s *Store) refs() ([]ref, error) {
	entries, err := fs.ReadDir(s.root.FS(), refsDir)
	if err != nil {
		return nil, err
	}
	var out []ref
	for _, e := range entries {
		var r ref
		if err := s.readJSON(path.Join(refsDir, e.Name()), &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ErrNotFound is returned when a name or id is not in the store.
var ErrNotFound = errors.New("not in the image store")

// NormalizeName is the store's form of an image name: a registry reference
// fully qualified ("python:3.12" is "index.docker.io/library/python:3.12").
func NormalizeName(n string) (string, error) {
	r, err := name.ParseReference(n)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", n, err)
	}
	return r.Name(), nil
}

// resolve finds the image id that ref names: an id ("sha256:<hex>" or a
// unique prefix of 12 or more hex digits of one) or a name.
func (s *Store) resolve(r string) (string, error) {
	hexPart := strings.TrimPrefix(r, "sha256:")
	if len(hexPart) >= 12 && len(hexPart) <= 64 && isHex(hexPart) {
		entries, err := fs.ReadDir(s.root.FS(), imagesDir)
		if err != nil {
			return "", err
		}
		var found []string
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), hexPart) {
				found = append(found, e.Name())
			}
		}
		switch len(found) {
		case 1:
			if _, err := s.root.Stat(path.Join(imagePath(found[0]), imageFile)); err == nil {
				return "sha256:" + found[0], nil
			}
		case 0:
		default:
			return "", fmt.Errorf("%q names %d images", r, len(found))
		}
	}
	n, err := NormalizeName(r)
	if err != nil {
		return "", err
	}
	var rf ref
	if err := s.readJSON(refPath(n), &rf); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", r, ErrNotFound)
		}
		return "", err
	}
	h, err := idHex(rf.Image)
	if err != nil {
		return "", err
	}
	if _, err := s.root.Stat(path.Join(imagePath(h), imageFile)); err != nil {
		return "", fmt.Errorf("%s: %w", r, ErrNotFound)
	}
	return rf.Image, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// touch records a use of image h now.
func (s *Store) touch(h string) error {
	p := path.Join(imagePath(h), usedFile)
	now := time.Now()
	err := s.root.Chtimes(p, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		return s.root.WriteFile(p, nil, 0o644)
	}
	return err
}

// Handle is an image in use: its root stays in the store (eviction and
// removal skip it) until Close.
type Handle struct {
	Image
	// Root is the absolute path of the image's root directory, to be
	// mounted read-only.
	Root string
	lock *fileLock
}

// Close ends the use.
func (h *Handle) Close() error {
	h.lock.unlock()
	return nil
}

// Use opens the image that ref (a name or an id) names, for a jail.
func (s *Store) Use(ctx context.Context, r string) (*Handle, error) {
	sl, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer sl.unlock()
	id, err := s.resolve(r)
	if err != nil {
		return nil, err
	}
	return s.use(ctx, id)
}

// use opens image id; the caller holds the store lock.
func (s *Store) use(ctx context.Context, id string) (*Handle, error) {
	h, err := idHex(id)
	if err != nil {
		return nil, err
	}
	img, err := s.image(h)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	// Held shared by users, exclusive only by a remover holding the store
	// lock exclusive: with the store lock shared, this never waits.
	l, err := lock(ctx, filepath.Join(s.dir, imagePath(h), useLockFile), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	if err := s.touch(h); err != nil {
		l.unlock()
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	return &Handle{Image: img, Root: filepath.Join(s.dir, imagePath(h), rootDir), lock: l}, nil
}

// List returns the images (most recently used first) and the store's usage.
func (s *Store) List(ctx context.Context) ([]Entry, Usage, error) {
	sl, err := s.lockStore(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, Usage{}, err
	}
	defer sl.unlock()
	st, err := s.state()
	if err != nil {
		return nil, Usage{}, err
	}
	var out []Entry
	for _, im := range st.images {
		e := Entry{Image: im.Image, Names: st.names[im.ID], LastUsed: im.used, Bytes: im.RootBytes}
		for _, l := range im.Layers {
			e.Bytes += st.layers[l]
		}
		if l, ok, _ := tryLock(filepath.Join(s.dir, imagePath(im.hex), useLockFile), unix.LOCK_EX); ok {
			l.unlock()
		} else {
			e.InUse = true
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, st.usage(s.maxBytes), nil
}

// storedImage is an image as the store's state sees it.
type storedImage struct {
	Image
	hex  string
	used time.Time
}

// state is the whole store read from disk.
type state struct {
	images []storedImage
	layers map[string]int64    // diff id → bytes
	names  map[string][]string // image id → names
	refs   []ref
}

func (st *state) usage(maxBytes int64) Usage {
	u := Usage{Images: len(st.images), Layers: len(st.layers), MaxBytes: maxBytes}
	for _, b := range st.layers {
		u.Bytes += b
	}
	for _, im := range st.images {
		u.Bytes += im.RootBytes
	}
	return u
}

// state reads the store. Entries without their record (an unpack cut
// short before its rename cannot leave any; a removal cut short can) are
// skipped.
func (s *Store) state() (*state, error) {
	st := &state{layers: map[string]int64{}, names: map[string][]string{}}
	imgs, err := fs.ReadDir(s.root.FS(), imagesDir)
	if err != nil {
		return nil, err
	}
	for _, e := range imgs {
		img, err := s.image(e.Name())
		if err != nil {
			continue
		}
		si := storedImage{Image: img, hex: e.Name(), used: img.Added}
		if fi, err := s.root.Stat(path.Join(imagePath(e.Name()), usedFile)); err == nil {
			si.used = fi.ModTime()
		}
		st.images = append(st.images, si)
	}
	layers, err := fs.ReadDir(s.root.FS(), layersDir)
	if err != nil {
		return nil, err
	}
	for _, e := range layers {
		var m layerMeta
		if err := s.readJSON(path.Join(layerPath(e.Name()), layerFile), &m); err != nil {
			continue
		}
		st.layers[m.DiffID] = m.Bytes
	}
	if st.refs, err = s.refs(); err != nil {
		return nil, err
	}
	for _, r := range st.refs {
		st.names[r.Image] = append(st.names[r.Image], r.Name)
	}
	for _, n := range st.names {
		sort.Strings(n)
	}
	return st, nil
}

// mkdirTemp makes a new directory in tmp/ and returns its path beneath
// the store.
func (s *Store) mkdirTemp(prefix string) (string, error) {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := path.Join(tmpDir, prefix+hex.EncodeToString(b[:]))
		err := s.root.Mkdir(p, ownerDirBits)
		if !errors.Is(err, fs.ErrExist) {
			return p, err
		}
	}
}
