package core

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseTask: any input either parses into a task that validates, survives
// a JSON round trip and has a file-safe id, or fails with *InvalidTaskError.
func FuzzParseTask(f *testing.F) {
	for _, s := range []string{
		`{"task_id":"demo_fib","task_type":"code","description":"fib","max_steps":5,"timeout":300,"priority":1}`,
		`{"task_type":"web","description":"search","constraints":{"start_url":"http://127.0.0.1/"}}`,
		`{"task_id":"../etc/passwd","task_type":"code","description":"x"}`,
		`{"task_type":"reasoning","description":"x","expected_tools":["python_executor"]}`,
		`{"task_type":"code","description":"x","timeout":1e9}`,
		`{"task_type":"code","description":"fix","constraints":{"files":{"a.py":"x","b/c":{"base64":"AA=="}},"setup":["true"],"test_command":"true","actions":[{"action":"edit_file","path":"a.py","old":"x","new":"y"},{"action":"finish"}]}}`,
		`{"task_type":"code","description":"ws","constraints":{"workspace":"repos/r.tar.gz","actions":[{"action":"read_file","path":"a","offset":0,"limit":3},{"action":"bash","command":"ls","timeout":5}]}}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]`,
		"\xff\x00{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := ParseTask(data)
		if err != nil {
			var inv *InvalidTaskError
			if !errors.As(err, &inv) {
				t.Fatalf("error is %T, want *InvalidTaskError: %v", err, err)
			}
			return
		}
		if err := task.Validate(); err != nil {
			t.Fatalf("parsed task does not validate: %v", err)
		}
		if !task.Kind().Valid() {
			t.Fatalf("parsed task has no kind: %q", task.Kind())
		}
		if err := ValidateTaskID(task.TaskID); err != nil {
			t.Fatalf("unsafe id %q accepted: %v", task.TaskID, err)
		}
		b, err := json.Marshal(task)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseTask(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if again.TaskID != task.TaskID || again.TaskType != task.TaskType || again.Timeout != task.Timeout || again.Kind() != task.Kind() {
			t.Fatalf("round trip changed the task: %+v vs %+v", again, task)
		}
	})
}
