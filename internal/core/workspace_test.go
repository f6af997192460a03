package core

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestWorkspaceConstraintRejects: each malformed workspace constraint is an
// InvalidTaskError naming the field, at parse time (dispatch, submit).
func TestWorkspaceConstraintRejects(t *testing.T) {
	for _, tc := range []struct {
		name        string
		constraints string
		field       string
		reason      string
	}{
		{"files not an object", `{"files":["a.py"]}`, "constraints.files", "object of path"},
		{"absolute path", `{"files":{"/etc/passwd":"x"}}`, `constraints.files["/etc/passwd"]`, "absolute"},
		{"dot dot", `{"files":{"a/../../b":"x"}}`, `constraints.files["a/../../b"]`, `".."`},
		{"unclean path", `{"files":{"a//b":"x"}}`, `constraints.files["a//b"]`, "clean form"},
		{"dot path", `{"files":{"./a":"x"}}`, `constraints.files["./a"]`, "clean form"},
		{"trailing slash", `{"files":{"a/":"x"}}`, `constraints.files["a/"]`, "clean form"},
		{"control character", `{"files":{"a\nb":"x"}}`, `constraints.files["a\nb"]`, "control character"},
		{"empty path", `{"files":{"":"x"}}`, `constraints.files[""]`, "empty path"},
		{"long element", `{"files":{"` + strings.Repeat("a", 256) + `":"x"}}`, `constraints.files["` + strings.Repeat("a", 256) + `"]`, "limit of 255"},
		{"content a number", `{"files":{"a":1}}`, `constraints.files["a"]`, `UTF-8 string or {"base64"`},
		{"base64 typo", `{"files":{"a":{"base46":"eA=="}}}`, `constraints.files["a"]`, `{"base64"`},
		{"bad base64", `{"files":{"a":{"base64":"!!"}}}`, `constraints.files["a"]`, "base64"},
		{"file and directory", `{"files":{"a":"x","a/b":"y"}}`, `constraints.files["a"]`, `directory of "a/b"`},
		{"workspace absolute", `{"workspace":"/srv/repo"}`, "constraints.workspace", "absolute"},
		{"workspace escapes", `{"workspace":"../repo.tar"}`, "constraints.workspace", `".."`},
		{"workspace not a string", `{"workspace":["a"]}`, "constraints.workspace", "must be a string"},
		{"setup a number", `{"setup":3}`, "constraints.setup", "shell command or a list"},
		{"setup empty command", `{"setup":["make", " "]}`, "constraints.setup[1]", "empty command"},
		{"test_command a list", `{"test_command":["pytest"]}`, "constraints.test_command", "must be a string"},
		{"actions empty", `{"actions":[]}`, "constraints.actions", "empty"},
		{"actions not a list", `{"actions":{"action":"bash"}}`, "constraints.actions", "list of actions"},
		{"action not an object", `{"actions":["ls"]}`, "constraints.actions[0]", "must be an object"},
		{"action name missing", `{"actions":[{"command":"ls"}]}`, "constraints.actions[0].action", "missing"},
		{"unknown action", `{"actions":[{"action":"rm","path":"a"}]}`, "constraints.actions[0].action", `unknown action "rm"`},
		{"unknown key", `{"actions":[{"action":"bash","command":"ls","cwd":"/"}]}`, "constraints.actions[0].cwd", `it takes "command", "timeout"`},
		{"misplaced key", `{"actions":[{"action":"python","code":"1","path":"a"}]}`, "constraints.actions[0].path", "unknown argument of python"},
		{"bash without command", `{"actions":[{"action":"bash"}]}`, "constraints.actions[0].command", "missing"},
		{"bash empty command", `{"actions":[{"action":"bash","command":""}]}`, "constraints.actions[0].command", "empty"},
		{"NUL in a bash command", `{"actions":[{"action":"bash","command":"true\u0000rm -rf ."}]}`, "constraints.actions[0].command", "NUL"},
		{"NUL in python code", `{"actions":[{"action":"python","code":"print(1)\u0000print(2)"}]}`, "constraints.actions[0].code", "NUL"},
		{"NUL in setup", `{"setup":["ls","true\u0000false"]}`, "constraints.setup[1]", "NUL"},
		{"NUL in test_command", `{"files":{"a":"x"},"test_command":"true\u0000false"}`, "constraints.test_command", "NUL"},
		{"test_files without test_command", `{"files":{"a":"x"},"test_files":{"test.sh":"exit 0"}}`, "constraints.test_files", "test_command"},
		{"test_files with ..", `{"test_command":"bash /tests/t.sh","test_files":{"../t.sh":"exit 0"}}`, "constraints.test_files[\"../t.sh\"]", ".."},
		{"python without code", `{"actions":[{"action":"python"}]}`, "constraints.actions[0].code", "missing"},
		{"read_file without path", `{"actions":[{"action":"read_file"}]}`, "constraints.actions[0].path", "missing"},
		{"read_file negative offset", `{"actions":[{"action":"read_file","path":"a","offset":-1}]}`, "constraints.actions[0].offset", "negative"},
		{"read_file zero limit", `{"actions":[{"action":"read_file","path":"a","limit":0}]}`, "constraints.actions[0].limit", "at least 1"},
		{"write_file without content", `{"actions":[{"action":"write_file","path":"a"}]}`, "constraints.actions[0].content", "missing"},
		{"write_file content null", `{"actions":[{"action":"write_file","path":"a","content":null}]}`, "constraints.actions[0].content", "missing"},
		{"write_file content a number", `{"actions":[{"action":"write_file","path":"a","content":3}]}`, "constraints.actions[0].content", "must be a string"},
		{"edit_file without new", `{"actions":[{"action":"bash","command":"ls"},{"action":"edit_file","path":"a","old":"x"}]}`, "constraints.actions[1].new", "missing"},
		{"edit_file empty old", `{"actions":[{"action":"edit_file","path":"a","old":"","new":"y"}]}`, "constraints.actions[0].old", "empty"},
		{"timeout out of range", `{"actions":[{"action":"bash","command":"ls","timeout":0}]}`, "constraints.actions[0].timeout", "out of range"},
		{"timeout a string", `{"actions":[{"action":"bash","command":"ls","timeout":"5s"}]}`, "constraints.actions[0].timeout", "must be an integer"},
		{"finish not last", `{"actions":[{"action":"finish"},{"action":"bash","command":"ls"}]}`, "constraints.actions[1]", "finish must be the last"},
		{"finish with a command", `{"actions":[{"action":"finish","command":"ls"}]}`, "constraints.actions[0].command", `it takes "answer"`},
		{"code with actions", `{"code":"print(1)","actions":[{"action":"bash","command":"ls"}]}`, "constraints.code", "single-program tasks"},
		{"tests with files", `{"files":{"a.py":""},"tests":"assert True"}`, "constraints.tests", "single-program tasks"},
		{"expected_output with test_command", `{"test_command":"true","expected_output":"1"}`, "constraints.expected_output", "checked by test_command"},
		{"stdin with setup", `{"setup":"true","stdin":"1"}`, "constraints.stdin", "single-program"},
		{"visible_tests with workspace", `{"workspace":"repo","visible_tests":"assert 1"}`, "constraints.visible_tests", "single-program"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTask([]byte(`{"task_id":"w","task_type":"code","description":"x","constraints":` + tc.constraints + `}`))
			var inv *InvalidTaskError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseTask = %v, want an InvalidTaskError", err)
			}
			if inv.Field != tc.field || !strings.Contains(inv.Reason, tc.reason) {
				t.Errorf("error field %q reason %q; want field %q, reason containing %q", inv.Field, inv.Reason, tc.field, tc.reason)
			}
		})
	}
}

func TestWorkspaceConstraintsDecode(t *testing.T) {
	task, err := ParseTask([]byte(`{"task_id":"w","task_type":"code","description":"fix it","constraints":{
		"files":{"calc.py":"def add(a, b):\n    return a - b\n","data/blob.bin":{"base64":"AAEC/w=="},"empty.txt":""},
		"workspace":"repos/calc.tar.gz","setup":"git init -q","test_command":"python3 -m unittest -q",
		"actions":[{"action":"BASH","command":"ls","timeout":5},{"action":"read_file","path":"calc.py","offset":0,"limit":10},
			{"action":"edit_file","path":"calc.py","old":"a - b","new":"a + b"},{"action":"write_file","path":"notes.txt","content":""},
			{"action":"python","code":"print(1)"},{"action":"finish","answer":"fixed"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := task.Code()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Files["data/blob.bin"]); got != "\x00\x01\x02\xff" {
		t.Errorf("base64 file = %q", got)
	}
	if got, ok := c.Files["empty.txt"]; !ok || len(got) != 0 {
		t.Errorf("empty file = %q, %v", got, ok)
	}
	if len(c.Setup) != 1 || c.Setup[0] != "git init -q" {
		t.Errorf("setup as a string = %q, want one command", c.Setup)
	}
	if !c.IsWorkspace() || c.Checks() != 1 || !c.HasVerifier() {
		t.Errorf("IsWorkspace=%v Checks=%d, want true 1 (test_command)", c.IsWorkspace(), c.Checks())
	}
	if len(c.Actions) != 6 || c.Actions[0].Action != CodeActionBash || *c.Actions[0].Timeout != 5 {
		t.Fatalf("actions = %+v", c.Actions)
	}
	if a := c.Actions[2]; a.Action != CodeActionEditFile || *a.Old != "a - b" || *a.New != "a + b" {
		t.Errorf("edit_file = %+v", a)
	}
	if a := c.Actions[3].Arguments(); a["content"] != "" || a["path"] != "notes.txt" || len(a) != 2 {
		t.Errorf("write_file arguments = %v, want path and the empty content", a)
	}
	if a := c.Actions[1].Arguments(); a["offset"] != 0 || a["limit"] != 10 {
		t.Errorf("read_file arguments = %v", a)
	}

	// A workspace task without a test_command has no verifier; a list
	// of setup commands is kept in order.
	task.Constraints = map[string]any{"files": map[string]any{}, "setup": []any{"a", "b"}}
	if c, err = task.Code(); err != nil {
		t.Fatal(err)
	}
	if !c.IsWorkspace() || c.HasVerifier() || len(c.Setup) != 2 || c.Setup[1] != "b" {
		t.Errorf("constraints = %+v: IsWorkspace=%v HasVerifier=%v", c, c.IsWorkspace(), c.HasVerifier())
	}
	// A single-program task is not a workspace task.
	task.Constraints = map[string]any{"code": "print(1)", "expected_output": "1"}
	if c, err = task.Code(); err != nil || c.IsWorkspace() {
		t.Errorf("single program: IsWorkspace=%v, %v", c.IsWorkspace(), err)
	}
}

// TestParseCodeActionToolCall: a model's tool call decodes through the same
// rules as a task's action.
func TestParseCodeActionToolCall(t *testing.T) {
	for _, tc := range []struct {
		name, args string
		ok         bool
		want       string // in the error
	}{
		{"bash", `{"command":"ls -la"}`, true, ""},
		{"bash", `{"command":"ls","timeout":30}`, true, ""},
		{"bash", `{"cmd":"ls"}`, false, `cmd: unknown argument of bash`},
		{"edit_file", `{"path":"a","old":"x"}`, false, "new: missing"},
		{"finish", `{}`, true, ""},
		{"bash", `[1]`, false, "JSON object"},
		{"delete", `{}`, false, "unknown action"},
	} {
		_, err := ParseCodeAction(tc.name, []byte(tc.args))
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCodeAction(%s, %s) = %v, want ok=%v or an error with %q", tc.name, tc.args, err, tc.ok, tc.want)
		}
	}
}

// TestDocsWorkspaceExample: docs/tasks.md's example workspace tasks are valid.
func TestDocsWorkspaceExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/tasks.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "**Workspace tasks.**")
	_, block, ok2 := strings.Cut(after, "```json\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/tasks.md has no example after **Workspace tasks.**")
	}
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) != 2 {
		t.Fatalf("the example has %d task lines, want 2 (scripted; hidden test_files)", len(lines))
	}
	var cs [2]CodeConstraints
	for i, line := range lines {
		task, err := ParseTask([]byte(line))
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if cs[i], err = task.Code(); err != nil || !cs[i].IsWorkspace() || cs[i].TestCommand == "" {
			t.Fatalf("line %d decodes to %+v, %v", i+1, cs[i], err)
		}
	}
	if len(cs[0].Actions) != 3 || len(cs[1].TestFiles) != 2 || !strings.Contains(string(cs[1].TestFiles["test.sh"]), "/logs/verifier/reward.txt") {
		t.Errorf("the examples decode to %+v and %+v", cs[0], cs[1])
	}
}
