package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCommandWithBinds: a run of another command (bash) with a writable
// bind as its working directory and a read-only one: the command writes
// only the first, as the jail's uid, and nothing else of the jail changes
// (the root stays read-only, the rest as jailed as a Python program).
func TestCommandWithBinds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		uid, gid := s.jail.Owner()
		rw, ro := t.TempDir(), t.TempDir()
		// t.TempDir's parent is 0700: the jail's uid must traverse it.
		if err := os.Chmod(filepath.Dir(rw), 0o711); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{rw, ro} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(ro, "seed.txt"), []byte("seed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		script := `set -u
pwd
id -u
echo written > out.txt && echo wrote-rw
cat /seed/seed.txt
echo x > /seed/x 2>/dev/null && echo wrote-ro
echo x > /usr/x 2>/dev/null && echo wrote-usr
echo x > /x 2>/dev/null && echo wrote-root
for c in bash ls cat grep sed find diff patch git python3 env mkdir rm; do command -v $c >/dev/null || echo "missing $c"; done
echo "$SANDBOX_RUN_ID" | wc -c
`
		res, err := s.jail.Run(context.Background(), Request{
			Code:   script,
			Argv:   []string{"/bin/bash", "--norc", "--noprofile", jailCodeDir + "/" + scriptName},
			Binds:  []Bind{{Host: rw, Jail: "/workspace", Writable: true}, {Host: ro, Jail: "/seed"}},
			Dir:    "/workspace",
			Limits: testLimits(),
		})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		wantStdout(t, res, "/workspace\n65534\nwrote-rw\nseed\n17\n")
		got, err := os.ReadFile(filepath.Join(rw, "out.txt"))
		if err != nil || string(got) != "written\n" {
			t.Errorf("out.txt on the host: %q, %v", got, err)
		}
		var st os.FileInfo
		if st, err = os.Stat(filepath.Join(rw, "out.txt")); err == nil {
			if o := fileOwner(st); o != uid {
				t.Errorf("out.txt is owned by %d on the host, want the jail's %d", o, uid)
			}
		}
		if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
			t.Error("the read-only bind was written")
		}
		assertNoLeftovers(t, s, res.RunID)
		assertQuiet(t, s)
	})
}

func TestSpecRejects(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	py := interpreter{path: DefaultPythonPath}
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"relative argv", Request{Argv: []string{"bash"}}, "absolute"},
		{"bind over /usr", Request{Binds: []Bind{{Host: dir, Jail: "/usr"}}}, "bind target"},
		{"bind over /tmp", Request{Binds: []Bind{{Host: dir, Jail: "/tmp"}}}, "bind target"},
		{"nested target", Request{Binds: []Bind{{Host: dir, Jail: "/usr/x"}}}, "bind target"},
		{"root target", Request{Binds: []Bind{{Host: dir, Jail: "/"}}}, "bind target"},
		{"dotdot target", Request{Binds: []Bind{{Host: dir, Jail: "/a/../usr"}}}, "bind target"},
		{"twice", Request{Binds: []Bind{{Host: dir, Jail: "/a"}, {Host: dir, Jail: "/a"}}}, "twice"},
		{"relative source", Request{Binds: []Bind{{Host: "rel", Jail: "/a"}}}, "clean absolute"},
		{"colon in source", Request{Binds: []Bind{{Host: dir + ":x", Jail: "/a"}}}, "clean absolute"},
		{"symlinked source", Request{Binds: []Bind{{Host: link, Jail: "/a"}}}, "not a directory"},
		{"relative dir", Request{Dir: "workspace"}, "working directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := specOf(tc.req, py)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("specOf: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func fileOwner(st os.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}
