package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// hostOnlyFile is a file the host has and no test image.
const hostOnlyFile = "/usr/lib/os-release"

var (
	testImages    atomic.Int64
	testStoreOnce sync.Once
	testStore     *imagestore.Store
	testStoreErr  error
	testStoreMu   sync.Mutex
	testStoreDir  string // removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	testStoreMu.Lock()
	if testStore != nil {
		testStore.Close()
	}
	if testStoreDir != "" {
		os.RemoveAll(testStoreDir)
	}
	testStoreMu.Unlock()
	os.Exit(code)
}

// testImage imports an image (the host's python3.11, bash and a few
// coreutils, then files) into the test binary's store, where the base
// layers are unpacked once, and returns it as a jail's root.
func testImage(t testing.TB, config v1.Config, files ...testsupport.ImageFile) *sandbox.Image {
	t.Helper()
	testStoreOnce.Do(func() {
		dir, err := os.MkdirTemp("", "adp-workspace-images-")
		if err != nil {
			testStoreErr = err
			return
		}
		testStoreMu.Lock()
		testStoreDir = dir
		testStoreMu.Unlock()
		if testStoreErr = os.Chmod(dir, 0o755); testStoreErr != nil {
			return
		}
		testStore, testStoreErr = imagestore.Open(imagestore.Config{Dir: filepath.Join(dir, "store"), MaxGB: 2})
	})
	if testStoreErr != nil {
		t.Fatal(testStoreErr)
	}
	name := fmt.Sprintf("test/ws:%d", testImages.Add(1))
	archive := testsupport.WorkspaceImageArchive(t, name, config, files...)
	ctx := context.Background()
	if _, err := testStore.Import(ctx, archive, name); err != nil {
		t.Fatal(err)
	}
	h, err := testStore.Use(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &sandbox.Image{Root: h.Root, Env: h.Config.Env, WorkingDir: h.Config.WorkingDir, User: h.Config.User}
}

// appImage is an image whose working directory is /usr/src/app (a
// directory of the image two levels down), with a user and a variable.
func appImage(t testing.TB) *sandbox.Image {
	return testImage(t, v1.Config{
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "APP_MODE=image"},
		WorkingDir: "/usr/src/app",
	},
		testsupport.ImageFile{Name: "etc", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/bash\n"},
		testsupport.ImageFile{Name: "usr/local", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/local/bin", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app/from-image.txt", Body: "shadowed by the workspace\n"},
	)
}

func TestWorkspaceDirIn(t *testing.T) {
	img := appImage(t)
	for _, tc := range []struct {
		wd       string
		writable bool
		want     string
	}{
		{"", false, JailDir}, {"/", false, JailDir}, {"/usr/src/app", false, "/usr/src/app"}, {"/app", false, "/app"},
		{"/usr/src/missing", false, JailDir}, {"/etc", false, JailDir}, {"/tests", false, JailDir}, {"/tmp/x", false, JailDir},
		{"/usr/../etc", false, JailDir}, {"/Work Dir", false, JailDir},
		// On a writable root the agent could move /usr/src away.
		{"/usr/src/app", true, JailDir}, {"/app", true, "/app"},
	} {
		c := *img
		c.WorkingDir, c.Writable = tc.wd, tc.writable
		if got := workspaceDirIn(&c); got != tc.want {
			t.Errorf("WorkingDir %q (writable %v): workspace at %q, want %q", tc.wd, tc.writable, got, tc.want)
		}
	}
}

func TestImageWorkspace(t *testing.T) {
	if _, err := os.Stat(hostOnlyFile); err != nil {
		t.Skipf("host has no %s: %v", hostOnlyFile, err)
	}
	img := appImage(t)
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{Image: img, Files: map[string][]byte{"main.py": []byte("print('hi')\n")}})
		if w.Dir() != "/usr/src/app" {
			t.Fatalf("Dir() = %q", w.Dir())
		}
		obs := bash(t, w, `pwd; id -u; echo "$APP_MODE $BASH"; ls; test -e `+hostOnlyFile+` && echo host-visible
python3 main.py
(echo x > /usr/x) 2>/dev/null && echo wrote-usr
(echo x > /usr/local/bin/x) 2>/dev/null && echo wrote-local
echo new > made.txt; mkdir sub; cd sub`)
		want := "/usr/src/app\n0\nimage /usr/bin/bash\nmain.py\nhi\n"
		if obs.Stdout != want || obs.ExitCode != 0 || obs.Cwd != "/usr/src/app/sub" {
			t.Errorf("step in the image: %+v, want stdout %q", obs, want)
		}
		if obs := bash(t, w, "pwd"); obs.Stdout != "/usr/src/app/sub\n" {
			t.Errorf("the shell's directory did not carry over: %+v", obs)
		}
		// The file tools take paths beneath the image's working directory.
		if err := w.WriteFile("/usr/src/app/sub/t.txt", "tool\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := w.ReadFile("/workspace/main.py", 0, 0); err == nil {
			t.Error("ReadFile took a path outside the workspace's directory")
		}
		d, err := w.Diff(context.Background(), 0)
		if err != nil || d.Incomplete != "" {
			t.Fatalf("Diff: %+v %v", d, err)
		}
		if got := strings.Join(d.Files, ","); got != "made.txt,sub/t.txt" {
			t.Errorf("diff files %q", got)
		}
		// The check: hidden tests at /tests, the reward in /logs/verifier.
		v, err := w.Verify(context.Background(), Check{
			Command:   "bash /tests/test.sh",
			TestFiles: map[string][]byte{"test.sh": []byte("#!/bin/bash\ncd /usr/src/app && test \"$(cat made.txt)\" = new && echo 1 > /logs/verifier/reward.txt\n")},
		})
		if err != nil || !v.Passed || v.Reward == nil || *v.Reward != 1 {
			t.Errorf("Verify: %+v %v", v, err)
		}
		// The image's own copy of its working directory is untouched.
		if b, err := os.ReadFile(filepath.Join(img.Root, "usr/src/app/from-image.txt")); err != nil || string(b) != "shadowed by the workspace\n" {
			t.Errorf("image file: %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(img.Root, "usr/src/app/made.txt")); err == nil {
			t.Error("a step wrote into the image store")
		}
	})
}

func TestImageWorkspaceNoBash(t *testing.T) {
	img := testImage(t, v1.Config{Env: []string{"PATH=/opt/none"}})
	s := newSetup(t, sandbox.BackendBwrap, Config{})
	_, err := s.m.Open(context.Background(), Seed{Image: img})
	var se *SeedError
	if !errors.As(err, &se) || !strings.Contains(se.Reason, "no bash") {
		t.Errorf("Open on an image without bash: %v, want a SeedError naming bash", err)
	}
	odd := *img
	odd.User = "nobody-here"
	if _, err := s.m.Open(context.Background(), Seed{Image: &odd}); !errors.As(err, &se) || !strings.Contains(se.Reason, "nobody-here") {
		t.Errorf("Open on an image whose user it lacks: %v, want a SeedError naming the user", err)
	}
	if _, err := s.m.Open(context.Background(), Seed{WritableRoot: true}); !errors.As(err, &se) {
		t.Errorf("a writable root without an image: %v, want a SeedError", err)
	}
}

// TestWritableRoot: setup can install into the image's root; what it
// writes stays in the workspace (never the store, never another
// workspace) and counts against the workspace's cap; / itself stays
// read-only.
func TestWritableRoot(t *testing.T) {
	img := appImage(t)
	forEachBackend(t, Config{MaxBytes: 8 << 20}, func(t *testing.T, s setup) {
		if !s.m.canMount() {
			t.Skip("this runtime cannot mount: a writable root is refused (TestWritableRootRefused)")
		}
		w := s.open(t, Seed{Image: img, WritableRoot: true})
		other := s.open(t, Seed{Image: img, WritableRoot: true})
		obs := bash(t, w, `set -e
mkdir -p /usr/local/lib/pkg
printf 'VALUE = 42\n' > /usr/local/lib/pkg/mod.py
printf '#!/bin/bash\necho tool-ran\n' > /usr/local/bin/tool; chmod +x /usr/local/bin/tool
echo "root2:x:0:0::/:/bin/bash" >> /etc/passwd
tool
cd /tmp && PYTHONPATH=/usr/local/lib python3 -c 'import pkg.mod; print(pkg.mod.VALUE)'
(mkdir /newtop) 2>/dev/null && echo made-top || echo no-top
stat -c %u /usr/lib`)
		if obs.Stdout != "tool-ran\n42\nno-top\n0\n" || obs.ExitCode != 0 {
			t.Errorf("installing into the root: %+v", obs)
		}
		if obs := bash(t, other, `ls /usr/local/bin; grep -c root2 /etc/passwd`); obs.Stdout != "0\n" {
			t.Errorf("another workspace of the image saw the first one's root: %+v", obs)
		}
		for _, p := range []string{"usr/local/bin/tool", "usr/local/lib"} {
			if _, err := os.Lstat(filepath.Join(img.Root, p)); err == nil {
				t.Errorf("%s reached the image store", p)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(img.Root, "etc/passwd")); strings.Contains(string(b), "root2") {
			t.Error("the store's /etc/passwd was changed")
		}
		// What the root's upper layer holds counts against the cap.
		// (Exec: no shell state saved after it, whose rename would free
		// a block of the full tmpfs.)
		obs, err := w.Exec(context.Background(), `for i in 1 2; do dd if=/dev/zero of=/usr/local/big$i bs=1M count=6 2>/dev/null; done; echo done`, 0)
		if err != nil {
			t.Fatal(err)
		}
		if obs.ErrorType != "output_limit" {
			t.Errorf("12 MiB into the root of an 8 MiB workspace: %+v", obs)
		}
		// A root the agent broke ends its attempt (not a jail failure,
		// which the runtime would retry); the check still runs on
		// setup's root.
		broken := s.open(t, Seed{Image: img, WritableRoot: true})
		bash(t, broken, "rm /usr/bin/bash")
		if obs := bash(t, broken, "echo hi"); obs.ErrorType != core.ErrRuntime || !strings.Contains(obs.Note, "/usr/bin/bash is gone") {
			t.Errorf("a step after bash was removed: %+v", obs)
		}
		if v, err := broken.Verify(context.Background(), Check{Command: "true"}); err != nil || !v.Passed {
			t.Errorf("the check after bash was removed: %+v %v", v, err)
		}
		// The diff is the work directory's alone.
		w2 := s.open(t, Seed{Image: img, WritableRoot: true, Files: map[string][]byte{"a.txt": []byte("a\n")}})
		bash(t, w2, `echo b > b.txt; echo x > /usr/local/x`)
		if d, err := w2.Diff(context.Background(), 0); err != nil || strings.Join(d.Files, ",") != "b.txt" {
			t.Errorf("diff with a writable root: %+v %v", d, err)
		}
	})
}

// TestWritableRootRefused: where the runtime cannot mount, a writable
// root is refused with ErrNoOverlay, and nothing is left behind.
func TestWritableRootRefused(t *testing.T) {
	img := appImage(t)
	s := newSetup(t, sandbox.BackendBwrap, Config{MaxOpen: 1})
	s.m.noTmpfs.Store(true)
	_, err := s.m.Open(context.Background(), Seed{Image: img, WritableRoot: true})
	if !errors.Is(err, ErrNoOverlay) {
		t.Fatalf("Open: %v, want ErrNoOverlay", err)
	}
	// The slot was freed, the directory removed.
	w := s.open(t, Seed{Image: img})
	if entries, _ := filepath.Glob(filepath.Join(s.m.dir, workspacePrefix+"*")); len(entries) != 1 {
		t.Errorf("workspace directories: %v, want only the open one", entries)
	}
	w.Close()
}

// TestVerifyOnSetupRoot: the check of a workspace with a writable root
// runs on the root setup left: what setup installed is there, what the
// agent changed, added or removed in the root afterwards is not (it
// could have replaced the check's interpreter); the agent's root is as
// the agent left it after the check.
func TestVerifyOnSetupRoot(t *testing.T) {
	img := appImage(t)
	forEachBackend(t, Config{}, func(t *testing.T, s setup) {
		if !s.m.canMount() {
			t.Skip("this runtime cannot mount")
		}
		w := s.open(t, Seed{Image: img, WritableRoot: true})
		ctx := context.Background()
		if obs, err := w.Exec(ctx, `printf '#!/bin/bash\necho setup-tool\n' > /usr/local/bin/tool && chmod +x /usr/local/bin/tool`, 0); err != nil || obs.ExitCode != 0 {
			t.Fatalf("setup: %+v %v", obs, err)
		}
		if err := w.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
		obs := bash(t, w, `printf '#!/bin/bash\necho agent-tool\n' > /usr/local/bin/tool; touch /usr/local/bin/agentonly
rm /usr/bin/python3.11; printf '#!/bin/bash\nexit 0\n' > /usr/bin/python3; chmod +x /usr/bin/python3; tool`)
		if obs.Stdout != "agent-tool\n" {
			t.Fatalf("the agent's changes to the root: %+v", obs)
		}
		for range 2 { // a second check sees the same root
			v, err := w.Verify(ctx, Check{Command: `tool; test -e /usr/bin/python3.11 && python3 -c 'print("real python")'; test -e /usr/local/bin/agentonly || echo clean`})
			if err != nil || !v.Passed || v.Stdout != "setup-tool\nreal python\nclean\n" {
				t.Errorf("the check's root is not setup's: %+v %v", v, err)
			}
		}
		if obs := bash(t, w, "tool; ls /usr/local/bin/agentonly"); obs.Stdout != "agent-tool\n/usr/local/bin/agentonly\n" {
			t.Errorf("the agent's root after the check: %+v", obs)
		}
	})
}

// canMount reports whether the manager's workspaces are tmpfs mounts
// (so overlays can be mounted too).
func (m *Manager) canMount() bool {
	w, err := m.Open(context.Background(), Seed{})
	if err != nil {
		return false
	}
	defer w.Close()
	return w.tmpfs
}

// TestOpenPrepared: k attempts arriving together run the setup once;
// each starts from the post-setup state (files, the shell's exports and
// directory, the writable root), its diff is against that state, and no
// attempt's writes reach the snapshot or another attempt.
func TestOpenPrepared(t *testing.T) {
	img := appImage(t)
	for _, tc := range []struct {
		name string
		seed Seed
		// copies: the manager behaves as one that cannot mount (plain
		// directories, attempts copied from the snapshot).
		copies bool
	}{
		{"host-root", Seed{Files: map[string][]byte{"a.txt": []byte("seed\n")}}, false},
		{"host-root-copies", Seed{Files: map[string][]byte{"a.txt": []byte("seed\n")}}, true},
		{"image-writable-root", Seed{Image: img, WritableRoot: true, Files: map[string][]byte{"a.txt": []byte("seed\n")}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, Config{MaxSnapshots: 1}, func(t *testing.T, s setup) {
				if tc.seed.WritableRoot && !s.m.canMount() {
					t.Skip("this runtime cannot mount")
				}
				if tc.copies {
					s.m.noTmpfs.Store(true)
				}
				testOpenPrepared(t, s, tc.seed)
			})
		})
	}
}

func testOpenPrepared(t *testing.T, s setup, seed Seed) {
	ctx := context.Background()
	var runs atomic.Int32
	setupCmd := `echo setup > s.txt; mkdir -p sub; cd sub; export FROM_SETUP=yes`
	if seed.WritableRoot {
		setupCmd += `; echo installed > /usr/local/bin/pkg.txt`
	}
	setupFn := func(ctx context.Context, w *Workspace) (any, error) {
		runs.Add(1)
		obs, err := w.Bash(ctx, setupCmd, 0)
		if err != nil {
			return nil, err
		}
		if obs.ExitCode != 0 {
			return obs, fmt.Errorf("setup failed: %+v", obs)
		}
		return obs.Stdout + "recorded", nil
	}
	key := SnapshotKey("task-1", seed, []string{setupCmd})
	const k = 4
	preps := make([]Prepared, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			preps[i], errs[i] = s.m.OpenPrepared(ctx, key, seed, setupFn)
		}()
	}
	wg.Wait()
	reused := 0
	for i := range k {
		if errs[i] != nil {
			t.Fatalf("OpenPrepared %d: %v", i, errs[i])
		}
		t.Cleanup(func() { preps[i].Workspace.Close() })
		if preps[i].Record != "recorded" {
			t.Errorf("attempt %d: record %v", i, preps[i].Record)
		}
		if preps[i].Reused {
			reused++
		}
	}
	if runs.Load() != 1 || reused != k-1 {
		t.Fatalf("setup ran %d times for %d attempts (%d reused), want once", runs.Load(), k, reused)
	}
	check := `pwd; echo "$FROM_SETUP"; cat ../s.txt ../a.txt`
	if seed.WritableRoot {
		check += `; cat /usr/local/bin/pkg.txt`
	}
	for i, p := range preps {
		w := p.Workspace
		want := w.Dir() + "/sub\nyes\nsetup\nseed\n"
		if seed.WritableRoot {
			want += "installed\n"
		}
		if obs := bash(t, w, check); obs.Stdout != want {
			t.Errorf("attempt %d does not start from the post-setup state: %+v, want %q", i, obs, want)
		}
		if d, err := w.Diff(ctx, 0); err != nil || len(d.Files) != 0 {
			t.Errorf("attempt %d: diff before any change %+v %v, want none (the base is the post-setup state)", i, d, err)
		}
	}
	// One attempt removes and changes setup's files and its root's;
	// the others and the snapshot keep theirs.
	w0 := preps[0].Workspace
	wrote := `rm ../s.txt; echo changed > ../a.txt; echo mine > ../only0.txt`
	if seed.WritableRoot {
		wrote += `; rm /usr/local/bin/pkg.txt`
	}
	if obs := bash(t, w0, wrote); obs.ExitCode != 0 {
		t.Fatalf("attempt 0's changes: %+v", obs)
	}
	d, err := w0.Diff(ctx, 0)
	if err != nil || strings.Join(d.Files, ",") != "a.txt,only0.txt,s.txt" {
		t.Errorf("attempt 0's diff: %+v %v", d, err)
	}
	if !strings.Contains(d.Patch, "-setup") || !strings.Contains(d.Patch, "+changed") {
		t.Errorf("attempt 0's patch:\n%s", d.Patch)
	}
	for i, p := range preps[1:] {
		want := p.Workspace.Dir() + "/sub\nyes\nsetup\nseed\n"
		if seed.WritableRoot {
			want += "installed\n"
		}
		if obs := bash(t, p.Workspace, check+"; ls ../only0.txt 2>/dev/null"); obs.Stdout != want {
			t.Errorf("attempt %d saw attempt 0's writes: %+v", i+1, obs)
		}
	}
	if seed.WritableRoot {
		// Attempt 0's check sees setup's root, not attempt 0's.
		v, err := w0.Verify(ctx, Check{Command: "cat /usr/local/bin/pkg.txt"})
		if err != nil || !v.Passed || v.Stdout != "installed\n" {
			t.Errorf("attempt 0's check: %+v %v", v, err)
		}
	}
	snap := w0.snap
	if b, err := os.ReadFile(filepath.Join(snap.work, "s.txt")); err != nil || string(b) != "setup\n" {
		t.Errorf("the snapshot changed: %q %v", b, err)
	}
	if snap.overlay == s.m.noTmpfs.Load() {
		t.Errorf("snapshot overlay %v on a manager whose tmpfs is off: %v", snap.overlay, s.m.noTmpfs.Load())
	}
	if snap.overlay {
		// Read-only even to the runtime.
		if err := os.WriteFile(filepath.Join(snap.work, "x"), nil, 0o644); err == nil {
			t.Error("the snapshot is writable on the host")
		}
	}
	// A later attempt still starts from the snapshot; another key evicts
	// this one only once no workspace starts from it (MaxSnapshots 1).
	p, err := s.m.OpenPrepared(ctx, key, seed, setupFn)
	if err != nil || !p.Reused || runs.Load() != 1 {
		t.Fatalf("a later attempt: %+v %v (setup ran %d times)", p, err, runs.Load())
	}
	p.Workspace.Close()
	other := seed
	other.Files = map[string][]byte{"b.txt": []byte("other\n")}
	q, err := s.m.OpenPrepared(ctx, SnapshotKey("task-2", other, nil), other, func(context.Context, *Workspace) (any, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer q.Workspace.Close()
	if n := s.m.Snapshots(); n != 2 {
		t.Errorf("%d snapshots kept while both are in use, want 2", n)
	}
	for _, p := range preps {
		p.Workspace.Close()
	}
	if n := s.m.Snapshots(); n != 1 {
		t.Errorf("%d snapshots kept after the first one's attempts closed, want 1 (MaxSnapshots)", n)
	}
	if _, err := os.Stat(snap.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the evicted snapshot's directory is still there: %v", err)
	}
}

// TestOpenPreparedSetupFails: a failing setup keeps no snapshot; its
// error and record reach the caller, and the next caller runs it again.
func TestOpenPreparedSetupFails(t *testing.T) {
	s := newSetup(t, sandbox.BackendBwrap, Config{})
	var runs atomic.Int32
	fail := errors.New("setup command 1 failed")
	fn := func(ctx context.Context, w *Workspace) (any, error) {
		runs.Add(1)
		return "steps", fail
	}
	for range 2 {
		p, err := s.m.OpenPrepared(context.Background(), "k", Seed{}, fn)
		if !errors.Is(err, fail) || p.Record != "steps" || p.Workspace != nil {
			t.Fatalf("OpenPrepared: %+v %v", p, err)
		}
	}
	if runs.Load() != 2 || s.m.Snapshots() != 0 {
		t.Errorf("setup ran %d times, %d snapshots kept", runs.Load(), s.m.Snapshots())
	}
}
