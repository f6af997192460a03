package core

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDocsConstraintTables checks that docs/tasks.md documents exactly the
// constraints each task type accepts.
func TestDocsConstraintTables(t *testing.T) {
	b, err := os.ReadFile("../../docs/tasks.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|")
	for _, tc := range []struct {
		heading string
		types   []TaskType
	}{
		{"Constraints of **code** and **reasoning** tasks:", []TaskType{TaskCode, TaskReasoning}},
		{"Constraints of **web** tasks:", []TaskType{TaskWeb}},
	} {
		i := strings.Index(readme, tc.heading)
		if i < 0 {
			t.Fatalf("docs has no %q", tc.heading)
		}
		section := readme[i+len(tc.heading):]
		if end := strings.Index(section, "\n\n|"); end >= 0 {
			section = section[end+2:]
		}
		if end := strings.Index(section, "\n\n"); end >= 0 {
			section = section[:end]
		}
		var documented []string
		for _, m := range row.FindAllStringSubmatch(section, -1) {
			documented = append(documented, m[1])
		}
		slices.Sort(documented)
		for _, tt := range tc.types {
			if want := ConstraintKeys(tt); !slices.Equal(documented, want) {
				t.Errorf("docs %q documents %v; a %s task accepts %v", tc.heading, documented, tt, want)
			}
		}
	}
}

func TestConstraintsStrict(t *testing.T) {
	task := TaskSpec{TaskID: "t", TaskType: TaskCode, Constraints: map[string]any{"code": "print(1)", "expected_outptu": "2"}}
	_, err := task.Code()
	var inv *InvalidTaskError
	if !errors.As(err, &inv) || inv.Field != "constraints.expected_outptu" {
		t.Fatalf("Code = %v, want an InvalidTaskError naming constraints.expected_outptu", err)
	}
	if task.Kind() != "" {
		t.Errorf("Kind of invalid constraints = %q, want none", task.Kind())
	}
	task.Constraints = map[string]any{"code": "print(1)", "expected_output": "1"}
	if c, err := task.Code(); err != nil || c.ExpectedOutput == nil || *c.ExpectedOutput != "1" || !c.HasVerifier() {
		t.Fatalf("Code = %+v, %v", c, err)
	}
	web := TaskSpec{TaskID: "w", TaskType: TaskWeb, Constraints: map[string]any{"actions": []any{map[string]any{"action": " CLICK ", "selector": "#a"}}}}
	if wc, err := web.Web(); err != nil || len(wc.Actions) != 1 || wc.Actions[0].Action != "click" {
		t.Fatalf("web constraints = %+v, %v", wc, err)
	}
}

// TestDocsMetadataKeys checks docs/trajectories.md's list of metadata keys against
// MetaKeys, both ways.
func TestDocsMetadataKeys(t *testing.T) {
	item := readmeItem(t, "\n- `metadata`")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(item, -1) {
		documented[m[1]] = true
	}
	sourceValues := map[string]bool{"metadata": true, "scripted": true, "cache": true, "llm": true, "rules": true, "none": true}
	known := map[string]bool{}
	for _, k := range MetaKeys {
		known[string(k)] = true
		if !documented[string(k)] {
			t.Errorf("metadata key %q is not in docs/trajectories.md", k)
		}
	}
	for k := range documented {
		if !known[k] && !sourceValues[k] {
			t.Errorf("docs/trajectories.md documents metadata key %q, which the code does not write", k)
		}
	}
}

// TestDocsExitReasons checks docs/trajectories.md's list of exit reasons against
// ExitReasons.
func TestDocsExitReasons(t *testing.T) {
	item := readmeItem(t, "\n- `exit_reason`")
	var documented []string
	for _, m := range regexp.MustCompile("`([a-z_]+)` \\(").FindAllStringSubmatch(item, -1) {
		documented = append(documented, m[1])
	}
	var want []string
	for _, r := range ExitReasons {
		want = append(want, string(r))
	}
	slices.Sort(documented)
	slices.Sort(want)
	if !slices.Equal(documented, want) {
		t.Errorf("docs/trajectories.md documents exit reasons %v; the code has %v", documented, want)
	}
}

// readmeItem returns docs/trajectories.md's list item that starts with marker: up to
// the next item or the end of the list.
func readmeItem(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/trajectories.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, marker)
	if i < 0 {
		t.Fatalf("docs has no %q", strings.TrimSpace(marker))
	}
	item := readme[i+1:]
	if end := strings.Index(item, "\n- "); end >= 0 {
		item = item[:end]
	}
	if end := strings.Index(item, "\n\n"); end >= 0 {
		item = item[:end]
	}
	return item
}
