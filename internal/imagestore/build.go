package imagestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Engines are the container engines that build images from Dockerfiles
// (`adpctl env build`, `adpctl import harbor`), in the order FindEngine
// tries them.
var Engines = []string{"docker", "podman"}

// engineProbeTimeout bounds `ENGINE version`, which FindEngine runs to
// tell an engine that serves from a client without a daemon.
const engineProbeTimeout = 10 * time.Second

// ErrNoEngine is FindEngine's error when no engine can build.
var ErrNoEngine = errors.New("no container engine")

// FindEngine returns the path of the first of Engines (or only want, when
// set) that is on PATH (lookPath; nil: exec.LookPath) and answers
// `version`: a docker client whose daemon is not running is passed over
// for podman, which needs none.
func FindEngine(ctx context.Context, want string, lookPath func(string) (string, error)) (string, error) {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	candidates := Engines
	if want != "" {
		candidates = []string{want}
	}
	var why []string
	for _, c := range candidates {
		p, err := lookPath(c)
		if err != nil {
			why = append(why, c+" not found on PATH")
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, engineProbeTimeout)
		err = exec.CommandContext(pctx, p, "version").Run()
		cancel()
		if err != nil {
			why = append(why, fmt.Sprintf("%s does not answer (%s version: %v)", c, c, err))
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("%w: %s; building an image needs docker or podman, or build it elsewhere and import its `docker save` archive (adpctl env import)", ErrNoEngine, strings.Join(why, ", "))
}

// BuildArchive builds the Dockerfile of the build context dir with the
// engine (a path FindEngine returned) and saves the image as a docker
// archive at archive, written whole or not at all (a temporary file
// renamed into place); the engine's copy is removed. The engine's output
// goes to out.
func BuildArchive(ctx context.Context, engine, dir, archive string, out io.Writer) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("build context %s: not a directory", dir)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	tag := "localhost/adp-build-" + hex.EncodeToString(b[:]) + ":latest"
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, engine, args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %s %s: %w", dir, filepath.Base(engine), args[0], err)
		}
		return nil
	}
	if err := run("build", "-t", tag, dir); err != nil {
		return err
	}
	defer func() { _ = exec.Command(engine, "rmi", tag).Run() }() // the engine's copy is not needed
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	tmp := archive + ".tmp-" + hex.EncodeToString(b[:])
	defer os.Remove(tmp)
	if err := run("save", "-o", tmp, tag); err != nil {
		return err
	}
	// The engine may write the file with its own umask; runtimes of
	// another user read it.
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	if err := os.Rename(tmp, archive); err != nil {
		return fmt.Errorf("build %s: %w", dir, err)
	}
	return nil
}
