package workspace

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarOf builds a tar from entries; gz compresses it.
func tarOf(t *testing.T, gz bool, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w *tar.Writer
	var z *gzip.Writer
	if gz {
		z = gzip.NewWriter(&buf)
		w = tar.NewWriter(z)
	} else {
		w = tar.NewWriter(&buf)
	}
	for _, h := range entries {
		body := []byte(nil)
		if h.Typeflag == tar.TypeReg {
			body = []byte("content of " + h.Name + "\n")
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if z != nil {
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func reg(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }

// TestSeeds: every kind of seed makes the workspace it says, as the jail
// sees it; every bad seed is a SeedError, and the host is untouched.
func TestSeeds(t *testing.T) {
	s := newSetup(t, "", Config{MaxFiles: 50})
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(s.seeds, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir},
		{Name: "repo/", Typeflag: tar.TypeDir},
		reg("repo/a.txt"),
		{Name: "repo/run.sh", Typeflag: tar.TypeReg, Mode: 0o700},
		{Name: "repo/link", Typeflag: tar.TypeSymlink, Linkname: "a.txt"},
		{Name: "repo/hard", Typeflag: tar.TypeLink, Linkname: "repo/a.txt"},
	}
	write("good.tar", tarOf(t, false, good...))
	write("good.tar.gz", tarOf(t, true, good...))
	write("dir/repo/a.txt", []byte("content of repo/a.txt\n"))
	write("dir/repo/run.sh", []byte("content of repo/run.sh\n"))
	if err := os.Chmod(filepath.Join(s.seeds, "dir/repo/run.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(s.seeds, "dir/repo/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.seeds, "dir/repo/a.txt"), filepath.Join(s.seeds, "dir/repo/hard")); err != nil {
		t.Fatal(err)
	}
	const want = "content of repo/a.txt\ncontent of repo/a.txt\ncontent of repo/a.txt\n-rwxr-xr-x\nover\n"
	for _, from := range []string{"good.tar", "good.tar.gz", "dir"} {
		t.Run(from, func(t *testing.T) {
			w := s.open(t, Seed{From: from, Files: map[string][]byte{"repo/extra.txt": []byte("over\n")}})
			obs := bash(t, w, "cat repo/a.txt repo/link repo/hard; ls -l repo/run.sh | cut -c1-10; cat repo/extra.txt; echo x >> repo/a.txt")
			if obs.Stdout != want {
				t.Errorf("stdout %q, want %q (stderr %q)", obs.Stdout, want, obs.Stderr)
			}
			if obs.ExitCode != 0 {
				t.Errorf("the jail cannot write the seeded files: %+v", obs)
			}
		})
	}
	// The seed directory is copied, never changed.
	if got, _ := os.ReadFile(filepath.Join(s.seeds, "dir/repo/a.txt")); string(got) != "content of repo/a.txt\n" {
		t.Errorf("the seed directory was changed: %q", got)
	}

	outside := filepath.Join(filepath.Dir(s.seeds), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.seeds, "escape")); err != nil {
		t.Fatal(err)
	}
	write("linkout/x", []byte("x"))
	if err := os.Symlink("/etc/passwd", filepath.Join(s.seeds, "linkout/passwd")); err != nil {
		t.Fatal(err)
	}
	write("abs.tar", tarOf(t, false, reg("/etc/cron.d/x")))
	write("dotdot.tar", tarOf(t, false, reg("../../x")))
	write("dotdot2.tar", tarOf(t, false, reg("a/../../x")))
	write("symout.tar", tarOf(t, false, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}))
	write("symup.tar", tarOf(t, false, &tar.Header{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../.."}))
	write("through.tar", tarOf(t, false, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "."}, reg("l/../../x")))
	write("symthen.tar", tarOf(t, false, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"}, reg("l")))
	write("hardout.tar", tarOf(t, false, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}))
	write("hardup.tar", tarOf(t, false, &tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../x"}))
	write("dev.tar", tarOf(t, false, &tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}))
	write("fifo.tar", tarOf(t, false, &tar.Header{Name: "p", Typeflag: tar.TypeFifo}))
	many := []*tar.Header{}
	for i := range 60 {
		many = append(many, reg("f"+strings.Repeat("x", i)))
	}
	write("many.tar", tarOf(t, false, many...))
	write("notatar.tar.gz", []byte("plain text"))
	write("file.txt", []byte("x"))
	for _, tc := range []struct {
		name string
		seed Seed
	}{
		{"from dotdot", Seed{From: "../outside"}},
		{"from absolute", Seed{From: "/etc"}},
		{"from through a symlink out", Seed{From: "escape"}},
		{"from missing", Seed{From: "nope.tar"}},
		{"from not an archive", Seed{From: "file.txt"}},
		{"dir with a link out", Seed{From: "linkout"}},
		{"tar absolute", Seed{From: "abs.tar"}},
		{"tar dotdot", Seed{From: "dotdot.tar"}},
		{"tar dotdot inside", Seed{From: "dotdot2.tar"}},
		{"tar symlink out", Seed{From: "symout.tar"}},
		{"tar symlink up", Seed{From: "symup.tar"}},
		{"tar path through a symlink", Seed{From: "through.tar"}},
		{"tar file over a symlink", Seed{From: "symthen.tar"}},
		{"tar hard link out", Seed{From: "hardout.tar"}},
		{"tar hard link up", Seed{From: "hardup.tar"}},
		{"tar device", Seed{From: "dev.tar"}},
		{"tar fifo", Seed{From: "fifo.tar"}},
		{"tar too many files", Seed{From: "many.tar"}},
		{"bad gzip", Seed{From: "notatar.tar.gz"}},
		{"files dotdot", Seed{Files: map[string][]byte{"../x": nil}}},
		{"files absolute", Seed{Files: map[string][]byte{"/tmp/x": nil}}},
		{"files empty name", Seed{Files: map[string][]byte{"": nil}}},
		{"files dot", Seed{Files: map[string][]byte{".": nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.m.Open(context.Background(), tc.seed)
			if err == nil {
				w.Close()
			}
			var se *SeedError
			if !errors.As(err, &se) {
				t.Errorf("Open: %v, want a SeedError", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Error("a seed wrote outside its workspace")
	}
	// Every failed Open gave its slot back and left nothing.
	entries, _ := os.ReadDir(s.m.dir)
	if len(entries) != 0 {
		t.Errorf("failed opens left %d workspaces", len(entries))
	}
}

// countingCtx is a context whose Err reports it cancelled from its limit-th
// call on: a deadline reached after a known amount of work.
type countingCtx struct {
	context.Context
	calls, limit int
}

func (c *countingCtx) Err() error {
	c.calls++
	if c.limit > 0 && c.calls >= c.limit {
		return context.Canceled
	}
	return nil
}

// TestDeepSeeds: seeds whose paths go thousands of directories deep cost
// what they hold (they took minutes), a path past PATH_MAX is refused, and
// the copy-in ends with the task's context however deep the tree.
func TestDeepSeeds(t *testing.T) {
	s := newSetup(t, "", Config{})
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(s.seeds, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chain := func(depth int) []*tar.Header {
		var hs []*tar.Header
		p := ""
		for range depth {
			p += "d/"
			hs = append(hs, &tar.Header{Name: p, Typeflag: tar.TypeDir})
		}
		return append(hs, reg(p+"f"))
	}
	write("deep.tar", tarOf(t, false, chain(2000)...))                         // a 4,001-byte path
	write("toodeep.tar", tarOf(t, false, reg(strings.Repeat("d/", 6000)+"f"))) // 12,001 bytes
	files := map[string][]byte{}
	for i := range 40 {
		files[fmt.Sprintf("%s%d", strings.Repeat("a/", 500), i)] = []byte("x")
	}

	for _, seed := range []Seed{{From: "deep.tar"}, {Files: files}} {
		ctx := &countingCtx{Context: context.Background()}
		w, err := s.m.Open(ctx, seed)
		if err != nil {
			t.Fatalf("Open(%s): %v", seed.From, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// The copy-in checked its context for every entry; stopped part
		// way through, it fails with the context's error and frees its slot.
		total := ctx.calls
		if total < 2000 && seed.From != "" {
			t.Fatalf("Open(%s) checked its context %d times for 2,001 entries", seed.From, total)
		}
		for _, limit := range []int{1, total / 2, total - 1} {
			_, err := s.m.Open(&countingCtx{Context: context.Background(), limit: limit}, seed)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Open(%s) with its context ended after %d of %d checks: %v, want context.Canceled", seed.From, limit, total, err)
			}
		}
	}
	_, err := s.m.Open(context.Background(), Seed{From: "toodeep.tar"})
	var se *SeedError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "PATH_MAX") && !strings.Contains(err.Error(), "path") {
		t.Errorf("a seed path of 12,001 bytes: %v, want a SeedError", err)
	}
	if entries, _ := os.ReadDir(s.m.dir); len(entries) != 0 {
		t.Errorf("stopped opens left %d workspaces", len(entries))
	}
}

// TestWriteThroughInsideLink: a directory link that stays inside the
// workspace is followed by write_file as before the walks went by
// descriptors; one that leads out is refused.
func TestWriteThroughInsideLink(t *testing.T) {
	s := newSetup(t, "", Config{})
	w := s.open(t, Seed{Files: map[string][]byte{"real/a.txt": []byte("a\n")}})
	if obs := bash(t, w, "ln -s real inside && ln -s /tmp out && echo ok"); obs.Stdout != "ok\n" {
		t.Fatalf("links: %+v", obs)
	}
	if err := w.WriteFile("inside/sub/b.txt", "b\n"); err != nil {
		t.Fatalf("write through an inside link: %v", err)
	}
	if got, err := w.ReadFile("real/sub/b.txt", 0, 0); err != nil || got != "b\n" {
		t.Errorf("real/sub/b.txt = %q, %v", got, err)
	}
	var te *ToolError
	if err := w.WriteFile("out/x.txt", "x"); !errors.As(err, &te) {
		t.Errorf("write through a link out: %v, want a ToolError", err)
	}
}
