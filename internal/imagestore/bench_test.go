package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// benchBaseDir is the host directory the benchmarks' base layer is made
// of: a real interpreter's library (thousands of files, .py and .so).
const benchBaseDir = "/usr/lib/python3.11"

// hostLayer is a layer holding the host tree at dir (under its own path).
func hostLayer(b *testing.B, dir string) (v1.Layer, int64) {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var files int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if d.Type()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && link == "" {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = strings.TrimPrefix(p, "/")
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			files++
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		b.Fatal(err)
	}
	return l, int64(len(data))
}

// taskLayer is a task's own layer: a small repository of files distinct
// to task i.
func taskLayer(b *testing.B, i int) v1.Layer {
	b.Helper()
	var entries []entry
	for f := range 64 {
		entries = append(entries, file(fmt.Sprintf("testbed/pkg/mod%02d.py", f), strings.Repeat(fmt.Sprintf("# task %d file %d\n", i, f), 200)))
	}
	return layer(b, entries...)
}

func benchStore(b *testing.B, reg *testsupport.Registry) *Store {
	b.Helper()
	s, err := Open(Config{Dir: b.TempDir(), InsecureRegistries: []string{reg.Host}, Keychain: authn.NewMultiKeychain(), Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func skipWithoutBase(b *testing.B) {
	if _, err := os.Stat(benchBaseDir); err != nil {
		b.Skipf("%s (the base layer's contents) is missing", benchBaseDir)
	}
}

// BenchmarkFirstUse: the first use of an image, pulled from a registry on
// loopback and unpacked; disk-MB is the store afterwards.
func BenchmarkFirstUse(b *testing.B) {
	skipWithoutBase(b)
	base, tarBytes := hostLayer(b, benchBaseDir)
	img := image(b, RunConfig{}, base, taskLayer(b, 0))
	reg := testsupport.StartRegistry(b)
	ref := reg.Host + "/bench/first:1"
	if err := remote.Write(mustTag(b, ref), img); err != nil {
		b.Fatal(err)
	}
	compressed, _ := base.Size()
	var disk int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := benchStore(b, reg)
		b.StartTimer()
		if _, err := s.Pull(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		disk = duBytes(b, s.Dir())
		b.StartTimer()
	}
	b.ReportMetric(float64(tarBytes)/1e6, "layer-tar-MB")
	b.ReportMetric(float64(compressed)/1e6, "gzip-MB")
	b.ReportMetric(float64(disk)/1e6, "disk-MB")
}

// BenchmarkTaskImagesOnOneBase: 100 task images (base + a task layer),
// pulled into one store. separate-MB is 100 times one image's store alone,
// what 100 separate images (no shared layers) take.
func BenchmarkTaskImagesOnOneBase(b *testing.B) {
	skipWithoutBase(b)
	const tasks = 100
	base, _ := hostLayer(b, benchBaseDir)
	reg := testsupport.StartRegistry(b)
	var refs []string
	for i := range tasks {
		ref := fmt.Sprintf("%s/bench/task:%d", reg.Host, i)
		if err := remote.Write(mustTag(b, ref), image(b, RunConfig{WorkingDir: "/testbed"}, base, taskLayer(b, i))); err != nil {
			b.Fatal(err)
		}
		refs = append(refs, ref)
	}
	var one, all int64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		alone := benchStore(b, reg)
		if _, err := alone.Pull(context.Background(), refs[0]); err != nil {
			b.Fatal(err)
		}
		one = duBytes(b, alone.Dir())
		s := benchStore(b, reg)
		b.StartTimer()
		for _, ref := range refs {
			if _, err := s.Pull(context.Background(), ref); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		all = duBytes(b, s.Dir())
		b.StartTimer()
	}
	b.ReportMetric(float64(all)/1e6, "shared-MB")
	b.ReportMetric(float64(one*tasks)/1e6, "separate-MB")
	b.ReportMetric(float64(one)/1e6, "one-image-MB")
}
