package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The nsjail stage's RUN, run by /bin/sh (as the builder runs it) with its
// paths moved under a temporary directory and stub build tools on PATH:
// a build that cannot produce nsjail must fail and say how to give a
// prebuilt one; one that can must leave /out/nsjail. No container engine.
func TestDockerfileSandboxNsjailStage(t *testing.T) {
	t.Parallel()
	ns := loadDockerfile(t, "Dockerfile.sandbox").stage("nsjail")
	if ns == nil {
		t.Fatal("no nsjail build stage")
	}
	runs := ns.all("RUN")
	if len(runs) != 1 {
		t.Fatalf("nsjail stage has %d RUN instructions, want 1", len(runs))
	}
	cases := []struct {
		name       string
		jail       string
		binary     bool   // NSJAIL_BINARY given
		failing    string // the stub tool that fails ("" none)
		wantExit   bool   // the build succeeds
		wantNsjail bool   // /out/nsjail exists afterwards
		wantStderr []string
	}{
		{name: "built", jail: "nsjail", wantExit: true, wantNsjail: true},
		{name: "apt-get fails", jail: "nsjail", failing: "apt-get", wantStderr: []string{"cannot build nsjail", "NSJAIL_BINARY=prebuilt/nsjail", "SANDBOX_JAIL=bwrap"}},
		{name: "clone fails", jail: "nsjail", failing: "git", wantStderr: []string{"cannot build nsjail", "NSJAIL_BINARY=prebuilt/nsjail"}},
		{name: "make fails", jail: "nsjail", failing: "make", wantStderr: []string{"cannot build nsjail", "prebuilt"}},
		{name: "prebuilt", jail: "nsjail", binary: true, failing: "git", wantExit: true, wantNsjail: true},
		{name: "bwrap", jail: "bwrap", failing: "git", wantExit: true},
		{name: "unknown jail", jail: "docker", wantStderr: []string{"want nsjail or bwrap"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			stubs := filepath.Join(root, "stubs")
			must(t, os.MkdirAll(stubs, 0o755))
			must(t, os.MkdirAll(filepath.Join(root, "tmp/jail"), 0o755))
			// git clone … DIR makes DIR; make -C DIR makes DIR/nsjail;
			// install -s strips with strip.
			tools := map[string]string{
				"apt-get": "exit 0",
				"git":     `for a; do d=$a; done; mkdir -p "$d"`,
				"make":    `printf '#!/bin/sh\n' >"$2/nsjail"`,
				"strip":   "exit 0",
			}
			for name, body := range tools {
				if name == c.failing {
					body = "echo " + name + ": failed >&2; exit 100"
				}
				must(t, os.WriteFile(filepath.Join(stubs, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
			}
			env := []string{"PATH=" + stubs + ":/usr/bin:/bin", "SANDBOX_JAIL=" + c.jail, "NSJAIL_VERSION=3.6", "NSJAIL_BINARY="}
			if c.binary {
				must(t, os.WriteFile(filepath.Join(root, "tmp/jail/nsjail"), []byte("#!/bin/sh\n"), 0o644))
				env[len(env)-1] = "NSJAIL_BINARY=prebuilt/nsjail"
			}
			script := strings.NewReplacer("/out", root+"/out", "/tmp/jail", root+"/tmp/jail", "/src/nsjail", root+"/src/nsjail").Replace(runs[0])
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if (err == nil) != c.wantExit {
				t.Fatalf("build step: %v, want success %v\n%s", err, c.wantExit, stderr.String())
			}
			_, statErr := os.Stat(filepath.Join(root, "out/nsjail"))
			if (statErr == nil) != c.wantNsjail {
				t.Errorf("/out/nsjail exists: %v, want %v", statErr == nil, c.wantNsjail)
			}
			for _, w := range c.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
