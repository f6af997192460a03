package core

import (
	"fmt"
	"reflect"
)

// Kind is the environment a task runs in. It is decided once, when the task
// is parsed, from its type and (for a code task) its constraints, and it
// travels beside the task in its stream entry (field `kind`).
type Kind string

const (
	// KindProgram is a code or reasoning task that runs one Python program
	// (written by the task, the template cache, a model or the rules),
	// checked by its tests or expected output.
	KindProgram Kind = "program"
	// KindWorkspace is a code task that works in a directory over many steps
	// (it has files, a workspace, setup, a test_command or workspace
	// actions: CodeConstraints.IsWorkspace), checked by its test_command.
	KindWorkspace Kind = "workspace"
	// KindWeb is a web task: a browser session.
	KindWeb Kind = "web"
)

// Kinds lists every kind.
var Kinds = []Kind{KindProgram, KindWorkspace, KindWeb}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindProgram, KindWorkspace, KindWeb:
		return true
	}
	return false
}

// typedConstraints is a task's constraints decoded into its type's
// definition, with the kind they decide. Exactly one of code and web is set.
type typedConstraints struct {
	// of is the map they were decoded from, so that a spec whose
	// Constraints were replaced after the parse is not read stale (held,
	// not only its address: a freed map's address can be reused).
	of   map[string]any
	kind Kind
	code *CodeConstraints
	web  *WebConstraints
}

// decodeConstraints decodes t.Constraints strictly into its type's
// definition: an unknown key or a value of the wrong type is an
// *InvalidTaskError naming constraints.<key>.
func (t *TaskSpec) decodeConstraints() (*typedConstraints, error) {
	switch t.TaskType {
	case TaskCode, TaskReasoning:
		c := new(CodeConstraints)
		if err := t.decodeInto(c); err != nil {
			return nil, err
		}
		tc := &typedConstraints{of: t.Constraints, kind: KindProgram, code: c}
		if c.IsWorkspace() {
			tc.kind = KindWorkspace
		}
		return tc, nil
	case TaskWeb:
		w := new(WebConstraints)
		if err := t.decodeInto(w); err != nil {
			return nil, err
		}
		return &typedConstraints{of: t.Constraints, kind: KindWeb, web: w}, nil
	}
	return nil, &InvalidTaskError{TaskID: printableID(t.TaskID), Field: "task_type", Reason: fmt.Sprintf("unknown type %q; one of code, web, reasoning", t.TaskType)}
}

// typed returns the constraints Validate (and so every parse) decoded. A
// spec built in Go and never validated, or whose Constraints were replaced
// since, is decoded here, each time: Validate it to decode it once.
func (t *TaskSpec) typed() (*typedConstraints, error) {
	if tc := t.typedC; tc != nil && mapID(tc.of) == mapID(t.Constraints) {
		return tc, nil
	}
	return t.decodeConstraints()
}

// mapID identifies a map value (0 for nil).
func mapID(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }

// Kind is the environment the task runs in (see Kind); "" for a spec whose
// type or constraints are invalid (a parsed task always has one).
func (t *TaskSpec) Kind() Kind {
	tc, err := t.typed()
	if err != nil {
		return ""
	}
	return tc.kind
}

// Code returns the typed constraints of a program or workspace task (a code
// or reasoning task), decoded once when the task was parsed. The error says
// that the task is not one (a web task), or, for a spec built in Go and
// never parsed, why its constraints are invalid (an *InvalidTaskError).
// The value shares its maps and slices with the task: read it, do not
// change it.
func (t *TaskSpec) Code() (CodeConstraints, error) {
	tc, err := t.typed()
	if err != nil {
		return CodeConstraints{}, err
	}
	if tc.code == nil {
		return CodeConstraints{}, fmt.Errorf("task %q is a %s task, not a program or workspace task", printableID(t.TaskID), tc.kind)
	}
	return *tc.code, nil
}

// Web returns the typed constraints of a web task, as Code does for the
// others.
func (t *TaskSpec) Web() (WebConstraints, error) {
	tc, err := t.typed()
	if err != nil {
		return WebConstraints{}, err
	}
	if tc.web == nil {
		return WebConstraints{}, fmt.Errorf("task %q is a %s task, not a web task", printableID(t.TaskID), tc.kind)
	}
	return *tc.web, nil
}
