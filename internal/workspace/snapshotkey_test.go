package workspace

import (
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// TestSnapshotKey: attempts share a snapshot only when everything that
// makes the post-setup state, or the limits the attempts take from it, is
// the same.
func TestSnapshotKey(t *testing.T) {
	base := Seed{Files: map[string][]byte{"a.txt": []byte("a"), "b.txt": []byte("b")}, From: "repo"}
	setup := []string{"make"}
	key := SnapshotKey("t", base, setup)
	if again := SnapshotKey("t", Seed{Files: map[string][]byte{"b.txt": []byte("b"), "a.txt": []byte("a")}, From: "repo"}, []string{"make"}); again != key {
		t.Errorf("the same task gives two keys: %s, %s", key, again)
	}
	differ := map[string]func() (string, Seed, []string){
		"task id": func() (string, Seed, []string) { return "u", base, setup },
		"a file": func() (string, Seed, []string) {
			s := base
			s.Files = map[string][]byte{"a.txt": []byte("A"), "b.txt": []byte("b")}
			return "t", s, setup
		},
		"seed dir":      func() (string, Seed, []string) { s := base; s.From = "other"; return "t", s, setup },
		"image":         func() (string, Seed, []string) { s := base; s.Image = &sandbox.Image{Root: "/x"}; return "t", s, setup },
		"writable root": func() (string, Seed, []string) { s := base; s.WritableRoot = true; return "t", s, setup },
		"resources": func() (string, Seed, []string) {
			s := base
			s.Resources = core.Resources{MemoryMB: 2048}
			return "t", s, setup
		},
		"setup": func() (string, Seed, []string) { return "t", base, []string{"make", "make test"} },
	}
	for name, f := range differ {
		if other := SnapshotKey(f()); other == key {
			t.Errorf("a different %s gives the same key %s", name, key)
		}
	}
}
