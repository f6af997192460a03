package imagestore_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentdataplatform/adp/internal/imagestore"
)

// An image archive (as `docker save` writes it) is imported into a store,
// then used: its root is a directory to mount read-only as a jail's /,
// its config says how to run in it.
func Example() {
	dir, err := os.MkdirTemp("", "imagestore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "app.tar")
	writeAppArchive(archive)

	store, err := imagestore.Open(imagestore.Config{Dir: filepath.Join(dir, "store"), MaxGB: 1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	results, err := store.Import(ctx, archive)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(results[0].Names, results[0].LayersUnpacked, "layer unpacked")

	img, err := store.Use(ctx, "example.com/app:1") // held until Close: never evicted meanwhile
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	src, err := os.ReadFile(filepath.Join(img.Root, "app", "main.py"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("workdir %s, env %v, main.py: %s", img.Config.WorkingDir, img.Config.Env, src)
	// Output:
	// [example.com/app:1] 1 layer unpacked
	// workdir /app, env [PATH=/usr/local/bin:/usr/bin], main.py: print("hello")
}

// writeAppArchive writes a one-layer image as a docker archive at path.
func writeAppArchive(path string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "print(\"hello\")\n"
	tw.WriteHeader(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "app/main.py", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write([]byte(body))
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		log.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		log.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.WorkingDir, cf.Config.Env = "/app", []string{"PATH=/usr/local/bin:/usr/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		log.Fatal(err)
	}
	if err := tarball.WriteToFile(path, name.MustParseReference("example.com/app:1"), img); err != nil {
		log.Fatal(err)
	}
}
