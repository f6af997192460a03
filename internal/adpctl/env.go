package adpctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentdataplatform/adp/internal/imagestore"
)

const envArgs = "list|pull REF...|import PATH|build DIR|rm REF...|gc"

func cmdEnv(ctx context.Context, e Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want list, pull, import, build, rm or gc", errUsage)
	}
	var run func(context.Context, Env, *imagestore.Store, []string) error
	switch args[0] {
	case "list":
		run = envList
	case "pull":
		run = envPull
	case "import":
		run = envImport
	case "build":
		run = envBuild
	case "rm":
		run = envRemove
	case "gc":
		run = envGC
	default:
		return fmt.Errorf("%w: unknown env command %q: want list, pull, import, build, rm or gc", errUsage, args[0])
	}
	if e.imageStoreErr != nil {
		return fmt.Errorf("image store settings: %w", e.imageStoreErr)
	}
	cfg := e.ImageStore
	if cfg.Log == nil { // what the store does is printed; its warnings go to stderr
		cfg.Log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := imagestore.Open(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return run(ctx, e, s, args[1:])
}

func envList(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env list", "[--json]")
	asJSON := fs.Bool("json", false, "print one JSON object per image")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	entries, u, err := s.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		for _, en := range entries {
			if err := enc.Encode(struct {
				imagestore.Image
				Names    []string  `json:"names"`
				Bytes    int64     `json:"bytes"`
				LastUsed time.Time `json:"last_used"`
				InUse    bool      `json:"in_use"`
			}{en.Image, en.Names, en.Bytes, en.LastUsed, en.InUse}); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tIMAGE\tLAYERS\tSIZE\tLAST USED\tIN USE")
	for _, en := range entries {
		names := en.Names
		if len(names) == 0 {
			names = []string{"(none)"}
		}
		inUse := ""
		if en.InUse {
			inUse = "yes"
		}
		for _, n := range names {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", n, shortID(en.ID), len(en.Layers), humanBytes(en.Bytes),
				en.LastUsed.Local().Format("2006-01-02 15:04"), inUse)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%d images, %d layers: %s on disk of %s (%s); SIZE counts shared layers in each image\n",
		u.Images, u.Layers, humanBytes(u.Bytes), humanBytes(u.MaxBytes), s.Dir())
	return nil
}

func envPull(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env pull", "REF...")
	refs, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return fmt.Errorf("%w: give an image reference", errUsage)
	}
	for _, r := range refs {
		res, err := s.Pull(ctx, r)
		if err != nil {
			return err
		}
		printResult(e.Stdout, "pulled", res)
	}
	return nil
}

func envImport(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env import", "PATH [--name NAME]...")
	var names multiFlag
	fs.Var(&names, "name", "name the archive's only image this (repeatable); default: the archive's own tags")
	paths, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(paths) != 1 {
		return fmt.Errorf("%w: give one archive (docker save, podman save, OCI layout directory or tar)", errUsage)
	}
	return importAndPrint(ctx, e, s, paths[0], names)
}

func importAndPrint(ctx context.Context, e Env, s *imagestore.Store, path string, names []string) error {
	results, err := s.Import(ctx, path, names...)
	for _, res := range results {
		printResult(e.Stdout, "imported", res)
	}
	return err
}

func envBuild(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env build", "DIR [--name NAME] [--engine docker|podman]")
	name := fs.String("name", "", "name of the image in the store (default: localhost/<DIR's base name>:latest)")
	engine := fs.String("engine", "", "container engine to build with (default: docker, else podman, whichever is on PATH)")
	dirs, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(dirs) != 1 {
		return fmt.Errorf("%w: give one build context directory (with a Dockerfile)", errUsage)
	}
	dir := dirs[0]
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("build context %s: not a directory", dir)
	}
	if *name == "" {
		abs, _ := filepath.Abs(dir)
		*name = "localhost/" + strings.ToLower(filepath.Base(abs)) + ":latest"
	}
	if _, err := imagestore.NormalizeName(*name); err != nil {
		return err
	}
	bin, err := imagestore.FindEngine(ctx, *engine, e.LookPath)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "adp-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	archive := filepath.Join(tmp, "image.tar")
	if err := imagestore.BuildArchive(ctx, bin, dir, archive, e.Stderr); err != nil {
		return err
	}
	return importAndPrint(ctx, e, s, archive, []string{*name})
}

func envRemove(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env rm", "REF...")
	refs, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(refs) == 0 {
		return fmt.Errorf("%w: give image names or ids", errUsage)
	}
	var errs []error
	for _, r := range refs {
		if err := s.Remove(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("rm %s: %w", r, err))
			continue
		}
		fmt.Fprintf(e.Stdout, "removed %s\n", r)
	}
	return errors.Join(errs...)
}

func envGC(ctx context.Context, e Env, s *imagestore.Store, args []string) error {
	fs := newFlags(e, "env gc", "")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	rep, err := s.GC(ctx)
	for _, id := range rep.Images {
		fmt.Fprintf(e.Stdout, "removed image %s\n", shortID(id))
	}
	fmt.Fprintf(e.Stdout, "freed %s (%d images, %d layers); %d images, %d layers: %s of %s\n", humanBytes(rep.Bytes), len(rep.Images),
		rep.Layers, rep.Usage.Images, rep.Usage.Layers, humanBytes(rep.Usage.Bytes), humanBytes(rep.Usage.MaxBytes))
	return err
}

func printResult(w io.Writer, verb string, res *imagestore.Result) {
	names := strings.Join(res.Names, ", ")
	if res.Present {
		fmt.Fprintf(w, "%s %s: image %s, already in the store\n", verb, names, shortID(res.Image.ID))
		return
	}
	fmt.Fprintf(w, "%s %s: image %s, %d layers (%d unpacked, %d shared), +%s\n", verb, names, shortID(res.Image.ID),
		len(res.Image.Layers), res.LayersUnpacked, res.LayersShared, humanBytes(res.BytesAdded))
}

// shortID is an image id as docker shows it: 12 hex digits.
func shortID(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// humanBytes is n in B, KiB, MiB or GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 2 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMG"[i])
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
