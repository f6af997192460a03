package testsupport

import (
	"os/exec"
	"testing"
)

// RequireLocalImage skips the test unless the container engine (a path
// imagestore.FindEngine returned) has the image ref locally: tests build
// their task images from the local base images of the test environment
// (CI's container env), never from a registry.
func RequireLocalImage(t testing.TB, engine, ref string) {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), engine, "image", "inspect", ref).CombinedOutput(); err != nil {
		t.Skipf("%s has no local %s to build task images from (bash /work/shared/container-env/setup.sh provides it): %v: %.200s", engine, ref, err, out)
	}
}
