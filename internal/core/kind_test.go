package core

import (
	"strings"
	"testing"
)

func TestParseDecidesKind(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Kind
	}{
		{`{"task_type":"code","description":"x"}`, KindProgram},
		{`{"task_type":"code","description":"x","constraints":{"code":"print(1)","expected_output":"1"}}`, KindProgram},
		{`{"task_type":"reasoning","description":"x","constraints":{"expected_output":"4"}}`, KindProgram},
		{`{"task_type":"code","description":"x","constraints":{"files":{"a.py":"x"},"test_command":"true"}}`, KindWorkspace},
		{`{"task_type":"code","description":"x","constraints":{"setup":["true"]}}`, KindWorkspace},
		{`{"task_type":"code","description":"x","constraints":{"actions":[{"action":"finish"}]}}`, KindWorkspace},
		{`{"task_type":"web","description":"x","constraints":{"start_url":"http://127.0.0.1/"}}`, KindWeb},
	} {
		task, err := ParseTask([]byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if got := task.Kind(); got != tc.want {
			t.Errorf("%s: Kind = %q, want %q", tc.line, got, tc.want)
		}
		_, codeErr := task.Code()
		_, webErr := task.Web()
		if (codeErr == nil) == (tc.want == KindWeb) || (webErr == nil) != (tc.want == KindWeb) {
			t.Errorf("%s: Code err %v, Web err %v: want exactly the accessor of a %s task to succeed", tc.line, codeErr, webErr, tc.want)
		}
	}
}

// A parsed task encodes to the bytes it did when its constraints were only
// a map: the typed value is not part of the wire form.
func TestTypedTaskWireUnchanged(t *testing.T) {
	line := `{"task_id":"w","task_type":"code","description":"fix <it>","expected_tools":null,"constraints":{"files":{"a.py":"x = 1\n"},"setup":["pip install -q x"],"test_command":"python -c 'import a'","actions":[{"action":"bash","command":"ls","timeout":5},{"action":"finish"}]},"max_steps":10,"timeout":300,"priority":1}`
	task, err := ParseTask([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	plain := TaskSpec{TaskID: task.TaskID, TaskType: task.TaskType, Description: task.Description, Constraints: task.Constraints,
		MaxSteps: task.MaxSteps, Timeout: task.Timeout, Priority: task.Priority, Samples: task.Samples}
	got, err := task.MarshalLine()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := plain.MarshalLine()
	if string(got) != string(want) {
		t.Errorf("parsed task encodes to\n%s\nwant\n%s", got, want)
	}
	for _, field := range []string{`"kind"`, `"Code"`, `"typed`} {
		if strings.Contains(string(got), field) {
			t.Errorf("wire form %s carries %s", got, field)
		}
	}
}

// Constraints replaced after the parse are read as they are now, never the
// parse's stale value.
func TestReplacedConstraintsAreDecoded(t *testing.T) {
	task, err := ParseTask([]byte(`{"task_id":"t","task_type":"code","description":"x","constraints":{"code":"print(1)"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if task.Kind() != KindProgram {
		t.Fatalf("Kind = %q", task.Kind())
	}
	task.Constraints = map[string]any{"setup": []any{"true"}}
	if c, err := task.Code(); err != nil || task.Kind() != KindWorkspace || len(c.Setup) != 1 {
		t.Errorf("after replacing the constraints: Kind %q, Code %+v, %v; want a workspace task", task.Kind(), c, err)
	}
	if err := task.Validate(); err != nil || task.Kind() != KindWorkspace {
		t.Errorf("Validate = %v, Kind %q", err, task.Kind())
	}
}
