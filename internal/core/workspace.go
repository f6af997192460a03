package core

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The constraints of workspace tasks (CodeConstraints.Files, Workspace,
// Setup, TestCommand, Actions): their types, how they decode and their
// bounds. A task's JSON is at most MaxTaskBytes, which bounds the total size
// of its files; the bounds below reject what is surely a mistake.
const (
	// MaxSeedFiles bounds the number of entries of constraints.files.
	MaxSeedFiles = 1000
	// MaxWorkspacePathBytes bounds a path of constraints.files or
	// constraints.workspace; MaxPathElementBytes one element of it (the
	// Linux NAME_MAX).
	MaxWorkspacePathBytes = 1024
	MaxPathElementBytes   = 255
	// MaxSetupCommands bounds constraints.setup.
	MaxSetupCommands = 50
	// MaxStepTimeout bounds the timeout (seconds) of a bash or python
	// action or tool call; the runtime cuts it to what is left of the task.
	MaxStepTimeout = MaxTimeout
)

// WorkspaceFiles is constraints.files: the workspace's files before the
// first step, by path relative to the workspace. In JSON each value is a
// UTF-8 string or {"base64": "…"} for bytes.
type WorkspaceFiles map[string][]byte

// UnmarshalJSON decodes and checks the paths, the values and the bounds.
func (f *WorkspaceFiles) UnmarshalJSON(b []byte) error {
	out, err := decodeFiles(b, "files")
	*f = out
	return err
}

// TestFiles is constraints.test_files: the hidden test files of a
// workspace task, in the shape of files. They are never in the workspace
// nor shown to the agent: the verify step alone sees them, read-only at
// /tests (the layout of Harbor task folders: /tests/test.sh, ...).
type TestFiles map[string][]byte

// UnmarshalJSON decodes and checks test_files as files are checked.
func (f *TestFiles) UnmarshalJSON(b []byte) error {
	out, err := decodeFiles(b, "test_files")
	*f = TestFiles(out)
	return err
}

// decodeFiles decodes an object of path → content (files, test_files),
// checking the paths, the values and the bounds; field names it in errors.
func decodeFiles(b []byte, field string) (WorkspaceFiles, error) {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, &fieldError{field: field, err: errors.New("must be an object of path → content")}
	}
	if len(raw) > MaxSeedFiles {
		return nil, &fieldError{field: field, err: fmt.Errorf("%d files, more than the limit of %d", len(raw), MaxSeedFiles)}
	}
	out := make(WorkspaceFiles, len(raw))
	for _, p := range sortedKeys(raw) {
		if err := ValidateWorkspacePath(p); err != nil {
			return nil, &fieldError{field: fmt.Sprintf("%s[%q]", field, p), err: err}
		}
		content, err := decodeFileContent(raw[p])
		if err != nil {
			return nil, &fieldError{field: fmt.Sprintf("%s[%q]", field, p), err: err}
		}
		out[p] = content
	}
	// A path cannot be both a file and a directory of another file.
	for p := range out {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := out[dir]; ok {
				return nil, &fieldError{field: fmt.Sprintf("%s[%q]", field, dir), err: fmt.Errorf("is a file and also the directory of %q", p)}
			}
		}
	}
	return out, nil
}

func decodeFileContent(v json.RawMessage) ([]byte, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	}
	var obj struct {
		Base64 *string `json:"base64"`
	}
	if len(v) == 0 || v[0] != '{' || decodeStrict(v, &obj) != nil || obj.Base64 == nil {
		return nil, errors.New(`must be a UTF-8 string or {"base64": "…"}`)
	}
	b, err := base64.StdEncoding.DecodeString(*obj.Base64)
	if err != nil {
		return nil, fmt.Errorf("base64: %w", err)
	}
	return b, nil
}

// ValidateWorkspacePath checks a path of constraints.files or
// constraints.workspace: relative, in clean form (no "." or ".." element,
// no empty element, no trailing "/"), printable UTF-8, bounded.
func ValidateWorkspacePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxWorkspacePathBytes:
		return fmt.Errorf("path of %d bytes, more than the limit of %d", len(p), MaxWorkspacePathBytes)
	case !utf8.ValidString(p):
		return errors.New("path is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path; give it relative to the workspace")
	}
	for _, r := range p {
		if r == 0 || unicode.IsControl(r) {
			return fmt.Errorf("path contains the control character %U", r)
		}
	}
	for _, e := range strings.Split(p, "/") {
		switch {
		case e == "..":
			return errors.New(`path contains ".."`)
		case len(e) > MaxPathElementBytes:
			return fmt.Errorf("path element of %d bytes, more than the limit of %d", len(e), MaxPathElementBytes)
		}
	}
	if path.Clean(p) != p || p == "." {
		return fmt.Errorf("path is not in clean form (%q)", path.Clean(p))
	}
	return nil
}

// errNUL refuses a NUL byte in a shell command or a program: the jail's
// shell reads its orders up to a NUL, so only the part before it would run
// while the trajectory recorded the whole string.
var errNUL = errors.New("contains a NUL byte, which no shell command or program can hold (only the part before it would run)")

// Commands is constraints.setup: shell commands, each run as one bash
// step. In JSON a list of strings, or one string (one command).
type Commands []string

// UnmarshalJSON accepts a string or a list of non-empty strings.
func (c *Commands) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*c = nil
		return nil
	}
	var list []string
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return &fieldError{field: "setup", err: err}
		}
		list = []string{s}
	} else if err := json.Unmarshal(b, &list); err != nil {
		return &fieldError{field: "setup", err: errors.New("must be a shell command or a list of them")}
	}
	if len(list) > MaxSetupCommands {
		return &fieldError{field: "setup", err: fmt.Errorf("%d commands, more than the limit of %d", len(list), MaxSetupCommands)}
	}
	for i, s := range list {
		if strings.TrimSpace(s) == "" {
			return &fieldError{field: fmt.Sprintf("setup[%d]", i), err: errors.New("empty command")}
		}
		if strings.IndexByte(s, 0) >= 0 {
			return &fieldError{field: fmt.Sprintf("setup[%d]", i), err: errNUL}
		}
	}
	*c = list
	return nil
}

// The actions of workspace tasks (and the tools of the model offered them).
const (
	CodeActionBash      = "bash"
	CodeActionPython    = "python"
	CodeActionReadFile  = "read_file"
	CodeActionWriteFile = "write_file"
	CodeActionEditFile  = "edit_file"
	CodeActionFinish    = "finish"
)

// CodeAction is one action of a workspace task: an entry of
// constraints.actions (replay mode) or a model's tool call decoded. Pointers
// tell a given argument from an absent one.
type CodeAction struct {
	Action  string  `json:"action"`
	Command string  `json:"command,omitempty"`
	Code    string  `json:"code,omitempty"`
	Path    string  `json:"path,omitempty"`
	Content *string `json:"content,omitempty"`
	Old     *string `json:"old,omitempty"`
	New     *string `json:"new,omitempty"`
	Offset  *int    `json:"offset,omitempty"`
	Limit   *int    `json:"limit,omitempty"`
	// Timeout is the step's time limit in seconds (bash, python); absent:
	// the runtime's (SANDBOX_RUN_TIMEOUT).
	Timeout *int    `json:"timeout,omitempty"`
	Answer  *string `json:"answer,omitempty"`
}

// codeActionArgs lists each action's arguments: those it needs, then those
// it may have, in the order docs/tasks.md documents them.
var codeActionArgs = []struct {
	name     string
	need     []string
	optional []string
}{
	{CodeActionBash, []string{"command"}, []string{"timeout"}},
	{CodeActionPython, []string{"code"}, []string{"timeout"}},
	{CodeActionReadFile, []string{"path"}, []string{"offset", "limit"}},
	{CodeActionWriteFile, []string{"path", "content"}, nil},
	{CodeActionEditFile, []string{"path", "old", "new"}, nil},
	{CodeActionFinish, nil, []string{"answer"}},
}

// CodeActionNames are the workspace actions, in documented order.
func CodeActionNames() []string {
	names := make([]string, len(codeActionArgs))
	for i, a := range codeActionArgs {
		names[i] = a.name
	}
	return names
}

// ParseCodeAction decodes the arguments of action name (a JSON object,
// without "action") strictly: an unknown or misplaced argument, a missing
// one or a value of the wrong type is an error naming it. A model's tool
// call and a task's action go through here alike.
func ParseCodeAction(name string, args []byte) (CodeAction, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(args, &fields); err != nil || fields == nil {
		return CodeAction{}, errors.New("arguments must be a JSON object")
	}
	delete(fields, "action")
	return parseCodeAction(name, fields)
}

func parseCodeAction(name string, fields map[string]json.RawMessage) (CodeAction, error) {
	for _, spec := range codeActionArgs {
		if spec.name != name {
			continue
		}
		allowed := append(append([]string{}, spec.need...), spec.optional...)
		for _, k := range sortedKeys(fields) {
			if !containsString(allowed, k) {
				return CodeAction{}, &fieldError{field: k, err: fmt.Errorf("unknown argument of %s; it takes %s", name, argList(allowed))}
			}
		}
		for _, k := range spec.need {
			if v, ok := fields[k]; !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
				return CodeAction{}, &fieldError{field: k, err: fmt.Errorf("missing; %s needs %s", name, argList(spec.need))}
			}
		}
		a := CodeAction{Action: name}
		for k, v := range fields {
			one, _ := json.Marshal(map[string]json.RawMessage{k: v})
			if err := decodeStrict(one, &a); err != nil {
				var typeErr *json.UnmarshalTypeError
				if errors.As(err, &typeErr) {
					err = errors.New(mustBe(typeErr))
				}
				return CodeAction{}, &fieldError{field: k, err: err}
			}
		}
		return a, a.validate()
	}
	return CodeAction{}, &fieldError{field: "action", err: fmt.Errorf("unknown action %q: one of %s", name, strings.Join(CodeActionNames(), ", "))}
}

// validate checks the values: non-empty command, code, path and old text,
// and the bounds of the numbers.
func (a CodeAction) validate() error {
	bad := func(field, reason string, args ...any) error {
		return &fieldError{field: field, err: fmt.Errorf(reason, args...)}
	}
	switch {
	case a.Action == CodeActionBash && strings.TrimSpace(a.Command) == "":
		return bad("command", "empty")
	case a.Action == CodeActionPython && strings.TrimSpace(a.Code) == "":
		return bad("code", "empty")
	case strings.IndexByte(a.Command, 0) >= 0:
		return bad("command", "%s", errNUL)
	case strings.IndexByte(a.Code, 0) >= 0:
		return bad("code", "%s", errNUL)
	case (a.Action == CodeActionReadFile || a.Action == CodeActionWriteFile || a.Action == CodeActionEditFile) && a.Path == "":
		return bad("path", "empty")
	case a.Old != nil && *a.Old == "":
		return bad("old", "empty: edit_file replaces one occurrence of a non-empty text")
	case a.Timeout != nil && (*a.Timeout < 1 || *a.Timeout > MaxStepTimeout):
		return bad("timeout", "%d seconds is out of range 1..%d", *a.Timeout, MaxStepTimeout)
	case a.Offset != nil && *a.Offset < 0:
		return bad("offset", "%d must not be negative", *a.Offset)
	case a.Limit != nil && *a.Limit < 1:
		return bad("limit", "%d must be at least 1", *a.Limit)
	}
	return nil
}

// Arguments are the action's arguments as given (without "action"): a
// step's action_params.arguments.
func (a CodeAction) Arguments() map[string]any {
	args := map[string]any{}
	set := func(k string, v any) { args[k] = v }
	switch a.Action {
	case CodeActionBash:
		set("command", a.Command)
	case CodeActionPython:
		set("code", a.Code)
	case CodeActionReadFile, CodeActionWriteFile, CodeActionEditFile:
		set("path", a.Path)
	}
	for k, p := range map[string]*string{"content": a.Content, "old": a.Old, "new": a.New, "answer": a.Answer} {
		if p != nil {
			set(k, *p)
		}
	}
	for k, p := range map[string]*int{"offset": a.Offset, "limit": a.Limit, "timeout": a.Timeout} {
		if p != nil {
			set(k, *p)
		}
	}
	return args
}

// CodeActions is constraints.actions of a code task: decoded strictly and
// validated; finish, when present, is the last.
type CodeActions []CodeAction

// UnmarshalJSON implements json.Unmarshaler with ParseCodeAction per entry.
func (c *CodeActions) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*c = nil
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return &fieldError{field: "actions", err: errors.New("must be a list of actions")}
	}
	if len(list) == 0 {
		return &fieldError{field: "actions", err: errors.New("empty; give at least one action, or leave actions out to let the model act")}
	}
	out := make(CodeActions, 0, len(list))
	for i, raw := range list {
		at := fmt.Sprintf("actions[%d]", i)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
			return &fieldError{field: at, err: errors.New(`must be an object {"action": …}`)}
		}
		var name string
		if v, ok := fields["action"]; !ok {
			return &fieldError{field: at + ".action", err: fmt.Errorf("missing; one of %s", strings.Join(CodeActionNames(), ", "))}
		} else if err := json.Unmarshal(v, &name); err != nil {
			return &fieldError{field: at + ".action", err: errors.New("must be a string")}
		}
		delete(fields, "action")
		a, err := parseCodeAction(strings.ToLower(strings.TrimSpace(name)), fields)
		if err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				return &fieldError{field: at + "." + fe.field, err: fe.err}
			}
			return &fieldError{field: at, err: err}
		}
		if len(out) > 0 && out[len(out)-1].Action == CodeActionFinish {
			return &fieldError{field: at, err: errors.New("after finish; finish must be the last action")}
		}
		out = append(out, a)
	}
	*c = out
	return nil
}

// IsWorkspace reports whether the task works in a workspace (it has files,
// a workspace, setup, a test_command or workspace actions) rather than
// running one program.
func (c CodeConstraints) IsWorkspace() bool {
	return c.Files != nil || c.Workspace != "" || len(c.Setup) > 0 || c.TestCommand != "" || c.Actions != nil
}

// validate checks what the types alone do not: a workspace task is
// verified by its test_command, so the single-program constraints are not
// for it; and the workspace reference is a clean relative path.
func (c *CodeConstraints) validate() error {
	if err := c.Resources.validate(); err != nil {
		return err
	}
	if c.Environment != "" {
		if err := ValidateEnvironment(c.Environment); err != nil {
			return &fieldError{field: "environment", err: err}
		}
	}
	if c.Workspace != "" {
		if err := ValidateWorkspacePath(c.Workspace); err != nil {
			return &fieldError{field: "workspace", err: fmt.Errorf("%w (a directory or .tar/.tar.gz under WORKSPACE_ROOT)", err)}
		}
	}
	if strings.IndexByte(c.TestCommand, 0) >= 0 {
		return &fieldError{field: "test_command", err: errNUL}
	}
	if c.TestFiles != nil && c.TestCommand == "" {
		return &fieldError{field: "test_files", err: errors.New("are for test_command, which runs them (e.g. \"bash /tests/test.sh\"); the task has none")}
	}
	if !c.IsWorkspace() {
		return nil
	}
	if c.Environment != "" {
		// Refused rather than run on the host's root: a workspace's steps
		// are not yet run on an image (issue 27).
		return &fieldError{field: "environment", err: errors.New("is not yet supported for workspace tasks (files, workspace, setup, test_command, actions); only single-program tasks run in an image")}
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"code", c.Code != ""}, {"tests", c.Tests != ""}, {"visible_tests", c.VisibleTests != ""},
		{"expected_output", c.ExpectedOutput != nil}, {"stdin", c.Stdin != ""},
	} {
		if f.set {
			return &fieldError{field: f.name, err: errors.New("is for single-program tasks; a workspace task (files, workspace, setup, test_command, actions) is checked by test_command and scripted by actions")}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func argList(names []string) string {
	if len(names) == 0 {
		return "no arguments"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
