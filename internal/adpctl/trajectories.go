package adpctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	includeFlagged := fs.Bool("include-flagged", false, "with --only-success or --best-of, keep the successes the test harness flagged (metadata.flags), which they leave out")
	out := fs.String("out", "", "write to FILE instead of stdout (replaced atomically); with sharegpt, LLaMA-Factory's dataset_info.json entry for it is written beside it")
	dir := fs.String("dir", e.trajectoryDir(), "trajectory directory (or the OUTPUT_DIR above it)")
	trace := fs.Bool("trace", false, "openai, sharegpt: add "+export.TraceKey+" (task_id, task_type, sample_index, file) to every record; for readers that take only their columns")
	traceFile := fs.String("trace-file", "", "openai, sharegpt: write each record's "+export.TraceKey+" to FILE instead, line for line, the records unchanged (for readers that reject unknown keys)")
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
	opts := export.Options{OnlySuccess: *onlySuccess, BestOf: *bestOf, MinAttempts: *minAttempts, IncludeFlagged: *includeFlagged, Trace: *trace}
	var sum export.Summary
	write := func(w io.Writer) error {
		var err error
		sum, err = export.Write(w, *dir, f, opts)
		return err
	}
	if *traceFile != "" {
		inner := write
		write = func(w io.Writer) error {
			return writeOut(e, *traceFile, func(tw io.Writer) error {
				opts.TraceOut = tw
				return inner(w)
			})
		}
	}
	if err := writeOut(e, *out, write); err != nil {
		return err
	}
	fmt.Fprintln(e.Stderr, sum)
	if f == export.FormatShareGPT {
		if err := datasetInfo(e, *out); err != nil {
			return err
		}
	}
	for _, fe := range sum.Invalid {
		fmt.Fprintln(e.Stderr, "skipped:", fe)
	}
	return nil
}

const exportArgs = "--format openai|sharegpt|groups [--only-success] [--best-of] [--include-flagged] [--min-attempts N] [--trace] [--trace-file FILE] [--out FILE] [--dir DIR]"

// datasetInfo gives LLaMA-Factory's dataset_info.json entry for a sharegpt
// export: written beside the file (merged into an existing one, the
// dataset named after the file), or printed when the export went to
// stdout. Without it LLaMA-Factory reads the conversations and drops the
// system and tools columns.
func datasetInfo(e Env, out string) error {
	if out == "" || out == "-" {
		b, err := json.MarshalIndent(map[string]any{"adp": export.ShareGPTDatasetInfo("FILE.jsonl")}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stderr, "LLaMA-Factory needs this entry in dataset_info.json (FILE.jsonl: where the export was saved):\n%s\n", b)
		return nil
	}
	name := strings.TrimSuffix(filepath.Base(out), filepath.Ext(out))
	path, err := export.WriteDatasetInfo(out, name)
	if err != nil {
		return fmt.Errorf("dataset_info.json: %w", err)
	}
	fmt.Fprintf(e.Stderr, "wrote %s: dataset %q for LLaMA-Factory (dataset_dir: %s, dataset: %s)\n", path, name, filepath.Dir(path), name)
	return nil
}

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
