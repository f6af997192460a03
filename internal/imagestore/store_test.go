package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestAssemble checks the merge of layers into an image's root as the OCI
// image spec (and overlayfs, docker's default) does it.
func TestAssemble(t *testing.T) {
	t.Parallel()
	base := layer(t, dir("etc"), file("etc/os", "base"), file("etc/gone", "g"), dir("opt"), file("opt/old1", "1"), dir("opt/sub"), file("opt/sub/old2", "2"),
		dir("usr/lib"), symlink("lib", "usr/lib"), file("usr/lib/libc.so", "libc"), dir("var/cache"), file("var/cache/c", "c"),
		file("data/big", "shared bytes"), dir("keep"), file("keep/x", "x"), file("replaced-by-dir", "f"), dir("dir-replaced-by-file"), file("dir-replaced-by-file/in", "i"))
	upper := layer(t, whiteout("etc", "gone"), file("etc/os", "upper"), opaque("opt"), file("opt/new", "n"),
		dir("lib"), file("lib/own.so", "own"), // a directory replaces the symlink below
		whiteout("", "var"), hardlink("data/big2", "data/big"), // a hard link to a file of the layer below
		dir("replaced-by-dir"), file("replaced-by-dir/f", "now"), file("dir-replaced-by-file", "now a file"),
		whiteout("lib", "libc.so")) // beneath the symlink below: names nothing of the layer below
	top := layer(t, whiteout("keep", "x"), file("keep/y", "y"))
	img := image(t, RunConfig{Env: []string{"PATH=/usr/bin", "LANG=C.UTF-8"}, WorkingDir: "/testbed", User: "1000", Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}}, base, upper, top)
	s := openStore(t, 0)
	res := importImage(t, s, img, "example.com/assemble:1")
	h, err := s.Use(context.Background(), "example.com/assemble:1")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := map[string]string{
		"etc": "dir", "etc/os": "file:upper", "opt": "dir", "opt/new": "file:n",
		"usr": "dir", "usr/lib": "dir", "usr/lib/libc.so": "file:libc", "lib": "dir", "lib/own.so": "file:own",
		"data": "dir", "data/big": "file:shared bytes", "data/big2": "file:shared bytes",
		"keep": "dir", "keep/y": "file:y", "replaced-by-dir": "dir", "replaced-by-dir/f": "file:now",
		"dir-replaced-by-file": "file:now a file",
	}
	if got := tree(t, h.Root); !maps.Equal(got, want) {
		t.Errorf("root:\n got %v\nwant %v", got, want)
	}
	for _, d := range []string{h.Root, filepath.Dir(h.Root), filepath.Dir(filepath.Dir(h.Root))} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v (%v), want 0755: the jail's uid must reach the root", d, fi.Mode(), err)
		}
	}
	if inode(t, filepath.Join(h.Root, "data/big")) != inode(t, filepath.Join(h.Root, "data/big2")) {
		t.Error("data/big2 is not a hard link of data/big")
	}
	wantRC := RunConfig{Env: []string{"PATH=/usr/bin", "LANG=C.UTF-8"}, WorkingDir: "/testbed", User: "1000", Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}}
	if got := h.Config; !slices.Equal(got.Env, wantRC.Env) || got.WorkingDir != wantRC.WorkingDir || got.User != wantRC.User ||
		!slices.Equal(got.Entrypoint, wantRC.Entrypoint) || !slices.Equal(got.Cmd, wantRC.Cmd) {
		t.Errorf("config = %+v, want %+v", got, wantRC)
	}
	if res.LayersUnpacked != 3 || len(h.Layers) != 3 {
		t.Errorf("unpacked %d layers, record has %d, want 3", res.LayersUnpacked, len(h.Layers))
	}
}

// TestAssembleRefuses: a hard link to a file no layer below has.
func TestAssembleRefuses(t *testing.T) {
	t.Parallel()
	s := openStore(t, 0)
	img := image(t, RunConfig{}, layer(t, file("a", "a")), layer(t, hardlink("b", "missing")))
	_, err := s.Import(context.Background(), writeArchive(t, img, "example.com/badlink:1"))
	if err == nil || !strings.Contains(err.Error(), `hard link "b" to "missing"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Use(context.Background(), "example.com/badlink:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Use after a refused import: err = %v, want ErrNotFound", err)
	}
}

func TestHostileImageRefused(t *testing.T) {
	t.Parallel()
	sentinel := t.TempDir()
	s := openStore(t, 0)
	img := image(t, RunConfig{}, layer(t, file("ok", "1")), layer(t, symlink("out", sentinel), file("out/pwned", "x")))
	_, err := s.Import(context.Background(), writeArchive(t, img, "example.com/hostile:1"))
	if err == nil || !strings.Contains(err.Error(), "escapes") {
		t.Fatalf("err = %v, want the layer refused", err)
	}
	if ents, _ := os.ReadDir(sentinel); len(ents) != 0 {
		t.Errorf("%s was written to: %v", sentinel, ents)
	}
	// Nothing of the refused layer is left; the good one is (it is sound).
	rep, err := s.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Usage.Images != 0 || rep.Usage.Layers != 0 {
		t.Errorf("after GC: %+v, want an empty store", rep.Usage)
	}
}

func TestPull(t *testing.T) {
	t.Parallel()
	reg := testsupport.StartRegistry(t)
	img := image(t, RunConfig{WorkingDir: "/w"}, layer(t, file("hello", "world")))
	ref := reg.Host + "/team/pulled:1"
	if err := remote.Write(mustTag(t, ref), img); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	strict := openStore(t, 0)
	if _, err := strict.Pull(ctx, ref); err == nil || !strings.Contains(err.Error(), "SANDBOX_INSECURE_REGISTRIES") {
		t.Fatalf("pull from a plain-HTTP registry not listed: err = %v", err)
	}

	s, err := Open(Config{Dir: t.TempDir(), InsecureRegistries: []string{reg.Host}, Keychain: authn.NewMultiKeychain(), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := img.Digest()
	if res.Present || res.LayersUnpacked != 1 || res.Image.Digest != wantDigest.String() || res.Image.Config.WorkingDir != "/w" {
		t.Errorf("result = %+v", res)
	}
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()
	if n := reg.Downloads(layerDigest.String()); n != 1 {
		t.Errorf("layer downloaded %d times, want 1", n)
	}
	again, err := s.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.Downloads(layerDigest.String()); !again.Present || n != 1 {
		t.Errorf("second pull: present %v, layer downloaded %d times in all; want present and once", again.Present, n)
	}
	h, err := s.Use(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := tree(t, h.Root); got["hello"] != "file:world" {
		t.Errorf("root = %v", got)
	}
}

// TestPullCredentials: the docker config's credentials reach the registry.
func TestPullCredentials(t *testing.T) {
	reg := testsupport.StartRegistry(t, "alice", "s3cret")
	img := image(t, RunConfig{}, layer(t, file("private", "p")))
	ref := reg.Host + "/private/img:1"
	if err := remote.Write(mustTag(t, ref), img, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	cfgDir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfgDir)
	s, err := Open(Config{Dir: t.TempDir(), InsecureRegistries: []string{reg.Host}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Pull(ctx, ref); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("pull without credentials: err = %v, want unauthorized", err)
	}
	// "alice:s3cret" in base64, as docker login writes it.
	conf := `{"auths": {"` + reg.Host + `": {"auth": "YWxpY2U6czNjcmV0"}}}`
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref); err != nil {
		t.Fatalf("pull with the docker config's credentials: %v", err)
	}
}

func TestImportFormats(t *testing.T) {
	t.Parallel()
	img := image(t, RunConfig{Cmd: []string{"python3"}}, layer(t, file("a", "1")), layer(t, file("b", "2")))
	id, _ := img.ConfigName()
	tests := []struct {
		name      string
		write     func(t *testing.T) string
		names     []string
		wantNames []string
		wantErr   string
	}{{
		name:      "docker save",
		write:     func(t *testing.T) string { return writeArchive(t, img, "example.com/fmt:docker") },
		wantNames: []string{"example.com/fmt:docker"},
	}, {
		name: "docker save of two images",
		write: func(t *testing.T) string {
			other := image(t, RunConfig{}, layer(t, file("c", "3")))
			p := filepath.Join(t.TempDir(), "two.tar")
			err := tarball.MultiRefWriteToFile(p, map[name.Reference]v1.Image{mustTag(t, "example.com/fmt:one"): img, mustTag(t, "example.com/fmt:other"): other})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		wantNames: []string{"example.com/fmt:one"},
	}, {
		name:      "OCI layout directory",
		write:     func(t *testing.T) string { return writeLayout(t, img, "example.com/fmt:layout") },
		wantNames: []string{"example.com/fmt:layout"},
	}, {
		name:      "OCI layout tar (podman save --format oci-archive)",
		write:     func(t *testing.T) string { return tarDir(t, writeLayout(t, img, "example.com/fmt:ociarchive")) },
		wantNames: []string{"example.com/fmt:ociarchive"},
	}, {
		name: "OCI layout with zstd layers, pulled from a registry",
		write: func(t *testing.T) string {
			reg := testsupport.StartRegistry(t)
			var layers []v1.Layer
			for _, e := range []entry{file("a", "1"), file("b", "2")} {
				data := layerTar(t, e)
				l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
					tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
				if err != nil {
					t.Fatal(err)
				}
				layers = append(layers, l)
			}
			zimg := image(t, RunConfig{Cmd: []string{"python3"}}, layers...)
			if zid, _ := zimg.ConfigName(); zid != id {
				t.Fatalf("the zstd image's config %s differs from %s", zid, id)
			}
			ref := reg.Host + "/fmt/zstd:1"
			if err := remote.Write(mustTag(t, ref), zimg); err != nil {
				t.Fatal(err)
			}
			s := openStoreWith(t, Config{InsecureRegistries: []string{reg.Host}})
			if _, err := s.Pull(context.Background(), ref); err != nil {
				t.Fatal(err)
			}
			h, err := s.Use(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if got := tree(t, h.Root); !maps.Equal(got, map[string]string{"a": "file:1", "b": "file:2"}) {
				t.Errorf("zstd root = %v", got)
			}
			return writeLayout(t, zimg, "example.com/fmt:zstd")
		},
		wantNames: []string{"example.com/fmt:zstd"},
	}, {
		name:      "a name given replaces the archive's",
		write:     func(t *testing.T) string { return writeArchive(t, img, "example.com/fmt:archive") },
		names:     []string{"mine:2"},
		wantNames: []string{"index.docker.io/library/mine:2"},
	}, {
		name:    "an image without a name",
		write:   func(t *testing.T) string { return writeLayout(t, img, "") },
		wantErr: "without a name",
	}, {
		name: "an OCI archive with a symlink among its blobs",
		write: func(t *testing.T) string {
			dir := writeLayout(t, img, "example.com/fmt:evil")
			blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
			os.Remove(blobs[0])
			os.Symlink("/etc/hostname", blobs[0])
			return tarDir(t, dir)
		},
		wantErr: "is not a regular file",
	}, {
		name: "not an image archive",
		write: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "x.tar")
			os.WriteFile(p, layerTar(t, file("readme", "x")), 0o644)
			return p
		},
		wantErr: "neither a docker archive",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, 0)
			p := tc.write(t)
			res, err := s.Import(context.Background(), p, tc.names...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got *Result
			for _, r := range res {
				if r.Image.ID == id.String() {
					got = r
				}
			}
			if got == nil {
				t.Fatalf("image %s not imported: %+v", id, res)
			}
			if !slices.Equal(got.Names, tc.wantNames) || !slices.Equal(got.Image.Config.Cmd, []string{"python3"}) {
				t.Errorf("names %v cmd %v, want %v [python3]", got.Names, got.Image.Config.Cmd, tc.wantNames)
			}
			h, err := s.Use(context.Background(), tc.wantNames[0])
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			if got := tree(t, h.Root); !maps.Equal(got, map[string]string{"a": "file:1", "b": "file:2"}) {
				t.Errorf("root = %v", got)
			}
		})
	}
}

// writeLayout writes img as an OCI layout directory, named n (if not empty)
// by the spec's ref.name annotation.
func writeLayout(t *testing.T, img v1.Image, n string) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	var opts []layout.Option
	if n != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{annotationRefName: n}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarDir writes the tree at dir as a tar file and returns its path.
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSharedBase: two images on one base keep one copy of the base.
func TestSharedBase(t *testing.T) {
	t.Parallel()
	base := layer(t, dir("usr/lib"), file("usr/lib/big", strings.Repeat("b", 256<<10)))
	one := image(t, RunConfig{}, base, layer(t, file("task", "one")))
	two := image(t, RunConfig{}, base, layer(t, file("task", "two")))
	s := openStore(t, 0)
	r1 := importImage(t, s, one, "example.com/task:1")
	r2 := importImage(t, s, two, "example.com/task:2")
	if r1.LayersUnpacked != 2 || r2.LayersUnpacked != 1 || r2.LayersShared != 1 {
		t.Errorf("unpacked %d then %d (shared %d); want 2 then 1 (shared 1)", r1.LayersUnpacked, r2.LayersUnpacked, r2.LayersShared)
	}
	ctx := context.Background()
	h1, _ := s.Use(ctx, "example.com/task:1")
	h2, _ := s.Use(ctx, "example.com/task:2")
	defer h1.Close()
	defer h2.Close()
	if inode(t, filepath.Join(h1.Root, "usr/lib/big")) != inode(t, filepath.Join(h2.Root, "usr/lib/big")) {
		t.Error("the base's file is not one inode in both roots")
	}
	if tree(t, h1.Root)["task"] != "file:one" || tree(t, h2.Root)["task"] != "file:two" {
		t.Error("the task layers are mixed up")
	}
	_, u, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The base's 256 KiB counted once: the store holds less than two of it.
	if u.Layers != 3 || u.Bytes < 256<<10 || u.Bytes >= 2*(256<<10) {
		t.Errorf("usage %+v: want 3 layers and one copy of the 256 KiB base", u)
	}
	if got := duBytes(t, s.Dir()); got >= 2*(256<<10)+64<<10 {
		t.Errorf("the store takes %d bytes on disk; the base is shared, so it should hold one 256 KiB copy", got)
	}
}

// duBytes is the disk space of the tree at dir, each inode once.
func duBytes(t testing.TB, dir string) int64 {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	n, err := diskUsage(root, ".", func(fs.FileInfo) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEvictLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	const fileBytes = 200 << 10
	mk := func(tag string) v1.Image {
		return image(t, RunConfig{}, layer(t, file("f", strings.Repeat(tag, fileBytes))))
	}
	// Room for two images, not three.
	s := openStore(t, 2*fileBytes+200<<10)
	ctx := context.Background()
	importImage(t, s, mk("a"), "example.com/lru:a")
	importImage(t, s, mk("b"), "example.com/lru:b")
	// a is used after b: b is the least recently used.
	past := time.Now().Add(-time.Hour)
	for _, n := range []string{"a", "b"} {
		id, err := s.resolve("example.com/lru:" + n)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := idHex(id)
		os.Chtimes(filepath.Join(s.Dir(), imagePath(h), usedFile), past, past)
	}
	ha, err := s.Use(ctx, "example.com/lru:a")
	if err != nil {
		t.Fatal(err)
	}
	ha.Close()
	importImage(t, s, mk("c"), "example.com/lru:c")
	entries, u, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Names...)
	}
	slices.Sort(names)
	if want := []string{"example.com/lru:a", "example.com/lru:c"}; !slices.Equal(names, want) {
		t.Errorf("images after eviction: %v, want %v", names, want)
	}
	if u.Bytes > u.MaxBytes || u.Layers != 2 {
		t.Errorf("usage %+v: want within the cap, b's layer gone", u)
	}

	// An image in use is not evicted, even when least recently used.
	hc, err := s.Use(ctx, "example.com/lru:c")
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	os.Chtimes(filepath.Join(hc.Root, "..", usedFile), past, past)
	importImage(t, s, mk("d"), "example.com/lru:d")
	if _, err := s.Use(ctx, "example.com/lru:a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a: err = %v, want evicted", err)
	}
	if got := tree(t, hc.Root)["f"]; got != "file:"+strings.Repeat("c", fileBytes) {
		t.Error("the root of c, in use, was changed")
	}
	if err := s.Remove(ctx, "example.com/lru:c"); !errors.Is(err, ErrInUse) {
		t.Errorf("remove an image in use: err = %v, want ErrInUse", err)
	}
}

// TestConcurrentAdds: adds of one image at once, through two Store values
// on one directory as two processes would, unpack each layer once.
func TestConcurrentAdds(t *testing.T) {
	t.Parallel()
	reg := testsupport.StartRegistry(t)
	img := image(t, RunConfig{}, layer(t, file("base", strings.Repeat("x", 64<<10))), layer(t, file("top", "t")))
	ref := reg.Host + "/c/img:1"
	if err := remote.Write(mustTag(t, ref), img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var stores []*Store
	for range 2 {
		s, err := Open(Config{Dir: dir, InsecureRegistries: []string{reg.Host}, Keychain: authn.NewMultiKeychain(), Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	const pulls = 8
	results := make([]*Result, pulls)
	errs := make([]error, pulls)
	var wg sync.WaitGroup
	for i := range pulls {
		wg.Go(func() { results[i], errs[i] = stores[i%2].Pull(context.Background(), ref) })
	}
	wg.Wait()
	unpacked := 0
	for i := range pulls {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		unpacked += results[i].LayersUnpacked
	}
	if unpacked != 2 {
		t.Errorf("%d layer unpacks in %d concurrent pulls, want 2 (one per layer)", unpacked, pulls)
	}
	entries, u, err := stores[0].List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || u.Layers != 2 {
		t.Errorf("%d images, %d layers; want 1 and 2", len(entries), u.Layers)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(tmp))
	}
}

func TestRemoveAndGC(t *testing.T) {
	t.Parallel()
	s := openStore(t, 0)
	ctx := context.Background()
	base := layer(t, file("base", "b"))
	img := image(t, RunConfig{}, base, layer(t, file("x", "1")))
	importImage(t, s, img, "example.com/rm:1")
	if _, err := s.Import(ctx, writeArchive(t, img, "example.com/rm:alias")); err != nil {
		t.Fatal(err)
	}
	importImage(t, s, image(t, RunConfig{}, base, layer(t, file("x", "2"))), "example.com/other:1")

	// Removing one of two names keeps the image.
	if err := s.Remove(ctx, "example.com/rm:alias"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Use(ctx, "example.com/rm:alias"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed name: err = %v", err)
	}
	h, err := s.Use(ctx, "example.com/rm:1")
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	// Removing the last name removes the image and its own layer, not the shared base.
	if err := s.Remove(ctx, "example.com/rm:1"); err != nil {
		t.Fatal(err)
	}
	_, u, _ := s.List(ctx)
	if u.Images != 1 || u.Layers != 2 {
		t.Errorf("after remove: %+v, want 1 image, 2 layers", u)
	}
	if err := s.Remove(ctx, "example.com/nothing:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove of a missing name: err = %v", err)
	}

	// GC: what a crash left in tmp/, and an image whose name moved away.
	os.MkdirAll(filepath.Join(s.Dir(), tmpDir, "layer-crashed", "fs"), 0o755)
	importImage(t, s, image(t, RunConfig{}, base, layer(t, file("x", "3"))), "example.com/other:1")
	rep, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 1 || rep.Layers != 1 || rep.Usage.Images != 1 || rep.Usage.Layers != 2 {
		t.Errorf("gc: %+v; want the unnamed image and its layer removed, 1 image and 2 layers left", rep)
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ still holds %d entries", len(tmp))
	}
}

func TestGetArchive(t *testing.T) {
	t.Parallel()
	archives := t.TempDir()
	img := image(t, RunConfig{}, layer(t, file("from", "archive")))
	if err := tarball.WriteToFile(filepath.Join(archives, "task-1.tar"), mustTag(t, "example.com/ignored:1"), img); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/etc", filepath.Join(archives, "etc"))
	s, err := Open(Config{Dir: t.TempDir(), ArchiveDir: archives, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for range 2 { // imported the first time, found the second
		h, err := s.Get(ctx, "archive:task-1.tar")
		if err != nil {
			t.Fatal(err)
		}
		if tree(t, h.Root)["from"] != "file:archive" {
			t.Error("wrong root")
		}
		h.Close()
	}
	for _, bad := range []string{"archive:../x.tar", "archive:/etc/passwd", "archive:etc/passwd"} {
		if _, err := s.Get(ctx, bad); err == nil || !strings.Contains(err.Error(), "archive") {
			t.Errorf("Get(%q): err = %v, want refused", bad, err)
		}
	}
}

func TestOpenChecksSettings(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	for _, cfg := range []Config{
		{Dir: t.TempDir(), MaxGB: -1},
		{Dir: t.TempDir(), InsecureRegistries: []string{"bad host"}},
		{Dir: t.TempDir(), ArchiveDir: file},
		{Dir: filepath.Join(file, "sub")},
	} {
		if s, err := Open(cfg); err == nil {
			s.Close()
			t.Errorf("Open(%+v) accepted", cfg)
		}
	}
}

func TestForeignPlatformRefused(t *testing.T) {
	t.Parallel()
	img := image(t, RunConfig{}, layer(t, file("a", "1")))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "s390x-" + cf.Architecture
	img, _ = mutate.ConfigFile(img, cf)
	_, err := openStore(t, 0).Import(context.Background(), writeArchive(t, img, "example.com/foreign:1"))
	if err == nil || !strings.Contains(err.Error(), "this machine runs linux/") {
		t.Fatalf("err = %v", err)
	}
}

func TestImageLargerThanCapRefused(t *testing.T) {
	t.Parallel()
	s := openStore(t, 200<<10)
	img := image(t, RunConfig{}, layer(t, file("a", strings.Repeat("a", 120<<10))), layer(t, file("b", strings.Repeat("b", 120<<10))))
	_, err := s.Import(context.Background(), writeArchive(t, img, "example.com/huge:1"))
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want errTooLarge", err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d leftovers", len(tmp))
	}
}

// crashChildEnv, set, makes TestCrashMidUnpack the child that is killed:
// "store dir|reference|registry host".
const crashChildEnv = "ADP_TEST_IMAGESTORE_CRASH_CHILD"

// TestCrashMidUnpack kills a process in the middle of unpacking a layer
// (its download stalled halfway) and checks that the store shows nothing
// of it, that GC clears what it left, and that the image is then pulled
// whole.
func TestCrashMidUnpack(t *testing.T) {
	if v := os.Getenv(crashChildEnv); v != "" {
		parts := strings.Split(v, "|")
		s := openStoreWith(t, Config{Dir: parts[0], InsecureRegistries: []string{parts[2]}})
		_, err := s.Pull(context.Background(), parts[1]) // never returns: killed
		t.Fatalf("the pull returned: %v", err)
	}
	t.Parallel()
	reg := testsupport.StartRegistry(t)
	var entries []entry
	for i := range 200 {
		entries = append(entries, file(fmt.Sprintf("lib/f%03d", i), strings.Repeat(fmt.Sprintf("line %d\n", i), 1200)))
	}
	big := layer(t, entries...)
	img := image(t, RunConfig{}, big)
	ref := reg.Host + "/crash/img:1"
	if err := remote.Write(mustTag(t, ref), img); err != nil {
		t.Fatal(err)
	}
	digest, _ := big.Digest()
	release := reg.StallBlob(digest.String())
	t.Cleanup(release) // before the registry closes (cleanups run last first)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashMidUnpack$", "-test.count=1")
	child.Env = append(os.Environ(), crashChildEnv+"="+dir+"|"+ref+"|"+reg.Host)
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the child has unpacked files of the layer (the first half
	// of its download), then kill it.
	for {
		if files, _ := filepath.Glob(filepath.Join(dir, tmpDir, "layer-*", treeDir, "lib", "f*")); len(files) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			child.Process.Kill()
			child.Wait()
			t.Fatalf("the child never started unpacking: %s", childOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	release()

	s := openStoreWith(t, Config{Dir: dir, InsecureRegistries: []string{reg.Host}})
	if _, err := s.Use(ctx, ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the crash, Use: err = %v, want ErrNotFound", err)
	}
	if _, u, err := s.List(ctx); err != nil || u.Images != 0 || u.Layers != 0 {
		t.Errorf("after the crash: %+v %v, want an empty store", u, err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, tmpDir)); len(tmp) != 0 {
		t.Errorf("after GC, tmp/ holds %d entries", len(tmp))
	}
	res, err := s.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Use(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := len(tree(t, h.Root)); res.LayersUnpacked != 1 || got != 201 {
		t.Errorf("pulled after the crash: %d layers unpacked, %d entries in the root; want 1 and 201", res.LayersUnpacked, got)
	}
}

// TestGetMissing: an environment that does not exist is ErrNoSuchImage
// (the task is invalid); a registry that cannot be reached is not (a
// system error, retried).
func TestGetMissing(t *testing.T) {
	t.Parallel()
	reg := testsupport.StartRegistry(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there any more
	s, err := Open(Config{Dir: t.TempDir(), ArchiveDir: t.TempDir(), InsecureRegistries: []string{reg.Host, closed},
		Keychain: authn.NewMultiKeychain(), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		env     string
		missing bool
	}{
		{reg.Host + "/no/such:1", true},
		{"archive:none.tar", true},
		{closed + "/team/img:1", false},
	} {
		_, err := s.Get(ctx, tc.env)
		if err == nil || errors.Is(err, ErrNoSuchImage) != tc.missing {
			t.Errorf("Get(%q) = %v, want missing %v", tc.env, err, tc.missing)
		}
	}
}
