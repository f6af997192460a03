package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one entry of a test layer's tar.
type entry struct {
	name string
	typ  byte // tar.TypeReg when 0
	body string
	link string // symlink or hard link target
	mode int64  // 0644 (files) or 0755 (dirs) when 0
}

func file(name, body string) entry    { return entry{name: name, body: body} }
func dir(name string) entry           { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, to string) entry   { return entry{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) entry  { return entry{name: name, typ: tar.TypeLink, link: to} }
func whiteout(dir, name string) entry { return entry{name: filepath.Join(dir, whiteoutPrefix+name)} }
func opaque(dir string) entry         { return entry{name: filepath.Join(dir, opaqueMarker)} }
func withMode(e entry, m int64) entry { e.mode = m; return e }
func device(name string) entry        { return entry{name: name, typ: tar.TypeChar} }

// quiet is the tests' logger.
var quiet = slog.New(slog.DiscardHandler)

// testMTime is every test file's modification time.
var testMTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// layerTar is the tar of entries.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: testMTime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer is a gzip-compressed layer of entries.
func layer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := layerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is a linux image of layers (bottom first) with run config rc.
func image(t testing.TB, rc RunConfig, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Env, cf.Config.WorkingDir, cf.Config.User = rc.Env, rc.WorkingDir, rc.User
	cf.Config.Entrypoint, cf.Config.Cmd = rc.Entrypoint, rc.Cmd
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// openStore opens a store in a new temporary directory with a cap of
// maxBytes (0: the default).
func openStore(t testing.TB, maxBytes int64) *Store {
	t.Helper()
	return openStoreAt(t, t.TempDir(), maxBytes)
}

func openStoreAt(t testing.TB, dir string, maxBytes int64) *Store {
	t.Helper()
	cfg := Config{Dir: dir}
	if maxBytes > 0 {
		cfg.MaxGB = float64(maxBytes) / (1 << 30)
	}
	return openStoreWith(t, cfg)
}

// openStoreWith opens a store configured by cfg, in a new temporary
// directory unless cfg names one, quiet, with no credentials.
func openStoreWith(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = quiet
	}
	if cfg.Keychain == nil {
		cfg.Keychain = authn.NewMultiKeychain()
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeArchive writes img as a docker save archive tagged tag.
func writeArchive(t testing.TB, img v1.Image, tag string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	ref := mustTag(t, tag)
	if err := tarball.WriteToFile(p, ref, img); err != nil {
		t.Fatal(err)
	}
	return p
}

// importImage adds img to s through a docker archive and returns the result.
func importImage(t testing.TB, s *Store, img v1.Image, tag string) *Result {
	t.Helper()
	res, err := s.Import(context.Background(), writeArchive(t, img, tag))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("imported %d images, want 1", len(res))
	}
	return res[0]
}

// tree describes the tree at root: path → "file:BODY", "dir", "link:TARGET".
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			to, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + to
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inode is the inode number of p.
func inode(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func mustTag(t testing.TB, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
