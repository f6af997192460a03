package adpctl

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// testImage is a linux image of one layer holding file with body.
func testImage(t *testing.T, file, body string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestEnv(t *testing.T) {
	t.Parallel()
	reg := testsupport.StartRegistry(t)
	pulled := reg.Host + "/team/env:1"
	tag, _ := name.NewTag(pulled)
	if err := remote.Write(tag, testImage(t, "from", "registry")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "task.tar")
	atag, _ := name.NewTag("example.com/task:7")
	if err := tarball.WriteToFile(archive, atag, testImage(t, "from", "archive")); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, env: Env{ImageStore: imagestore.Config{Dir: t.TempDir(), InsecureRegistries: []string{reg.Host}}}}

	code, out, errs := c.run("", "env", "pull", pulled)
	if code != 0 || !strings.Contains(out, "pulled "+pulled+": image ") || !strings.Contains(out, "1 layers (1 unpacked, 0 shared)") {
		t.Fatalf("pull: %d %q %q", code, out, errs)
	}
	code, out, errs = c.run("", "env", "import", archive)
	if code != 0 || !strings.Contains(out, "imported example.com/task:7: image ") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	code, out, errs = c.run("", "env", "import", archive, "--name", "mine:1")
	if code != 0 || !strings.Contains(out, "imported index.docker.io/library/mine:1: image ") || !strings.Contains(out, "already in the store") {
		t.Fatalf("import --name: %d %q %q", code, out, errs)
	}
	code, out, _ = c.run("", "env", "list")
	for _, want := range []string{"NAME", pulled, "example.com/task:7", "index.docker.io/library/mine:1", "2 images, 2 layers"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("list lacks %q: %d %s", want, code, out)
		}
	}
	code, out, errs = c.run("", "env", "rm", "example.com/task:7", "mine:1", "example.com/none:1")
	if code != 1 || !strings.Contains(out, "removed example.com/task:7") || !strings.Contains(errs, "rm example.com/none:1: ") || !strings.Contains(errs, "not in the image store") {
		t.Errorf("rm: %d %q %q", code, out, errs)
	}
	code, out, _ = c.run("", "env", "gc")
	if code != 0 || !strings.Contains(out, "1 images, 1 layers") {
		t.Errorf("gc: %d %q", code, out)
	}
	code, _, errs = c.run("", "env", "import", filepath.Join(t.TempDir(), "missing.tar"))
	if code != 1 || !strings.Contains(errs, "missing.tar") {
		t.Errorf("import of a missing archive: %d %q", code, errs)
	}
}

func TestEnvBuildWithoutEngine(t *testing.T) {
	t.Parallel()
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	notFound := func(string) (string, error) { return "", os.ErrNotExist }
	c := &cli{t: t, env: Env{ImageStore: imagestore.Config{Dir: t.TempDir()}, LookPath: notFound}}
	code, _, errs := c.run("", "env", "build", ctxDir)
	if code != 1 || !strings.Contains(errs, "docker not found on PATH, podman not found on PATH") || !strings.Contains(errs, "adpctl env import") {
		t.Errorf("build without an engine: %d %q", code, errs)
	}
}

func TestEnvSettingsChecked(t *testing.T) {
	t.Parallel()
	c := &cli{t: t, env: Env{ImageStore: imagestore.Config{Dir: t.TempDir(), MaxGB: -3}}}
	if code, _, errs := c.run("", "env", "list"); code != 1 || !strings.Contains(errs, "cap -3 GB") {
		t.Errorf("negative cap: %d %q", code, errs)
	}
	if code, _, errs := c.run("", "env", "frob"); code != 2 || !strings.Contains(errs, "unknown env command") {
		t.Errorf("unknown subcommand: %d %q", code, errs)
	}
}
