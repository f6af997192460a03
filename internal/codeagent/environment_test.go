package codeagent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// envStore is an image store whose archive directory holds img.tar: the
// host's python3.11 with a module (imgmod) only the image has.
func envStore(t *testing.T) *imagestore.Store {
	t.Helper()
	src := testsupport.PythonImageArchive(t, "test/env:1", v1.Config{Env: []string{"PATH=/usr/bin:/bin"}},
		testsupport.ImageFile{Name: "usr/lib/python3.11/imgmod.py", Body: "VALUE = 7\n"})
	// ws.tar: a workspace's image (bash and coreutils too) whose working
	// directory is /usr/src/app, with a tool and a module only it has.
	ws := testsupport.WorkspaceImageArchive(t, "test/ws:1", v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, WorkingDir: "/usr/src/app"},
		testsupport.ImageFile{Name: "etc", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/bash\n"},
		testsupport.ImageFile{Name: "usr/local", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/local/bin", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/local/bin/imgtool", Body: "#!/bin/bash\necho from-the-image\n", Mode: 0o755},
		testsupport.ImageFile{Name: "usr/lib/python3.11/imgcheck.py", Body: "EXPECTED = 5\n"},
		testsupport.ImageFile{Name: "usr/src", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app", Dir: true, Mode: 0o755})
	return archiveStore(t, map[string]string{"img.tar": src, "ws.tar": ws})
}

// archiveStore is an image store whose archive directory holds the
// archives at the given paths under the given names (archive:NAME).
func archiveStore(t *testing.T, archives map[string]string) *imagestore.Store {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil { // the jail's uid reaches the store
			t.Fatal(err)
		}
	}
	archiveDir := filepath.Join(dir, "archives")
	if err := os.Mkdir(archiveDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range archives {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(archiveDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := imagestore.Open(imagestore.Config{Dir: filepath.Join(dir, "store"), MaxGB: 1, ArchiveDir: archiveDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestEnvironmentProgram: a program task with tests in its image passes
// or fails by its own work, with the image's python3 (the module exists
// only there), under every jail; an environment that does not exist, or
// a runtime without a store, makes the task invalid.
func TestEnvironmentProgram(t *testing.T) {
	store := envStore(t)
	backends(t, func(t *testing.T, j sandbox.Jail) {
		lim := sandbox.DefaultLimits()
		a := &Agent{Jail: j, Limits: lim, Environments: store, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
		for _, tc := range []struct {
			name       string
			env        string
			code       string
			success    bool
			errType    core.ErrorType
			exitReason string
		}{
			{"passes", "archive:img.tar", "import imgmod\ndef f():\n    return imgmod.VALUE\n", true, core.ErrNone, ""},
			{"fails", "archive:img.tar", "def f():\n    return 6\n", false, core.ErrWrongAnswer, ""},
			{"no such image", "archive:none.tar", "def f():\n    return 7\n", false, core.ErrSystem, string(core.ExitInvalidTask)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tr, err := a.Execute(context.Background(), task("f", map[string]any{
					"code": tc.code, "tests": "import imgmod\nassert f() == imgmod.VALUE\n", "environment": tc.env}))
				if err != nil {
					t.Fatal(err)
				}
				if id, _ := tr.Metadata[core.MetaEnvironmentImage].(string); tc.exitReason == "" && !strings.HasPrefix(id, "sha256:") {
					t.Errorf("metadata environment_image = %v, want the image's id", tr.Metadata[core.MetaEnvironmentImage])
				}
				if tr.Success != tc.success || tr.ErrorType != tc.errType || (tc.exitReason != "" && string(tr.ExitReason) != tc.exitReason) {
					t.Errorf("success %v, error %q (%s), exit reason %q; want %v %q %q", tr.Success, tr.ErrorType, tr.ErrorMessage, tr.ExitReason, tc.success, tc.errType, tc.exitReason)
				}
			})
		}
		bare := &Agent{Jail: j, Limits: lim, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
		tr, err := bare.Execute(context.Background(), task("f", map[string]any{"code": "print(1)", "environment": "archive:img.tar"}))
		if err != nil || tr.ExitReason != core.ExitInvalidTask {
			t.Errorf("without a store: exit reason %q (%v), want invalid_task", tr.ExitReason, err)
		}
	})
}
