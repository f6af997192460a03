package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// EnvironmentArchivePrefix marks an environment read from an image archive
// under SANDBOX_IMAGE_ARCHIVES ("archive:NAME"), as imagestore.Store.Get
// takes it.
const EnvironmentArchivePrefix = "archive:"

// ValidateEnvironment checks a task's environment: "archive:NAME" with
// NAME a clean relative path, or a registry reference that names its tag
// or digest ("python:3.12-slim", "ghcr.io/org/img@sha256:..."): a task's
// records must say which image they ran in, and "latest" moves.
func ValidateEnvironment(env string) error {
	if rel, ok := strings.CutPrefix(env, EnvironmentArchivePrefix); ok {
		if err := ValidateWorkspacePath(rel); err != nil {
			return fmt.Errorf("archive %q: %w (an image archive under SANDBOX_IMAGE_ARCHIVES)", rel, err)
		}
		return nil
	}
	if strings.TrimSpace(env) != env || env == "" {
		return errors.New("an image reference without spaces")
	}
	ref, err := name.ParseReference(env)
	if err != nil {
		return fmt.Errorf("%q is not an image reference (e.g. python:3.12-slim): %w", env, err)
	}
	if _, isTag := ref.(name.Tag); isTag && !strings.Contains(env[strings.LastIndexByte(env, '/')+1:], ":") {
		return fmt.Errorf("%q names no tag or digest (e.g. python:3.12-slim)", env)
	}
	return nil
}
