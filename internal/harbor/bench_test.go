package harbor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// benchTaskImages is how many task images on one base the benchmark
// stores together.
const benchTaskImages = 100

// BenchmarkHarborImages measures a Harbor task image as the platform
// uses it, built by the host's engine (podman or docker) from
// examples/harbor-images/copy-greeting (debian:bookworm-slim and a COPY):
//
//   - first-use: the archive imported into an empty store (read, unpacked,
//     root assembled): seconds, and the store's bytes on disk;
//   - start/<jail>: the start of an attempt in the image, a jail on its
//     root running /bin/true (median of b.N), and start/engine: `ENGINE
//     run --rm --network=none IMAGE /bin/true` of the same image;
//   - task-images: benchTaskImages images on that image, each adding a
//     small layer (one file of 16 KiB), imported together from one archive
//     into an empty store: the store's bytes against the same images kept
//     separately, as `ENGINE save` archives (one base each) and unpacked.
//
// Skipped without an engine or its local debian:bookworm-slim.
//
//	go test -run '^$' -bench HarborImages -benchtime 50x ./internal/harbor
func BenchmarkHarborImages(b *testing.B) {
	ctx := context.Background()
	engine, err := imagestore.FindEngine(ctx, "", nil)
	if err != nil {
		b.Skipf("no container engine to build a task image with: %v", err)
	}
	testsupport.RequireLocalImage(b, engine, "debian:bookworm-slim")
	root := b.TempDir()
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil { // the jail's uid reaches the store
			b.Fatal(err)
		}
	}
	ds, _ := testsupport.HarborImageDataset(b)
	task := filepath.Join(ds, "copy-greeting")
	archives := filepath.Join(root, "archives")
	archiveName, err := ArchiveName(task)
	if err != nil {
		b.Fatal(err)
	}
	archive := filepath.Join(archives, filepath.FromSlash(archiveName))
	start := time.Now()
	if err := imagestore.BuildArchive(ctx, engine, filepath.Join(task, EnvironmentDir), archive, io.Discard); err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	st, err := os.Stat(archive)
	if err != nil {
		b.Fatal(err)
	}
	saveBytes := st.Size()

	// First use.
	store, err := imagestore.Open(imagestore.Config{Dir: filepath.Join(root, "store"), ArchiveDir: archives, MaxGB: 50})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	start = time.Now()
	h, err := store.Get(ctx, core.EnvironmentArchivePrefix+archiveName)
	if err != nil {
		b.Fatal(err)
	}
	firstUse := time.Since(start)
	defer h.Close()
	_, u, err := store.List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	oneBytes := u.Bytes
	b.Logf("task image: built in %.1f s by %s; its save archive %.1f MB", build.Seconds(), filepath.Base(engine), mb(saveBytes))
	b.Run("first-use", func(b *testing.B) {
		b.ReportMetric(firstUse.Seconds(), "s")
		b.ReportMetric(mb(oneBytes), "MB-on-disk")
		b.ReportMetric(mb(saveBytes), "MB-archive")
	})

	// Start of an attempt.
	img := &sandbox.Image{Root: h.Root, Env: h.Config.Env, WorkingDir: h.Config.WorkingDir, User: h.Config.User}
	medians := map[string]time.Duration{}
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		j, err := sandbox.New(backend, sandbox.Config{})
		if err != nil {
			b.Logf("%s: %v", backend, err)
			continue
		}
		b.Run("start/"+backend, func(b *testing.B) {
			medians[backend] = benchMedian(b, func() error {
				res, err := j.Run(ctx, sandbox.Request{Argv: []string{"/bin/true"}, Image: img})
				if err == nil && !res.OK() {
					err = fmt.Errorf("result %+v", res)
				}
				return err
			})
		})
	}
	out, err := exec.Command(engine, "load", "-i", archive).CombinedOutput()
	if err != nil {
		b.Fatalf("%s load: %v: %s", engine, err, out)
	}
	loaded := loadedImage(string(out))
	if loaded == "" {
		b.Fatalf("%s load named no image: %s", engine, out)
	}
	defer func() { _ = exec.Command(engine, "rmi", loaded).Run() }()
	b.Run("start/engine", func(b *testing.B) {
		e := benchMedian(b, func() error {
			if out, err := exec.Command(engine, "run", "--rm", "--network=none", loaded, "/bin/true").CombinedOutput(); err != nil {
				return fmt.Errorf("%s run: %w: %s", engine, err, out)
			}
			return nil
		})
		for backend, m := range medians {
			b.ReportMetric(float64(e)/float64(m), "x-"+backend)
		}
	})

	// benchTaskImages task images on the one base, from one archive
	// (each layer in it once, as a registry would serve them).
	base := precompressed(b, archive)
	refs := map[name.Reference]v1.Image{}
	var layerBytes int64
	for i := range benchTaskImages {
		l, size := taskLayer(b, i)
		layerBytes += size
		im, err := mutate.AppendLayers(base, l)
		if err != nil {
			b.Fatal(err)
		}
		ref, err := name.ParseReference(fmt.Sprintf("localhost/bench/task-%03d:1", i))
		if err != nil {
			b.Fatal(err)
		}
		refs[ref] = im
	}
	many := filepath.Join(root, "many.tar")
	if err := tarball.MultiRefWriteToFile(many, refs); err != nil {
		b.Fatal(err)
	}
	store2, err := imagestore.Open(imagestore.Config{Dir: filepath.Join(root, "store2"), MaxGB: 50})
	if err != nil {
		b.Fatal(err)
	}
	defer store2.Close()
	start = time.Now()
	if _, err := store2.Import(ctx, many); err != nil {
		b.Fatal(err)
	}
	importMany := time.Since(start)
	_, u2, err := store2.List(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if u2.Images != benchTaskImages {
		b.Fatalf("%d images in the store, want %d", u2.Images, benchTaskImages)
	}
	separateSaves := benchTaskImages*saveBytes + layerBytes
	separateUnpacked := int64(benchTaskImages) * oneBytes
	b.Run("task-images", func(b *testing.B) {
		b.ReportMetric(mb(u2.Bytes), "MB-store")
		b.ReportMetric(mb(separateSaves), "MB-separate-saves")
		b.ReportMetric(mb(separateUnpacked), "MB-separate-unpacked")
		b.ReportMetric(float64(separateSaves)/float64(u2.Bytes), "x-smaller-than-saves")
		b.ReportMetric(importMany.Seconds()/benchTaskImages, "s/image")
	})
}

// precompressed is the image of a docker archive with its layers
// gzipped once, in memory: an image of the archive as it is would gzip
// each layer again for every image built on it.
func precompressed(b *testing.B, archive string) v1.Image {
	b.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		b.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	var pre []v1.Layer
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			b.Fatal(err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, err = io.Copy(zw, rc)
		rc.Close()
		if err == nil {
			err = zw.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
		data := gz.Bytes()
		pl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			b.Fatal(err)
		}
		pre = append(pre, pl)
	}
	out, err := mutate.AppendLayers(empty.Image, pre...)
	if err != nil {
		b.Fatal(err)
	}
	ocf, err := out.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	ocf = ocf.DeepCopy()
	ocf.OS, ocf.Architecture, ocf.Variant, ocf.Config = cf.OS, cf.Architecture, cf.Variant, cf.Config
	if out, err = mutate.ConfigFile(out, ocf); err != nil {
		b.Fatal(err)
	}
	return out
}

// benchMedian runs run b.N times (after one to warm the caches) and
// returns the median time, reported as median-ms.
func benchMedian(b *testing.B, run func() error) time.Duration {
	b.Helper()
	if err := run(); err != nil {
		b.Fatal(err)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := run(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	m := times[len(times)/2]
	b.ReportMetric(float64(m.Microseconds())/1000, "median-ms")
	return m
}

// loadedImage is the image `podman load` or `docker load` says it loaded.
func loadedImage(out string) string {
	for _, line := range strings.Split(out, "\n") {
		for _, p := range []string{"Loaded image: ", "Loaded image(s): "} {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), p); ok {
				return strings.TrimSpace(strings.Split(s, ",")[0])
			}
		}
	}
	return ""
}

// taskLayer is task image i's own layer: one file of 16 KiB of its own.
func taskLayer(b *testing.B, i int) (v1.Layer, int64) {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte(fmt.Sprintf("task %03d\n", i)), 16<<10/9)
	if err := tw.WriteHeader(&tar.Header{Name: "opt/task/data.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		b.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		b.Fatal(err)
	}
	return l, int64(len(data))
}

func mb(n int64) float64 { return float64(n) / 1e6 }
