package workspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// The workspace's security cases (issue 16), per backend present. Each
// runs what an agent could do in its workspace and asserts that the jail
// and the runtime's side contain it; each then checks that nothing of the
// attempt is left running.

// marker returns a fresh variable assignment that a step exports, so that
// every process it starts carries it in its environment.
func newMarker(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ADP_TEST_MARK=" + hex.EncodeToString(b[:])
}

// processesWith lists the live processes whose environment holds marker
// (KEY=VALUE), zombies excluded.
func processesWith(marker string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		env, err := os.ReadFile(p + "/environ")
		if err != nil || !bytes.Contains(append([]byte{0}, env...), []byte("\x00"+marker+"\x00")) {
			continue
		}
		stat, _ := os.ReadFile(p + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		cmd, _ := os.ReadFile(p + "/cmdline")
		out = append(out, p+" "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
	}
	return out
}

func assertNoProcesses(t *testing.T, marker string) {
	t.Helper()
	if ps := processesWith(marker); len(ps) > 0 {
		t.Errorf("processes of the step outlived it: %q", ps)
	}
}

// assertServes: the workspace's shell still works.
func assertServes(t *testing.T, w *Workspace) {
	t.Helper()
	obs := bash(t, w, "echo still-here")
	if obs.ExitCode != 0 || obs.Stdout != "still-here\n" {
		t.Errorf("the shell after the case: %+v", obs)
	}
}

func TestConformanceForkBomb(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		mark := newMarker(t)
		obs := bashT(t, w, "export "+mark+"; bomb() { bomb | bomb & }; bomb; sleep 3; echo survived", 10*time.Second)
		// The runtime counts the jail's processes past MaxProcs and kills
		// the step, saying so (or, between two counts, RLIMIT_NPROC stops
		// it: forks fail); the shell goes on either way.
		killed := strings.Contains(obs.Note, "processes at once and was killed")
		if !killed && !strings.Contains(obs.Stderr, "Resource temporarily unavailable") {
			t.Errorf("the bomb should have met the process limit: note %q, stderr %q", obs.Note, clip(obs.Stderr, 300))
		}
		if !killed && !obs.TimedOut && obs.Stdout != "survived\n" {
			t.Errorf("fork bomb step: %+v", obs)
		}
		assertNoProcesses(t, mark)
		assertServes(t, w)
	})
}

func TestConformanceWritesOutside(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Files: map[string][]byte{"keep.txt": []byte("seed\n")}})
		obs := bash(t, w, `for p in /x /usr/x /etc/x /bin/x /dev/x /sandbox/x /proc/x /workspace/../x /a/x /b/x; do
  (echo pwned > "$p") 2>/dev/null && echo "wrote $p"
done
mkdir /newdir 2>/dev/null && echo "made /newdir"
echo ok > /tmp/t && echo tmp-ok
echo ok > /workspace/w && echo ws-ok`)
		if obs.Stdout != "tmp-ok\nws-ok\n" {
			t.Errorf("writes outside the workspace and /tmp: stdout %q", obs.Stdout)
		}
		// The seed's copy is not reachable from a step.
		seed, err := os.ReadFile(filepath.Join(w.dir, seedDir, "keep.txt"))
		if err != nil || string(seed) != "seed\n" {
			t.Errorf("seed copy: %q %v", seed, err)
		}
		entries, _ := os.ReadDir(filepath.Join(w.dir, seedDir))
		if len(entries) != 1 {
			t.Errorf("seed copy changed: %v", entries)
		}
		assertServes(t, w)
	})
}

func TestConformanceWorkspaceCap(t *testing.T) {
	forEachBackend(t, Config{MaxBytes: 8 << 20, MaxFiles: 200}, func(t *testing.T, s setup) {
		t.Run("bytes", func(t *testing.T) {
			w := s.open(t, Seed{})
			obs := bash(t, w, "for i in 1 2 3 4; do head -c 3000000 /dev/zero > f$i; done; echo done")
			if obs.ErrorType != core.ErrOutputLimit || !strings.Contains(obs.Note, "cap") {
				t.Errorf("filling past 8 MiB: ErrorType %q note %q, want output_limit", obs.ErrorType, obs.Note)
			}
			if !strings.Contains(obs.Stderr, "No space left") {
				t.Errorf("the writer should have seen ENOSPC: stderr %q", obs.Stderr)
			}
			b, _, err := usage(context.Background(), w.work)
			if err != nil || b > 8<<20+stateBytes {
				t.Errorf("workspace holds %d bytes (%v), over its cap", b, err)
			}
			var te *ToolError
			if err := w.WriteFile("more.txt", strings.Repeat("x", 1<<20)); !errors.As(err, &te) || te.ErrorType != core.ErrOutputLimit {
				t.Errorf("WriteFile into a full workspace: %v, want a ToolError with output_limit", err)
			}
		})
		t.Run("files", func(t *testing.T) {
			w := s.open(t, Seed{})
			obs := bash(t, w, "for i in $(seq 1 400); do : > f$i || break; done; ls | wc -l")
			if obs.ErrorType != core.ErrOutputLimit {
				t.Errorf("400 files past a cap of 200: ErrorType %q note %q stdout %q", obs.ErrorType, obs.Note, obs.Stdout)
			}
			if _, n, _ := usage(context.Background(), w.work); n > 200+reservedInodes {
				t.Errorf("workspace holds %d entries, over its cap", n)
			}
		})
		t.Run("seed", func(t *testing.T) {
			_, err := s.m.Open(context.Background(), Seed{Files: map[string][]byte{"big": bytes.Repeat([]byte{1}, 9<<20)}})
			var se *SeedError
			if !errors.As(err, &se) {
				t.Errorf("a seed over the cap: %v, want a SeedError", err)
			}
		})
	})
}

// TestConformanceSymlinkEscape: links the agent made never take a file
// tool, the diff or the state handling out of the workspace.
func TestConformanceSymlinkEscape(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		// A file only the host has, next to the workspaces.
		secret := filepath.Join(filepath.Dir(s.m.dir), "host-secret")
		if err := os.WriteFile(secret, []byte("TOPSECRET\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		w := s.open(t, Seed{Files: map[string][]byte{"ok.txt": []byte("fine\n")}})
		rel, _ := filepath.Rel(filepath.Join(w.dir, liveDir, workDir), secret)
		obs := bash(t, w, `ln -s /etc/shadow shadow; ln -s / root; ln -s /etc etc; ln -s .. up
ln -s `+rel+` hostrel; ln -s `+secret+` hostabs; mkdir d; ln -s ../../../../.. d/deep
ln -s /workspace/ok.txt abs-inside; mkfifo fifo
ln -sf `+secret+` /adp-state/cwd.next; echo done`)
		if obs.Stdout != "done\n" {
			t.Fatalf("making the links: %+v", obs)
		}
		if strings.Contains(obs.Cwd, "TOPSECRET") || obs.Cwd != JailDir {
			t.Errorf("cwd read through a symlink of the state: %q", obs.Cwd)
		}
		var te *ToolError
		for _, p := range []string{"shadow", "root/etc/shadow", "etc/passwd", "up/x", "hostrel", "hostabs", "d/deep/etc/passwd",
			"../host-secret", "/etc/passwd", "/workspace/../x", "fifo"} {
			if got, err := w.ReadFile(p, 0, 0); !errors.As(err, &te) {
				t.Errorf("ReadFile(%q) = %q, %v: want a ToolError", p, got, err)
			}
			if err := w.WriteFile(p, "pwned"); !errors.As(err, &te) {
				t.Errorf("WriteFile(%q): %v, want a ToolError", p, err)
			}
			if err := w.EditFile(p, "TOPSECRET", "pwned"); !errors.As(err, &te) {
				t.Errorf("EditFile(%q): %v, want a ToolError", p, err)
			}
		}
		for _, p := range []string{"root/tmp/x", "etc/x", "up/x", "d/deep/tmp/x"} {
			if err := w.WriteFile(p, "pwned"); !errors.As(err, &te) {
				t.Errorf("WriteFile(%q) through a symlinked directory: %v, want a ToolError", p, err)
			}
		}
		if got, _ := os.ReadFile(secret); string(got) != "TOPSECRET\n" {
			t.Errorf("the host file was changed: %q", got)
		}
		d, err := w.Diff(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(d.Patch, "TOPSECRET") || strings.Contains(d.Patch, "root:") {
			t.Errorf("the diff followed a link:\n%s", d.Patch)
		}
		for _, want := range []string{"+/etc/shadow\n", "new file mode 120000"} {
			if !strings.Contains(d.Patch, want) {
				t.Errorf("the diff should show the links as links (%q):\n%s", want, d.Patch)
			}
		}
		if strings.Join(d.Removed, ",") != "fifo" {
			t.Errorf("Removed = %q, want the FIFO", d.Removed)
		}
		// A step sourcing a state file that is a link to the host's file
		// sees the jail's view (nothing there), never the host's.
		bash(t, w, "ln -sf "+secret+" /adp-state/env")
		obs = bash(t, w, "echo fine")
		if strings.Contains(obs.Stdout+obs.Stderr, "TOPSECRET") {
			t.Errorf("the state link reached the host: %+v", obs)
		}
		assertServes(t, w)
	})
}

func TestConformanceBackgroundProcess(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		mark := newMarker(t)
		obs := bash(t, w, "export "+mark+"; sleep 1000 & (setsid sleep 1000 &); nohup sleep 1000 >/dev/null 2>&1 & echo started")
		if obs.TimedOut || obs.Stdout != "started\n" {
			t.Errorf("background step: %+v", obs)
		}
		assertNoProcesses(t, mark)
		assertServes(t, w)
	})
}

func TestConformanceClosedStdout(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		mark := newMarker(t)
		obs := bashT(t, w, "export "+mark+"; echo before; exec >&- 2>&-; sleep 1000", 2*time.Second)
		if !obs.TimedOut || obs.Stdout != "before\n" {
			t.Errorf("closed-stdout step: %+v", obs)
		}
		assertNoProcesses(t, mark)
		// The same, the process detached and the step exited at once.
		mark2 := newMarker(t)
		obs = bashT(t, w, "export "+mark2+"; (exec >&- 2>&- </dev/null; setsid sleep 1000) & exit 0", 10*time.Second)
		if obs.TimedOut || obs.ExitCode != 0 {
			t.Errorf("detached step: %+v", obs)
		}
		assertNoProcesses(t, mark2)
		assertServes(t, w)
	})
}

func TestConformanceNoRuntimeProc(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		obs := bash(t, w, "ls /proc 2>/dev/null && echo has-proc; cat /proc/1/environ /proc/self/status 2>/dev/null && echo read-proc; "+
			"kill -0 "+strconv.Itoa(os.Getpid())+" 2>/dev/null && echo sees-runtime; ls /sys 2>/dev/null && echo has-sys; echo $$")
		if obs.Stdout != "1\n" {
			t.Errorf("the step saw the runtime's /proc or processes, or is not its pid namespace's init: stdout %q", obs.Stdout)
		}
	})
}

func TestConformanceWorkspacesApart(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		a := s.open(t, Seed{})
		b := s.open(t, Seed{})
		mark := newMarker(t)
		var wg sync.WaitGroup
		var aObs Observation
		wg.Add(1)
		go func() {
			defer wg.Done()
			aObs = bash(t, a, "export "+mark+"; echo secret-of-a > secret.txt; sleep 4; cat secret.txt")
		}()
		// b runs while a holds its jail (its marked sleep is alive).
		deadline := time.Now().Add(15 * time.Second)
		for len(processesWith(mark)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		obs := bash(t, b, `ls -a /workspace; find / -name secret.txt 2>/dev/null; grep -rs secret-of-a /tmp /workspace /adp-state 2>/dev/null; kill -9 -1 2>/dev/null; echo end`)
		if obs.Stdout != ".\n..\nend\n" {
			t.Errorf("b saw a's workspace: stdout %q", obs.Stdout)
		}
		rel := "../../" + filepath.Base(a.dir) + "/" + liveDir + "/" + workDir + "/secret.txt"
		var te *ToolError
		if got, err := b.ReadFile(rel, 0, 0); !errors.As(err, &te) {
			t.Errorf("b.ReadFile(%q) = %q, %v: want a ToolError", rel, got, err)
		}
		wg.Wait()
		if aObs.Stdout != "secret-of-a\n" || aObs.ExitCode != 0 {
			t.Errorf("a's step was disturbed by b: %+v", aObs)
		}
	})
}

// TestConformanceCloseKills: closing a workspace during a step ends the
// step and everything it started, and removes the workspace.
func TestConformanceCloseKills(t *testing.T) {
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w, err := s.m.Open(context.Background(), Seed{})
		if err != nil {
			t.Fatal(err)
		}
		mark := newMarker(t)
		done := make(chan error, 1)
		go func() {
			_, err := w.Bash(context.Background(), "export "+mark+"; sleep 1000", time.Minute)
			done <- err
		}()
		deadline := time.Now().Add(15 * time.Second)
		for len(processesWith(mark)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil {
			t.Error("a step ended by Close returned no error")
		}
		assertNoProcesses(t, mark)
		if _, err := os.Stat(w.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("workspace directory left after Close: %v", err)
		}
	})
}
