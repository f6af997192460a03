package adpctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/agentdataplatform/adp/internal/export"
	"github.com/agentdataplatform/adp/internal/report"
)

func cmdExport(_ context.Context, e Env, args []string) error {
	fs := newFlags(e, "export", exportArgs)
	format := fs.String("format", "openai", "openai (chat messages with tool_calls), sharegpt (LLaMA-Factory), or groups (one line per task: prompt, tools, every attempt's completion with its reward)")
	onlySuccess := fs.Bool("only-success", false, "export only successful trajectories")
	bestOf := fs.Bool("best-of", false, "openai, sharegpt: one line per task, its attempt of highest reward (ties: the shortest)")
	minAttempts := fs.Int("min-attempts", 0, "groups: skip tasks with fewer attempts to export")
	out := fs.String("out", "", "write to FILE instead of stdout (replaced atomically)")
	dir := fs.String("dir", e.trajectoryDir(), "trajectory directory (or the OUTPUT_DIR above it)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	f, err := export.ParseFormat(*format)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	switch {
	case *bestOf && f == export.FormatGroups:
		return fmt.Errorf("%w: --best-of is for openai and sharegpt; groups keeps every attempt", errUsage)
	case *minAttempts > 0 && f != export.FormatGroups:
		return fmt.Errorf("%w: --min-attempts is for --format groups", errUsage)
	case *minAttempts < 0:
		return fmt.Errorf("%w: --min-attempts %d is negative", errUsage, *minAttempts)
	}
	if *dir, err = export.ResolveDir(*dir); err != nil {
		return err
	}
	var sum export.Summary
	err = writeOut(e, *out, func(w io.Writer) error {
		var err error
		sum, err = export.Write(w, *dir, f, export.Options{OnlySuccess: *onlySuccess, BestOf: *bestOf, MinAttempts: *minAttempts})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stderr, sum)
	for _, fe := range sum.Invalid {
		fmt.Fprintln(e.Stderr, "skipped:", fe)
	}
	return nil
}

const exportArgs = "--format openai|sharegpt|groups [--only-success] [--best-of] [--min-attempts N] [--out FILE] [--dir DIR]"

func cmdStats(_ context.Context, e Env, args []string) error {
	fs := newFlags(e, "stats", "[--json] [--dir DIR]")
	asJSON := fs.Bool("json", false, "print JSON")
	dir := fs.String("dir", e.trajectoryDir(), "trajectory directory (or the OUTPUT_DIR above it)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	d, err := export.ResolveDir(*dir)
	if err != nil {
		return err
	}
	*dir = d
	st, err := report.Compute(*dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return st.WriteText(e.Stdout)
}

func cmdReport(_ context.Context, e Env, args []string) error {
	fs := newFlags(e, "report", "--out report.html [--dir DIR]")
	out := fs.String("out", "report.html", "HTML file to write")
	dir := fs.String("dir", e.trajectoryDir(), "trajectory directory (or the OUTPUT_DIR above it)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	d, err := export.ResolveDir(*dir)
	if err != nil {
		return err
	}
	*dir = d
	st, err := report.Compute(*dir)
	if err != nil {
		return err
	}
	// Links to trajectory files are relative to the page's directory (the
	// working directory for stdout).
	linkDir := "."
	if *out != "" && *out != "-" {
		linkDir = filepath.Dir(*out)
	}
	if linkDir, err = filepath.Abs(linkDir); err != nil {
		return err
	}
	err = writeOut(e, *out, func(w io.Writer) error {
		return report.WriteHTML(w, st, report.HTMLOptions{Source: *dir, GeneratedAt: time.Now(), LinkDir: linkDir})
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stderr, "wrote %s\n", *out)
	return nil
}

// writeOut writes to stdout, or to path through a temporary file renamed
// into place, so a failed run never leaves a half-written file.
func writeOut(e Env, path string, write func(io.Writer) error) error {
	if path == "" || path == "-" {
		return write(e.Stdout)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
