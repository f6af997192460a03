package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// This file is the one definition of what each task type may carry in
// `constraints`: the dispatcher and `adpctl submit` reject anything else
// (ParseTask), the runtimes decode these types, docs/tasks.md's constraint
// tables are checked against them (TestDocsConstraintTables), and the
// export reads the same names.
//
// Unknown constraint keys are errors, not ignored: a misspelled verifier
// ("expected_outptu") would otherwise run the task unverified and record a
// success that no check established.

// CodeConstraints are the constraints of code and reasoning tasks.
type CodeConstraints struct {
	// Code is a scripted program: the task brings its solution and the
	// platform records its execution (replay mode).
	Code string `json:"code"`
	// Tests is Python run after the program in the same interpreter (as
	// HumanEval checks are): the task is verified when the tests run to
	// their end without an exception. The model is never shown them: a
	// check the model could read off its prompt is not a check.
	Tests string `json:"tests"`
	// VisibleTests are tests the model is shown (quoted in its prompt) and
	// that are checked too, before Tests.
	VisibleTests string `json:"visible_tests"`
	// ExpectedOutput is compared with the program's stdout after trimming
	// trailing whitespace of each line and trailing blank lines.
	ExpectedOutput *string `json:"expected_output"`
	// Stdin is given to the program on standard input.
	Stdin string `json:"stdin"`

	// The constraints of workspace tasks (workspace.go): the agent works
	// in a directory over many steps instead of running one program.

	// Files are written into the workspace before the first step.
	Files WorkspaceFiles `json:"files"`
	// Workspace is a directory or .tar/.tar.gz under WORKSPACE_ROOT,
	// copied into the workspace (before Files); the runtime checks that
	// it exists.
	Workspace string `json:"workspace"`
	// Setup are shell commands run in the workspace before the agent
	// starts; a failing one makes the task invalid.
	Setup Commands `json:"setup"`
	// TestCommand is a shell command run in the workspace after the agent
	// is done, hidden from it: exit status 0 passes.
	TestCommand string `json:"test_command"`
	// TestFiles are hidden test files for TestCommand: never in the
	// workspace, read-only at /tests during the verify step alone.
	TestFiles TestFiles `json:"test_files"`
	// Actions is a scripted action sequence (replay mode).
	Actions CodeActions `json:"actions"`

	// Environment is the task's image, the jail's root (programs and
	// workspaces alike): a registry reference with a tag or digest, or
	// "archive:NAME" for an image archive under SANDBOX_IMAGE_ARCHIVES
	// (see ValidateEnvironment).
	Environment string `json:"environment"`

	// Resources is what the task asks of its jail beyond the runtime's
	// defaults (resources.go), within the runtime's caps.
	Resources Resources `json:"resources"`
}

// HasVerifier reports whether the task says what a right result is.
func (c CodeConstraints) HasVerifier() bool { return c.Checks() > 0 }

// Checks is how many checks the verifier has (the reward's denominator):
// the expected output, the tests (visible and hidden run as one), and a
// workspace task's test_command.
func (c CodeConstraints) Checks() int {
	n := 0
	if c.ExpectedOutput != nil {
		n++
	}
	if c.AllTests() != "" {
		n++
	}
	if c.TestCommand != "" {
		n++
	}
	return n
}

// CheckDigest identifies the task's check: the hex SHA-256 of everything
// that decides a verdict or that the program is given (tests,
// visible_tests, expected_output, stdin). The template cache keys on it,
// so that a program cached for one check is never replayed for another.
func (c CodeConstraints) CheckDigest() string {
	return digest(struct {
		Tests, VisibleTests string
		ExpectedOutput      *string
		Stdin               string
	}{c.Tests, c.VisibleTests, c.ExpectedOutput, c.Stdin})
}

// digest is the hex SHA-256 of v's JSON (struct fields keep their order).
func digest(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("core: digest: %v", err)) // strings and pointers to them always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AllTests are the tests a program is checked with: the visible ones, then
// the hidden ones.
func (c CodeConstraints) AllTests() string {
	switch {
	case c.VisibleTests == "":
		return c.Tests
	case c.Tests == "":
		return c.VisibleTests
	}
	return c.VisibleTests + "\n" + c.Tests
}

// WebConstraints are the constraints of web tasks.
type WebConstraints struct {
	// StartURL is opened before the first action.
	StartURL string `json:"start_url"`
	// Actions is a scripted action sequence (replay mode).
	Actions WebActions `json:"actions"`
	// ExpectedText must appear in the final page: its title, its whole
	// rendered text (not only the part an observation showed; hidden
	// elements do not count), or text an extract step returned. The
	// finish answer does not count: a model that answers with everything
	// it saw would pass (AnswerContains checks the answer).
	ExpectedText string `json:"expected_text"`
	// ExpectedURL must be contained in the final URL.
	ExpectedURL string `json:"expected_url"`
	// Answer must equal the finish answer (trimmed).
	Answer *string `json:"answer"`
	// AnswerContains must appear in the finish answer (case-sensitive).
	AnswerContains string `json:"answer_contains"`
	// Screenshot saves a PNG per step.
	Screenshot bool `json:"screenshot"`

	// Page-defined tasks (MiniWoB-style: the page holds the instruction,
	// the episode and the reward). Each is the body of a JavaScript
	// function run in the page, never shown to the model.

	// SetupScript runs on the start page before the first step (seed,
	// stop the episode timer, start the episode); an exception makes the
	// task invalid.
	SetupScript string `json:"setup_script"`
	// InstructionScript runs after SetupScript; the string it returns is
	// added to the task's prompt (and recorded as metadata
	// page_instruction).
	InstructionScript string `json:"instruction_script"`
	// RewardScript runs on the final page after the last step; the number
	// it returns is the attempt's reward, recorded as is (negative and
	// partial rewards included). Success is a reward above 0 (MiniWoB's
	// convention). It is the task's only check: it excludes the other
	// verifiers.
	RewardScript string `json:"reward_script"`
}

// validate rejects constraints that contradict each other.
func (c WebConstraints) validate() error {
	if c.RewardScript != "" && (c.ExpectedText != "" || c.ExpectedURL != "" || c.Answer != nil || c.AnswerContains != "") {
		return &fieldError{field: "reward_script", err: errors.New("a page-defined reward is the task's only check: drop expected_text, expected_url, answer and answer_contains")}
	}
	return nil
}

// CheckDigest identifies the task's check (expected_text, expected_url,
// answer) as CodeConstraints.CheckDigest does.
func (c WebConstraints) CheckDigest() string {
	return digest(struct {
		ExpectedText, ExpectedURL string
		Answer                    *string
	}{c.ExpectedText, c.ExpectedURL, c.Answer})
}

// HasVerifier reports whether the task says what a right result is.
func (c WebConstraints) HasVerifier() bool { return c.Checks() > 0 }

// Checks is how many checks the verifier has (the reward's denominator).
func (c WebConstraints) Checks() int {
	n := 0
	for _, set := range []bool{c.ExpectedText != "", c.ExpectedURL != "", c.Answer != nil, c.AnswerContains != "", c.RewardScript != ""} {
		if set {
			n++
		}
	}
	return n
}

// WebAction is one browser action: an entry of constraints.actions, a
// template cache entry's step, or what an LLM tool call decodes to. An
// element is named by a selector (CSS, text=…, role=…) or by the ref an
// observation's snapshot gave it ([ref=e12] is ref "e12").
type WebAction struct {
	Action   string `json:"action"`
	URL      string `json:"url,omitempty"`
	Selector string `json:"selector,omitempty"`
	Ref      string `json:"ref,omitempty"`
	Text     string `json:"text,omitempty"`
	Key      string `json:"key,omitempty"`
	Value    string `json:"value,omitempty"`
	Answer   string `json:"answer,omitempty"`
	// Direction is scroll's: "down" (the default) or "up".
	Direction string `json:"direction,omitempty"`
	// TargetSelector and TargetRef name where drag drops.
	TargetSelector string `json:"target_selector,omitempty"`
	TargetRef      string `json:"target_ref,omitempty"`
	// X and Y are mouse_click's viewport coordinates (CSS pixels).
	X *float64 `json:"x,omitempty"`
	Y *float64 `json:"y,omitempty"`
	// Tab is switch_tab's tab index (0 is the task's first page).
	Tab *int `json:"tab,omitempty"`
	// Accept is dialog's: accept (true, with Text as a prompt's value) or
	// dismiss (false) the next dialog.
	Accept *bool `json:"accept,omitempty"`
}

// The arguments an action needs: a name, or alternatives joined by "|"
// (an element is a selector or a ref).
const (
	argElement = "selector|ref"
	argTarget  = "target_selector|target_ref"
)

// webActionArgs lists the actions and the arguments each needs, in the
// order docs/tasks.md documents them.
var webActionArgs = []struct {
	name string
	need []string
}{
	{"goto", []string{"url"}},
	{"click", []string{argElement}},
	{"dblclick", []string{argElement}},
	{"hover", []string{argElement}},
	{"fill", []string{argElement}},
	{"press", []string{argElement, "key"}},
	{"select", []string{argElement, "value"}},
	{"drag", []string{argElement, argTarget}},
	{"mouse_click", []string{"x", "y"}},
	{"key", []string{"key"}},
	{"scroll", nil},
	{"find", []string{"text"}},
	{"back", nil},
	{"switch_tab", []string{"tab"}},
	{"dialog", []string{"accept"}},
	{"wait", []string{"selector"}},
	{"extract", []string{"selector"}},
	{"finish", nil},
	{"fill_and_submit", []string{"selector"}},
}

// WebActionNames are the actions, in the order the README documents them.
func WebActionNames() []string {
	names := make([]string, len(webActionArgs))
	for i, w := range webActionArgs {
		names[i] = w.name
	}
	return names
}

// refPattern is what a snapshot's ref looks like: e12, or f1e3 inside a
// frame. Nothing else reaches the aria-ref selector engine.
var refPattern = regexp.MustCompile(`^(f[0-9]+)?e[0-9]+$`)

// Element returns the Playwright selector of the action's element: its
// selector, or aria-ref=<ref>.
func (a WebAction) Element() string {
	if a.Ref != "" {
		return "aria-ref=" + a.Ref
	}
	return a.Selector
}

// Target returns the Playwright selector of drag's drop target.
func (a WebAction) Target() string {
	if a.TargetRef != "" {
		return "aria-ref=" + a.TargetRef
	}
	return a.TargetSelector
}

// Params renders the action as a step's action_params.
func (a WebAction) Params() map[string]any {
	p := map[string]any{"action": a.Action}
	for k, v := range map[string]string{"url": a.URL, "selector": a.Selector, "ref": a.Ref, "text": a.Text, "key": a.Key,
		"value": a.Value, "answer": a.Answer, "direction": a.Direction, "target_selector": a.TargetSelector, "target_ref": a.TargetRef} {
		if v != "" {
			p[k] = v
		}
	}
	if a.X != nil {
		p["x"] = *a.X
	}
	if a.Y != nil {
		p["y"] = *a.Y
	}
	if a.Tab != nil {
		p["tab"] = *a.Tab
	}
	if a.Accept != nil {
		p["accept"] = *a.Accept
	}
	return p
}

// Validate checks that the action is known and has what it needs.
func (a WebAction) Validate() error {
	got := a.Params()
	for _, w := range webActionArgs {
		if w.name != a.Action {
			continue
		}
		for _, f := range w.need {
			found := false
			for _, alt := range strings.Split(f, "|") {
				_, ok := got[alt]
				found = found || ok
			}
			if !found {
				return fmt.Errorf("action %s needs %q", a.Action, strings.ReplaceAll(f, "|", " or "))
			}
		}
		for _, r := range []string{a.Ref, a.TargetRef} {
			if r != "" && !refPattern.MatchString(r) {
				return fmt.Errorf("action %s: ref %q is not a snapshot ref such as e12", a.Action, r)
			}
		}
		if a.Direction != "" && a.Direction != "down" && a.Direction != "up" {
			return fmt.Errorf("action %s: direction %q is neither up nor down", a.Action, a.Direction)
		}
		return nil
	}
	return fmt.Errorf("unknown action %q: one of %s", a.Action, strings.Join(WebActionNames(), ", "))
}

// DecodeWebActions decodes a list of actions strictly (an unknown key such
// as "selctor" is an error) and validates each; action names are
// normalised to lower case.
func DecodeWebActions(raw []byte) ([]WebAction, error) {
	var as []WebAction
	if err := decodeStrict(raw, &as); err != nil {
		return nil, err
	}
	for i := range as {
		as[i].Action = strings.ToLower(strings.TrimSpace(as[i].Action))
		if err := as[i].Validate(); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return as, nil
}

// WebActions is constraints.actions: decoded strictly and validated.
type WebActions []WebAction

// UnmarshalJSON implements json.Unmarshaler with DecodeWebActions.
func (w *WebActions) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*w = nil
		return nil
	}
	as, err := DecodeWebActions(b)
	if err != nil {
		return &fieldError{field: "actions", err: err}
	}
	*w = as
	return nil
}

// webActionFields are the JSON names of WebAction's fields.
func webActionFields() []string {
	var names []string
	rt := reflect.TypeOf(WebAction{})
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// constraintsFor returns a pointer to a new value of the constraints type
// of tt, nil for an unknown type.
func constraintsFor(tt TaskType) any {
	switch tt {
	case TaskCode, TaskReasoning:
		return new(CodeConstraints)
	case TaskWeb:
		return new(WebConstraints)
	}
	return nil
}

// ConstraintKeys returns the constraint names a task type accepts, sorted.
func ConstraintKeys(tt TaskType) []string {
	v := constraintsFor(tt)
	if v == nil {
		return nil
	}
	var keys []string
	rt := reflect.TypeOf(v).Elem()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// decodeInto decodes t.Constraints into v, a pointer to the constraints
// type of the task's type, strictly, and checks what the types alone do not.
func (t *TaskSpec) decodeInto(v interface{ validate() error }) error {
	if len(t.Constraints) > 0 {
		b, err := json.Marshal(t.Constraints)
		if err != nil {
			return fmt.Errorf("encode constraints of task %q: %w", t.TaskID, err)
		}
		if err := decodeStrict(b, v); err != nil {
			return t.constraintError(err)
		}
	}
	if err := v.validate(); err != nil {
		return t.constraintError(err)
	}
	return nil
}

func (t *TaskSpec) constraintError(err error) error {
	e := &InvalidTaskError{TaskID: printableID(t.TaskID), Field: "constraints", Reason: err.Error()}
	var fe *fieldError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &fe):
		e.Field = "constraints." + fe.field
		e.Reason = fe.err.Error()
		if uk, ok := unknownField(fe.err); ok {
			e.Reason = fmt.Sprintf("unknown field %q in an action; an action has %s", uk, strings.Join(webActionFields(), ", "))
		} else if errors.As(fe.err, &typeErr) {
			e.Reason = mustBe(typeErr)
		}
	case errors.As(err, &typeErr):
		e.Field = "constraints." + typeErr.Field
		e.Reason = mustBe(typeErr)
	default:
		if uk, ok := unknownField(err); ok {
			e.Field = "constraints." + uk
			e.Reason = fmt.Sprintf("unknown constraint for a %s task; known: %s", t.TaskType, strings.Join(ConstraintKeys(t.TaskType), ", "))
		}
	}
	return e
}

// fieldError is an error inside one constraint.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

func unknownField(err error) (string, bool) {
	const prefix = "json: unknown field "
	s := err.Error()
	if i := strings.Index(s, prefix); i >= 0 {
		return strings.Trim(s[i+len(prefix):], `"`), true
	}
	return "", false
}

// decodeStrict decodes one JSON value into v, rejecting unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
