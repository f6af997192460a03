package core

import (
	"strings"
	"testing"
)

func TestAttemptNames(t *testing.T) {
	tests := []struct {
		id         string
		k          int
		file, memb string
	}{
		{"fib", 0, "fib.json", "fib"},
		{"fib", 1, "fib.sample-1.json", "fib\x1f1"},
		{"fib", 99, "fib.sample-99.json", "fib\x1f99"},
		{"a.b", 7, "a.b.sample-7.json", "a.b\x1f7"},
		{"中文 任务", 3, "中文 任务.sample-3.json", "中文 任务\x1f3"},
		{"a.sample-", 2, "a.sample-.sample-2.json", "a.sample-\x1f2"},
	}
	for _, tc := range tests {
		if err := ValidateTaskID(tc.id); err != nil {
			t.Fatalf("test id %q is invalid: %v", tc.id, err)
		}
		if got := TrajectoryFileName(tc.id, tc.k); got != tc.file {
			t.Errorf("TrajectoryFileName(%q, %d) = %q, want %q", tc.id, tc.k, got, tc.file)
		}
		id, k := ParseAttemptName(strings.TrimSuffix(tc.file, ".json"))
		if id != tc.id || k != tc.k {
			t.Errorf("ParseAttemptName(%q) = %q, %d; want %q, %d", tc.file, id, k, tc.id, tc.k)
		}
		if got := DispatchedMember(tc.id, tc.k); got != tc.memb {
			t.Errorf("DispatchedMember(%q, %d) = %q, want %q", tc.id, tc.k, got, tc.memb)
		}
		id, k = ParseDispatchedMember(tc.memb)
		if id != tc.id || k != tc.k {
			t.Errorf("ParseDispatchedMember(%q) = %q, %d; want %q, %d", tc.memb, id, k, tc.id, tc.k)
		}
	}
}

// No valid id's attempt file can be another valid id's file: the names of
// every attempt of a set of ids are distinct.
func TestAttemptFilesNeverCollide(t *testing.T) {
	ids := []string{"a", "a.sample", "a.sample-", "a-sample-1", "a.sample-1", "a.sample-1.sample-1", "b.sample-12x"}
	seen := map[string]string{}
	for _, id := range ids {
		if ValidateTaskID(id) != nil {
			continue
		}
		for k := range 20 {
			name := TrajectoryFileName(id, k)
			if prev, ok := seen[name]; ok {
				t.Errorf("%s is the file of %s and of %q attempt %d", name, prev, id, k)
			}
			seen[name] = id
		}
	}
	if ValidateTaskID("a.sample-1") == nil || ValidateTaskID("a.sample-1.sample-1") == nil {
		t.Error("ids ending in .sample-<digits> are accepted")
	}
}
