package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/sandbox"
)

// setup is what a workspace test needs: a manager on one backend.
type setup struct {
	backend string
	jail    sandbox.Jail
	m       *Manager
	seeds   string // the manager's SeedRoot
	// root is the jail's root of the workspaces open opens: Image and
	// WritableRoot (none: the host's root). See forEachRoot.
	root Seed
}

// seed is sd on the setup's root, when it has one (an image).
func (s setup) seed(sd Seed) Seed {
	if s.root.Image != nil {
		sd.Image, sd.WritableRoot = s.root.Image, s.root.WritableRoot
	}
	return sd
}

// testLimits keeps steps quick and small.
func testLimits() sandbox.Limits {
	l := sandbox.DefaultLimits()
	l.MemoryBytes = 256 << 20
	l.MaxProcs = 16
	l.MaxFileBytes = 8 << 20
	l.TmpfsBytes = 16 << 20
	return l
}

// forEachBackend runs fn with a manager on every backend present.
func forEachBackend(t *testing.T, cfg Config, fn func(t *testing.T, s setup)) {
	t.Helper()
	for _, backend := range []string{sandbox.BackendNsjail, sandbox.BackendBwrap} {
		t.Run(backend, func(t *testing.T) {
			fn(t, newSetup(t, backend, cfg))
		})
	}
}

func newSetup(t *testing.T, backend string, cfg Config) setup {
	t.Helper()
	j, err := sandbox.New(backend, sandbox.Config{})
	if errors.Is(err, sandbox.ErrNoJail) {
		t.Skipf("%s: %v", backend, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	// t.TempDir's parent is 0700: the jail's uid must traverse it.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Root == "" {
		cfg.Root = filepath.Join(base, "live")
	}
	if cfg.SeedRoot == "" {
		cfg.SeedRoot = filepath.Join(base, "seeds")
		if err := os.Mkdir(cfg.SeedRoot, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewManager(cfg, j, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	})
	return setup{backend: backend, jail: j, m: m, seeds: cfg.SeedRoot}
}

func (s setup) open(t *testing.T, seed Seed) *Workspace {
	t.Helper()
	w, err := s.m.Open(context.Background(), s.seed(seed))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func bash(t *testing.T, w *Workspace, cmd string) Observation {
	t.Helper()
	return bashT(t, w, cmd, 20*time.Second)
}

func bashT(t *testing.T, w *Workspace, cmd string, timeout time.Duration) Observation {
	t.Helper()
	obs, err := w.Bash(context.Background(), cmd, timeout)
	if err != nil {
		t.Fatalf("Bash(%q): %v", cmd, err)
	}
	return obs
}

func TestShellKeepsState(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Files: map[string][]byte{"src/main.py": []byte("print('hi')\n")}})
		obs := bash(t, w, "cd src && export GREETING=hello && FOO=notexported && ls")
		if obs.ExitCode != 0 || obs.Stdout != "main.py\n" || obs.Cwd != "/workspace/src" {
			t.Fatalf("first step: %+v", obs)
		}
		obs = bash(t, w, `echo "$GREETING ${FOO:-unset} $(pwd)"; python3 main.py`)
		if obs.Stdout != "hello unset /workspace/src\nhi\n" {
			t.Errorf("second step: stdout %q, want the exported variable and cwd kept", obs.Stdout)
		}
		obs = bash(t, w, "exit 3")
		if obs.ExitCode != 3 || obs.Cwd != "/workspace/src" {
			t.Errorf("exit 3: %+v", obs)
		}
		obs, err := w.Python(context.Background(), "import os\nprint(os.getcwd(), os.environ['GREETING'])\nraise SystemExit(4)\n", 0)
		if err != nil {
			t.Fatal(err)
		}
		if obs.Stdout != "/workspace/src hello\n" || obs.ExitCode != 4 {
			t.Errorf("python: %+v", obs)
		}
		obs = bash(t, w, "cd /tmp && echo x > /tmp/scratch")
		obs = bash(t, w, "pwd; ls /tmp")
		if obs.Stdout != "/tmp\n" {
			t.Errorf("after cd /tmp: stdout %q, want /tmp kept as cwd and /tmp empty again (fresh per step)", obs.Stdout)
		}
		if !strings.HasPrefix(obs.String(), "[exit code 0 | cwd /tmp | ") {
			t.Errorf("String() = %q", obs.String())
		}
	})
}

// TestExecIgnoresShellState: Exec (setup, test_command) runs in a fresh
// shell at /workspace: the agent's exports (a PATH to a fake python3) and
// working directory do not reach it, and it does not change them.
func TestExecIgnoresShellState(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		bash(t, w, `mkdir -p fake sub && printf '#!/bin/sh\necho fake-pass\n' > fake/python3 && chmod +x fake/python3 && export PATH=/workspace/fake:$PATH MINE=1 && cd sub`)
		if obs := bash(t, w, "python3 -c 'print(1)'"); obs.Stdout != "fake-pass\n" {
			t.Fatalf("the agent's shell should use its PATH: %+v", obs)
		}
		obs, err := w.Exec(context.Background(), `python3 -c 'print("real")'; pwd; echo "${MINE:-unset}"; cd /tmp; export OTHER=1`, 0)
		if err != nil {
			t.Fatal(err)
		}
		if obs.Stdout != "real\n/workspace\nunset\n" || obs.Cwd != JailDir {
			t.Errorf("Exec saw the agent's state: %+v", obs)
		}
		if obs := bash(t, w, `pwd; echo "${OTHER:-unset} $MINE"`); obs.Stdout != "/workspace/sub\nunset 1\n" {
			t.Errorf("Exec changed the agent's state: %+v", obs)
		}
	})
}

func TestTimeoutKeepsShell(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		bash(t, w, "mkdir d && cd d && export A=1")
		obs := bashT(t, w, "cd / && export A=2 && echo before && sleep 30", 1*time.Second)
		if !obs.TimedOut || obs.Stdout != "before\n" || !strings.Contains(obs.Note, "timed out") {
			t.Errorf("timed-out step: %+v", obs)
		}
		if obs.ErrorType != "" {
			t.Errorf("a timeout must not end the attempt: ErrorType %q", obs.ErrorType)
		}
		obs = bash(t, w, "echo $A; pwd")
		if obs.Stdout != "1\n/workspace/d\n" {
			t.Errorf("after the timeout: stdout %q, want the state from before it", obs.Stdout)
		}
	})
}

func TestFileToolsAndDiff(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Files: map[string][]byte{
			"calc.py":  []byte("def add(a, b):\n    return a - b\n"),
			"gone.txt": []byte("bye\n"),
			"bin.dat":  {0, 1, 2},
		}})
		if err := w.EditFile("calc.py", "return a - b", "return a + b"); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFile("/workspace/pkg/new.txt", "new\n"); err != nil {
			t.Fatal(err)
		}
		got, err := w.ReadFile("calc.py", 1, 1)
		if err != nil || got != "    return a + b\n" {
			t.Errorf("ReadFile: %q, %v", got, err)
		}
		var te *ToolError
		if err := w.EditFile("calc.py", "a", "b"); !errors.As(err, &te) || !strings.Contains(te.Msg, "occurs") {
			t.Errorf("ambiguous edit: %v", err)
		}
		if err := w.EditFile("calc.py", "nothere", "b"); !errors.As(err, &te) || !strings.Contains(te.Msg, "not found") {
			t.Errorf("edit of missing text: %v", err)
		}
		if _, err := w.ReadFile("bin.dat", 0, 0); !errors.As(err, &te) || !strings.Contains(te.Msg, "binary") {
			t.Errorf("binary read: %v", err)
		}
		obs := bash(t, w, "rm gone.txt && printf '\\003' >> bin.dat && ls -l pkg/new.txt | cut -d' ' -f3 && python3 -c 'import calc; print(calc.add(2, 3))'")
		if obs.Stdout != "nobody\n5\n" && obs.Stdout != "65534\n5\n" {
			t.Errorf("bash after the tools: %+v", obs)
		}
		d, err := w.Diff(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"diff --git a/calc.py b/calc.py\n", "-    return a - b\n+    return a + b\n",
			"diff --git a/bin.dat b/bin.dat\n", "GIT binary patch\nliteral 4\n",
			"--- a/gone.txt\n+++ /dev/null\n",
			"--- /dev/null\n+++ b/pkg/new.txt\n@@ -0,0 +1 @@\n+new\n",
		} {
			if !strings.Contains(d.Patch, want) {
				t.Errorf("diff lacks %q:\n%s", want, d.Patch)
			}
		}
		if strings.Join(d.Files, ",") != "bin.dat,calc.py,gone.txt,pkg/new.txt" || d.Truncated {
			t.Errorf("files %q truncated %v", d.Files, d.Truncated)
		}
	})
}

// TestStaleManagers: a new manager removes what a crashed one left (its
// lock file unlocked, a tmpfs still mounted), and leaves a live one's.
func TestStaleManagers(t *testing.T) {
	s := newSetup(t, "", Config{})
	root := s.m.cfg.Root
	live := s.open(t, Seed{Files: map[string][]byte{"x": []byte("x")}})
	// A crashed manager: its directory, a workspace with its tmpfs, an
	// unlocked lock file.
	crashed := filepath.Join(root, managerDirPrefix+"99999999-crashed")
	mnt := filepath.Join(crashed, workspacePrefix+"1", liveDir)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountLive(mnt, 1<<20, 100, owner{}); err != nil {
		t.Skipf("no tmpfs here: %v", err)
	}
	if err := os.WriteFile(crashed+lockSuffix, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(Config{Root: root}, s.jail, testLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if _, err := os.Stat(crashed); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the crashed manager's directory is still there: %v", err)
	}
	if ms, _ := mountsBelow(crashed); len(ms) != 0 {
		t.Errorf("its tmpfs is still mounted: %v", ms)
	}
	if obs := bash(t, live, "cat x"); obs.Stdout != "x" {
		t.Errorf("the live manager's workspace was harmed: %+v", obs)
	}
}

func TestReadFileBounds(t *testing.T) {
	s := newSetup(t, "", Config{ObservationBytes: 100})
	var lines []string
	for i := range 30 {
		lines = append(lines, fmt.Sprintf("line %02d", i)) // 8 bytes with the newline
	}
	w := s.open(t, Seed{Files: map[string][]byte{"f.txt": []byte(strings.Join(lines, "\n") + "\n"), "long.txt": []byte(strings.Repeat("x", 500))}})
	for _, tc := range []struct {
		name          string
		offset, limit int
		want          string
	}{
		{"range", 3, 2, "line 03\nline 04\n"},
		{"to the end, bounded", 20, 0, "line 20\nline 21\nline 22\nline 23\nline 24\nline 25\nline 26\nline 27\nline 28\nline 29\n"},
		{"bounded", 0, 0, strings.Join(lines[:12], "\n") + "\n[lines 0 to 11 of 30 shown; read on with offset=12]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := w.ReadFile("f.txt", tc.offset, tc.limit)
			if err != nil || got != tc.want {
				t.Errorf("ReadFile(%d, %d) = %q, %v; want %q", tc.offset, tc.limit, got, err, tc.want)
			}
		})
	}
	got, err := w.ReadFile("long.txt", 0, 0)
	if err != nil || !strings.Contains(got, "bytes omitted") || len(got) > 200 {
		t.Errorf("a line longer than the bound: %q, %v", got, err)
	}
	var te *ToolError
	if _, err := w.ReadFile("f.txt", 31, 0); !errors.As(err, &te) {
		t.Errorf("offset past the end: %v", err)
	}
	if _, err := w.ReadFile("missing.txt", 0, 0); !errors.As(err, &te) || !strings.Contains(te.Msg, "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := w.ReadFile(".", 0, 0); !errors.As(err, &te) {
		t.Errorf("a directory: %v", err)
	}
}
