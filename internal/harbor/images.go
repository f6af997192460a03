package harbor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
)

// Images gives a task folder whose Dockerfile builds (anything more than
// a FROM of a base) its image: environment/ is built once by the host's
// engine into an image archive under ArchiveDir, named by the task and
// the hash of the build context (ArchiveName), and the task's environment
// is "archive:NAME". The sandbox runtime imports the archive into its
// image store on first use (SANDBOX_IMAGE_ARCHIVES names the same
// directory there). An archive already built for the same context is
// used as it is, with or without an engine.
type Images struct {
	// ArchiveDir is where the archives are (SANDBOX_IMAGE_ARCHIVES).
	ArchiveDir string
	// Engine is the path of docker or podman (imagestore.FindEngine);
	// empty: only archives already built are used, and a Dockerfile
	// without one is refused, naming its line.
	Engine string
	// Output receives the engine's output; nil: discarded.
	Output io.Writer
}

// ArchivesSubdir is the directory of ArchiveDir the archives are written to.
const ArchivesSubdir = "harbor"

// DefaultBuildTimeoutSec is Harbor's default build_timeout_sec.
const DefaultBuildTimeoutSec = 600.0

// environment is the task's environment: docker_image as it is, the
// archive of a Dockerfile that builds, or none.
func (o Options) environment(ctx context.Context, dir string, env map[string]any, refuse func(string, string, ...any) error) (string, error) {
	envDir := filepath.Join(dir, EnvironmentDir)
	line, why, err := checkDockerfile(envDir, o, refuse)
	if err != nil {
		return "", err
	}
	if img, ok := env["docker_image"].(string); ok {
		return img, nil // checked by checkEnvironment; Harbor uses it instead of building
	}
	if line == 0 {
		return "", nil
	}
	field := DockerfileField
	if o.Images == nil || o.Images.ArchiveDir == "" {
		return "", refuse(field, "%s, and there is no image archive directory to build it into (SANDBOX_IMAGE_ARCHIVES, or --images)", why)
	}
	name, err := ArchiveName(dir)
	if err != nil {
		return "", refuse(EnvironmentDir+"/", "%v", err)
	}
	archive := filepath.Join(o.Images.ArchiveDir, filepath.FromSlash(name))
	if _, err := os.Stat(archive); err == nil {
		return core.EnvironmentArchivePrefix + name, nil
	}
	if o.Images.Engine == "" {
		return "", refuse(field, "%s, and no container engine is available to build it (docker or podman; or run `adpctl import harbor` where one is, into the same SANDBOX_IMAGE_ARCHIVES)", why)
	}
	timeout := DefaultBuildTimeoutSec
	if n, ok := number(env["build_timeout_sec"]); ok {
		timeout = n
	}
	bctx, cancel := context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
	defer cancel()
	out := o.Images.Output
	if out == nil {
		out = io.Discard
	}
	if err := imagestore.BuildArchive(bctx, o.Images.Engine, envDir, archive, out); err != nil {
		if ctx.Err() != nil {
			return "", err // interrupted: not the task's fault
		}
		if bctx.Err() != nil {
			err = fmt.Errorf("%w: longer than build_timeout_sec %.0f s", err, timeout)
		}
		return "", refuse(field, "%v", err)
	}
	return core.EnvironmentArchivePrefix + name, nil
}

// ArchiveName is where the image of a task folder's environment/ is kept
// under the archive directory: harbor/<folder>-<hash>.tar, the hash of
// every file of the build context (paths, modes, contents, link targets),
// so that a changed Dockerfile or file is a new image and an unchanged one
// is not built again.
func ArchiveName(dir string) (string, error) {
	envDir := filepath.Join(dir, EnvironmentDir)
	h := sha256.New()
	err := filepath.WalkDir(envDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(envDir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o\n", filepath.ToSlash(rel), fi.Mode())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q\n", target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "\n%d\n", n)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading the build context: %w", err)
	}
	task := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, filepath.Base(filepath.Clean(dir)))
	task = strings.TrimLeft(task, ".")
	if task == "" {
		return "", errors.New("the folder's name has no character an archive name may have")
	}
	return ArchivesSubdir + "/" + task + "-" + hex.EncodeToString(h.Sum(nil)[:8]) + ".tar", nil
}
