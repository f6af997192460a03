package harbor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/agentdataplatform/adp/internal/imagestore"
)

// Agents of Settings.Agent: what a dataset's tasks' actions are.
const (
	AgentModel  = "model"  // no actions: a model (LLM_BASE_URL) works on the task
	AgentOracle = "oracle" // solution/solve.sh
	AgentNoOp   = "noop"   // finish at once (must score 0)
)

// Settings are how the dispatcher (and `adpctl up`) read a Harbor dataset
// given as TASK_FILE: the same mapping as `adpctl import harbor`.
type Settings struct {
	Agent string `env:"HARBOR_AGENT" envDefault:"model" valid:"oneof=model oracle noop"`
	// ArchiveDir is where built task images are (SANDBOX_IMAGE_ARCHIVES,
	// the sandbox runtime's setting of the same name).
	ArchiveDir string `env:"SANDBOX_IMAGE_ARCHIVES"`
	// Engine is the container engine that builds them (docker or podman;
	// empty: the first that answers; none: only archives already built).
	Engine string `env:"HARBOR_ENGINE"`
}

// Options are the import options of s: the default caps, and Images
// when there is an archive directory (with an engine when one answers).
func (s Settings) Options(ctx context.Context, engineOutput io.Writer) Options {
	o := Options{Oracle: s.Agent == AgentOracle, NoOp: s.Agent == AgentNoOp}
	if s.ArchiveDir != "" {
		o.Images = &Images{ArchiveDir: s.ArchiveDir, Output: engineOutput}
		if bin, err := imagestore.FindEngine(ctx, s.Engine, nil); err == nil {
			o.Images.Engine = bin
		}
	}
	return o
}

// IsDataset reports whether path is a directory (of task folders, or a
// task folder): a TASK_FILE that is one is read as a Harbor dataset.
func IsDataset(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// DatasetFile is the task file WriteDataset writes a dataset's lines to:
// under outputDir/harbor, named by the dataset's absolute path.
func DatasetFile(outputDir, dataset string) (string, error) {
	abs, err := filepath.Abs(dataset)
	if err != nil {
		return "", fmt.Errorf("dataset %q: %w", dataset, err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(outputDir, "harbor", filepath.Base(abs)+"-"+hex.EncodeToString(sum[:6])+".jsonl"), nil
}

// WriteDataset maps the task folders of dataset as `adpctl import harbor`
// does and writes their task lines to file (replaced whole, and only when
// they changed, so that a dispatcher following it sees one version). The
// folders refused are returned (each a *RefusedError); an error when
// nothing could be imported or the file not written.
func WriteDataset(ctx context.Context, dataset, file string, o Options) (tasks int, refused []error, err error) {
	dirs, err := Find([]string{dataset})
	if err != nil {
		return 0, nil, err
	}
	var buf bytes.Buffer
	for _, d := range dirs {
		t, err := Load(ctx, d, o)
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			refused = append(refused, re)
			continue
		case err != nil:
			return 0, refused, err
		}
		line, err := t.MarshalLine()
		if err != nil {
			return 0, refused, fmt.Errorf("task %q: %w", t.TaskID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		tasks++
	}
	if tasks == 0 {
		return 0, refused, fmt.Errorf("dataset %s: every one of its %d task folders was refused", dataset, len(dirs))
	}
	if old, err := os.ReadFile(file); err == nil && bytes.Equal(old, buf.Bytes()) {
		return tasks, refused, nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return 0, refused, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tasks-*")
	if err != nil {
		return 0, refused, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return 0, refused, fmt.Errorf("writing %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, refused, fmt.Errorf("writing %s: %w", file, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, refused, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return 0, refused, fmt.Errorf("writing %s: %w", file, err)
	}
	return tasks, refused, nil
}
