package imagestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnpackLayer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []entry
		want    map[string]string // the tree; nil when the layer is refused
		wantErr string
		meta    layerMeta // whiteouts, opaque dirs, links, skipped
	}{{
		name:    "files, directories, links",
		entries: []entry{dir("usr"), dir("usr/bin"), file("usr/bin/tool", "#!/bin/sh\n"), symlink("bin", "usr/bin"), symlink("usr/bin/sh", "/bin/dash"), hardlink("usr/bin/tool2", "usr/bin/tool"), file("./etc/motd", "hi")},
		want:    map[string]string{"usr": "dir", "usr/bin": "dir", "usr/bin/tool": "file:#!/bin/sh\n", "bin": "link:usr/bin", "usr/bin/sh": "link:/bin/dash", "usr/bin/tool2": "file:#!/bin/sh\n", "etc": "dir", "etc/motd": "file:hi"},
	}, {
		name:    "whiteouts and opaque directories are recorded, not written",
		entries: []entry{dir("a"), whiteout("a", "gone"), opaque("b"), file("b/new", "n"), whiteout("", "top")},
		want:    map[string]string{"a": "dir", "b": "dir", "b/new": "file:n"},
		meta:    layerMeta{Whiteouts: []string{"a/gone", "top"}, Opaque: []string{"b"}},
	}, {
		name:    "a hard link to a file of a lower layer is recorded",
		entries: []entry{hardlink("x", "lower/file")},
		want:    map[string]string{},
		meta:    layerMeta{Links: []hardLink{{Name: "x", Target: "lower/file"}}},
	}, {
		name:    "device nodes are skipped",
		entries: []entry{device("dev/null"), file("f", "1")},
		want:    map[string]string{"dev": "dir", "f": "file:1"},
		meta:    layerMeta{Skipped: 1},
	}, {
		name:    "a later entry replaces an earlier one",
		entries: []entry{dir("p"), file("p/in", "1"), file("p", "now a file"), symlink("q", "x"), dir("q")},
		want:    map[string]string{"p": "file:now a file", "q": "dir"},
	}, {
		name:    "a relative symlink inside the layer is followed as docker does",
		entries: []entry{dir("usr/lib"), symlink("lib", "usr/lib"), file("lib/x.so", "so")},
		want:    map[string]string{"usr": "dir", "usr/lib": "dir", "usr/lib/x.so": "file:so", "lib": "link:usr/lib"},
	}, {
		name:    "dot-dot path",
		entries: []entry{file("../escape", "x")},
		wantErr: "leaves the layer",
	}, {
		name:    "dot-dot inside a path",
		entries: []entry{file("a/../../escape", "x")},
		wantErr: "leaves the layer",
	}, {
		name:    "absolute path",
		entries: []entry{file("/etc/passwd", "x")},
		wantErr: "absolute path",
	}, {
		name:    "write through an absolute symlink",
		entries: []entry{symlink("evil", "/tmp"), file("evil/pwned", "x")},
		wantErr: "escapes",
	}, {
		name:    "write through a relative symlink out of the layer",
		entries: []entry{symlink("evil", "../../../../../../tmp"), file("evil/pwned", "x")},
		wantErr: "escapes",
	}, {
		name:    "directory through a symlink out of the layer",
		entries: []entry{symlink("evil", "/tmp"), dir("evil/sub")},
		wantErr: "escapes",
	}, {
		name:    "hard link out of the layer",
		entries: []entry{hardlink("passwd", "../../../../etc/passwd")},
		wantErr: "leaves the layer",
	}, {
		name:    "hard link to an absolute path",
		entries: []entry{hardlink("passwd", "/etc/passwd")},
		wantErr: "absolute path",
	}, {
		name:    "hard link through a symlink out of the layer",
		entries: []entry{symlink("etc", "/etc"), hardlink("passwd", "etc/passwd")},
		wantErr: "escapes",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The layer's tree is a directory beside a sentinel that an escape
			// would reach ("../../..": the walk up stops at /).
			dir := filepath.Join(t.TempDir(), "a", "b", "tree")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			b := layerTar(t, tc.entries...)
			sum := sha256.Sum256(b)
			m, err := unpackLayer(root, bytes.NewReader(b), "sha256:"+hex.EncodeToString(sum[:]), 1<<20)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if _, err := os.Lstat("/tmp/pwned"); err == nil {
					t.Fatal("/tmp/pwned was written")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tree(t, dir); !maps.Equal(got, tc.want) {
				t.Errorf("tree = %v, want %v", got, tc.want)
			}
			tc.meta.DiffID = m.DiffID
			if !equalMeta(m, tc.meta) {
				t.Errorf("meta = %+v, want %+v", m, tc.meta)
			}
		})
	}
}

func equalMeta(a, b layerMeta) bool {
	return a.DiffID == b.DiffID && strings.Join(a.Whiteouts, ",") == strings.Join(b.Whiteouts, ",") &&
		strings.Join(a.Opaque, ",") == strings.Join(b.Opaque, ",") && a.Skipped == b.Skipped &&
		len(a.Links) == len(b.Links) && (len(a.Links) == 0 || a.Links[0] == b.Links[0])
}

func TestUnpackLayerModes(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	root, err := os.OpenRoot(top)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	b := layerTar(t, withMode(dir("ro"), 0o555), withMode(file("ro/suid", "x"), 0o4755), withMode(file("sgid", "x"), 0o2711),
		withMode(dir("tmp"), 0o1777), withMode(file("secret", "s"), 0o600), withMode(dir("home"), 0o700))
	if _, err := unpackLayer(root, bytes.NewReader(b), "", 1<<20); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		"ro":      os.ModeDir | 0o755, // the owner's bits are always set on directories
		"ro/suid": 0o755,              // setuid dropped
		// setgid dropped; the owner's read and search given to others
		// (the jail's uid: jailReadable), as everywhere below.
		"sgid":   0o715,
		"tmp":    os.ModeDir | os.ModeSticky | 0o777,
		"secret": 0o604,
		"home":   os.ModeDir | 0o705,
	} {
		fi, err := os.Lstat(filepath.Join(top, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
		if !fi.IsDir() && !fi.ModTime().Equal(testMTime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), testMTime)
		}
	}
}

func TestUnpackLayerRefuses(t *testing.T) {
	t.Parallel()
	big := layerTar(t, file("big", strings.Repeat("x", 64<<10)))
	var empties []entry
	for i := range 20 {
		empties = append(empties, file(fmt.Sprintf("empty%d", i), ""))
	}
	many := layerTar(t, empties...)
	tests := []struct {
		name     string
		layer    []byte
		diffID   string
		maxBytes int64
		wantErr  error
		wantText string
	}{
		{name: "content that is not the diff id", layer: big, diffID: "sha256:" + strings.Repeat("0", 64), maxBytes: 1 << 20, wantText: "not the diff id"},
		{name: "a layer larger than the cap", layer: big, maxBytes: 60 << 10, wantErr: errTooLarge},
		{name: "more empty files than the cap has blocks", layer: many, maxBytes: 19 * entryBlock, wantErr: errTooLarge, wantText: "empty19"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, err := os.OpenRoot(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			_, err = unpackLayer(root, bytes.NewReader(tc.layer), tc.diffID, tc.maxBytes)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v, want %v %q", err, tc.wantErr, tc.wantText)
			}
		})
	}
}
