package imagestore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindEngine: an engine that does not answer (a docker client whose
// daemon is not there) is passed over and said why; one not on PATH too.
func TestFindEngine(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker client on PATH")
	}
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-daemon.sock"))
	_, err := FindEngine(t.Context(), "docker", nil)
	if !errors.Is(err, ErrNoEngine) || !strings.Contains(err.Error(), "docker does not answer (docker version: ") {
		t.Errorf("a docker client without its daemon: %v", err)
	}
	notFound := func(string) (string, error) { return "", os.ErrNotExist }
	_, err = FindEngine(t.Context(), "", notFound)
	if !errors.Is(err, ErrNoEngine) || !strings.Contains(err.Error(), "docker not found on PATH, podman not found on PATH") {
		t.Errorf("no engine: %v", err)
	}
}
