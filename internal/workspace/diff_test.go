package workspace

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiffRoundTrip: the diff is taken against the state after setup, and
// applying it to that state gives the final workspace byte for byte:
// binary files, names and contents that are not UTF-8, deletions, modes,
// links, files and directories the agent made unreadable, a .git the
// agent locked (left out, as .git always is).
func TestDiffRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Files: map[string][]byte{
			"calc.py":       []byte("def add(a, b):\n    return a + b\n"),
			"keep.txt":      []byte("unchanged\n"),
			"gone.txt":      []byte("bye\n"),
			"bin.dat":       {0, 1, 2, 0xff},
			"run.sh":        []byte("#!/bin/sh\necho hi\n"),
			"sub/deep/a.py": []byte("x = 1\n"),
		}})
		// setup breaks the repository, as a SWE-style task's does.
		obs, err := w.Exec(context.Background(), `sed -i 's/a + b/a - b/' calc.py && git init -q . && echo setup > setup.txt`, 0)
		if err != nil || obs.ExitCode != 0 {
			t.Fatalf("setup: %+v %v", obs, err)
		}
		if err := w.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
		obs = bash(t, w, `set -e
sed -i 's/a - b/a + b/' calc.py
rm gone.txt
printf '\x00\x03\xfe' >> bin.dat
printf 'caf\xe9\n' > latin1.txt
printf 'x\xff\n' > "$(printf 'n\xffame.bin')"
chmod +x run.sh
ln -s sub/deep/a.py link
mkdir locked && echo secret > locked/inside.txt && chmod 000 locked
echo hidden > unreadable.txt && chmod 000 unreadable.txt
mkdir -p .git/x && chmod 000 .git/x .git
echo done`)
		if obs.Stdout != "done\n" {
			t.Fatalf("the agent's step: %+v", obs)
		}
		d, err := w.Diff(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Incomplete != "" || d.Truncated {
			t.Fatalf("diff incomplete (%q) or truncated (%v):\n%s", d.Incomplete, d.Truncated, d.Patch)
		}
		if strings.Contains(d.Patch, "setup") || !strings.Contains(d.Patch, "-    return a - b\n+    return a + b\n") {
			t.Errorf("the diff is not the agent's change against the state after setup:\n%s", d.Patch)
		}
		for _, want := range []string{"locked/inside.txt", "unreadable.txt", "n\xffame.bin", "latin1.txt", "gone.txt", "link"} {
			if !strings.Contains(d.Patch, want) {
				t.Errorf("the diff lacks %q:\n%s", want, d.Patch)
			}
		}

		// Apply it to a copy of the state after setup.
		applied := t.TempDir()
		ar, err := os.OpenRoot(applied)
		if err != nil {
			t.Fatal(err)
		}
		defer ar.Close()
		if err := (copier{caps: unbounded(), anyLink: true}).tree(context.Background(), w.base, ar); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("git", "apply", "--binary", "--unsafe-paths", "-")
		cmd.Dir, cmd.Stdin = applied, strings.NewReader(d.Patch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git apply: %v: %s\n%s", err, out, d.Patch)
		}
		// The result and the workspace hold the same: nothing to stage.
		stage := t.TempDir()
		n := stageCount(t, ar, w.work, stage)
		if n != 0 {
			out, _ := exec.Command("find", stage).CombinedOutput()
			t.Errorf("after git apply, %d entries differ from the workspace:\n%s", n, out)
		}
		// The modes and bytes the agent left are as it left them.
		if st, err := os.Stat(filepath.Join(w.dir, liveDir, workDir, "locked")); err != nil || st.Mode().Perm() != 0 {
			t.Errorf("the diff changed the locked directory: %v %v", st, err)
		}
		got, _ := os.ReadFile(filepath.Join(applied, "bin.dat"))
		if !bytes.Equal(got, []byte{0, 1, 2, 0xff, 0, 3, 0xfe}) {
			t.Errorf("bin.dat applied: %x", got)
		}
	})
}

// stageCount stages the differences of x and y into dir and returns how
// many entries differ.
func stageCount(t *testing.T, x, y *os.Root, dir string) int {
	t.Helper()
	xd, err := rootDir(x)
	if err != nil {
		t.Fatal(err)
	}
	defer xd.Close()
	yd, err := rootDir(y)
	if err != nil {
		t.Fatal(err)
	}
	defer yd.Close()
	s := &stager{ctx: context.Background(), stageDir: filepath.Join(dir, "stage")}
	defer s.close()
	if err := s.dir(xd, yd, ""); err != nil {
		t.Fatal(err)
	}
	return s.n
}

// TestDiffIncomplete: what the diff cannot show (a path past PATH_MAX) is
// said, never a patch that looks like the whole change.
func TestDiffIncomplete(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Files: map[string][]byte{"a.txt": []byte("a\n")}})
		obs := bash(t, w, `python3 -c "
import os
for i in range(2100):
    os.mkdir('d'); os.chdir('d')
open('f', 'w').write('x')
print('done')"`)
		if !strings.HasSuffix(obs.Stdout, "done\n") {
			t.Fatalf("making a deep path: %+v", obs)
		}
		d, err := w.Diff(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Incomplete == "" || !strings.Contains(d.Incomplete, "longer than") {
			t.Errorf("a 4,200-byte path: Incomplete %q, patch:\n%.500s", d.Incomplete, d.Patch)
		}
	})
}
