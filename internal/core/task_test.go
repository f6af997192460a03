package core

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestParseTaskDefaults(t *testing.T) {
	got, err := ParseTask([]byte(`{"task_type":"code","description":"Write fib"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxSteps != DefaultMaxSteps || got.Timeout != DefaultTimeout || got.Priority != DefaultPriority {
		t.Errorf("defaults not applied: %+v", got)
	}
	if _, err := uuid.Parse(got.TaskID); err != nil {
		t.Errorf("empty task_id did not get a UUID: %q", got.TaskID)
	}
	again, _ := ParseTask([]byte(`{"task_type":"code","description":"Write fib"}`))
	if again.TaskID == got.TaskID {
		t.Errorf("two id-less tasks got the same UUID")
	}
	withDefault, err := ParseTaskWithDefaultID([]byte(`{"task_type":"code","description":"x","task_id":""}`), "manual-1-0")
	if err != nil || withDefault.TaskID != "manual-1-0" {
		t.Errorf("default id = %q, %v", withDefault.TaskID, err)
	}
}

func TestParseTaskBlueprintSample(t *testing.T) {
	line := `{"task_id": "demo_fib", "task_type": "code", "description": "Write a Python function for the 10th Fibonacci number",
 "expected_tools": ["python_executor"], "constraints": {"expected_output": "55"}, "max_steps": 5, "timeout": 300, "priority": 1}`
	got, err := ParseTask([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got.TaskID != "demo_fib" || got.TaskType != TaskCode || got.MaxSteps != 5 || got.ExpectedTools[0] != "python_executor" {
		t.Errorf("parsed %+v", got)
	}
	if c, err := got.Code(); err != nil || c.ExpectedOutput == nil || *c.ExpectedOutput != "55" {
		t.Errorf("constraints = %+v, %v", c, err)
	}
}

func TestParseTaskErrors(t *testing.T) {
	long := strings.Repeat("a", MaxTaskIDBytes+1)
	tests := []struct {
		name, line, field, reason string
	}{
		{"not json", `hello`, "", "invalid JSON"},
		{"truncated", `{"task_type":"code"`, "", "JSON"},
		{"empty", ``, "", "empty"},
		{"array", `[1,2]`, "", "must be"},
		{"trailing data", `{"task_type":"code","description":"x"} {}`, "", "after the JSON object"},
		{"unknown type", `{"task_type":"video","description":"x"}`, "task_type", `unknown type "video"`},
		{"missing type", `{"description":"x"}`, "task_type", "missing"},
		{"missing description", `{"task_type":"code"}`, "description", "missing"},
		{"blank description", `{"task_type":"code","description":"  "}`, "description", "empty"},
		{"zero timeout", `{"task_type":"code","description":"x","timeout":0}`, "timeout", "out of range"},
		{"negative timeout", `{"task_type":"code","description":"x","timeout":-5}`, "timeout", "out of range"},
		{"absurd timeout", `{"task_type":"code","description":"x","timeout":86400}`, "timeout", "out of range 1..3600"},
		{"float timeout", `{"task_type":"code","description":"x","timeout":1.5}`, "timeout", "an integer"},
		{"string timeout", `{"task_type":"code","description":"x","timeout":"300"}`, "timeout", "an integer"},
		{"zero max_steps", `{"task_type":"code","description":"x","max_steps":0}`, "max_steps", "out of range"},
		{"absurd max_steps", `{"task_type":"code","description":"x","max_steps":1000000}`, "max_steps", "out of range"},
		{"negative priority", `{"task_type":"code","description":"x","priority":-1}`, "priority", "out of range"},
		{"unknown field", `{"task_type":"code","description":"x","max_step":3}`, "max_step", "unknown field"},
		{"zero samples", `{"task_type":"code","description":"x","samples":0}`, "samples", "out of range 1..100"},
		{"too many samples", `{"task_type":"code","description":"x","samples":101}`, "samples", "out of range 1..100"},
		{"sampling typo", `{"task_type":"code","description":"x","sampling":{"temprature":1}}`, "sampling", "temprature: unknown field"},
		{"sampling not an object", `{"task_type":"code","description":"x","sampling":[1]}`, "sampling", "object"},
		{"hot temperature", `{"task_type":"code","description":"x","sampling":{"temperature":2.5}}`, "sampling.temperature", "out of range 0..2"},
		{"zero top_p", `{"task_type":"code","description":"x","sampling":{"top_p":0}}`, "sampling.top_p", "out of range"},
		{"zero max_tokens", `{"task_type":"code","description":"x","sampling":{"max_tokens":0}}`, "sampling.max_tokens", "at least 1"},
		{"negative seed", `{"task_type":"code","description":"x","sampling":{"seed":-1}}`, "sampling.seed", "out of range"},
		{"seed past int32 with the attempts", `{"task_type":"code","description":"x","sampling":{"seed":2147483548}}`, "sampling.seed", "out of range 0..2147483547"},
		{"float seed", `{"task_type":"code","description":"x","sampling":{"seed":1.5}}`, "sampling", "seed"},
		{"constraints not object", `{"task_type":"code","description":"x","constraints":[1]}`, "constraints", "object"},
		{"misspelled verifier", `{"task_type":"code","description":"x","constraints":{"code":"print(1)","expected_outptu":"2"}}`, "constraints.expected_outptu", "unknown constraint for a code task"},
		{"web constraint on code", `{"task_type":"code","description":"x","constraints":{"start_url":"http://x"}}`, "constraints.start_url", "known: actions, code, environment, expected_output, files, resources, setup, stdin, test_command, test_files, tests"},
		{"code constraint on web", `{"task_type":"web","description":"x","constraints":{"tests":"assert 1"}}`, "constraints.tests", "unknown constraint for a web task"},
		{"reasoning typo", `{"task_type":"reasoning","description":"x","constraints":{"expected":"4"}}`, "constraints.expected", "unknown constraint"},
		{"tests not a string", `{"task_type":"code","description":"x","constraints":{"tests":["assert 1"]}}`, "constraints.tests", "must be a string"},
		{"expected_output a number", `{"task_type":"code","description":"x","constraints":{"expected_output":55}}`, "constraints.expected_output", "must be a string"},
		{"screenshot a string", `{"task_type":"web","description":"x","constraints":{"screenshot":"yes"}}`, "constraints.screenshot", "true or false"},
		{"actions not a list", `{"task_type":"web","description":"x","constraints":{"actions":"click"}}`, "constraints.actions", "a list of actions"},
		{"action key typo", `{"task_type":"web","description":"x","constraints":{"actions":[{"action":"click","selctor":"#a"}]}}`, "constraints.actions", `unknown field "selctor"`},
		{"unknown action", `{"task_type":"web","description":"x","constraints":{"actions":[{"action":"levitate","selector":"#a"}]}}`, "constraints.actions", `unknown action "levitate"`},
		{"action missing argument", `{"task_type":"web","description":"x","constraints":{"actions":[{"action":"goto"},{"action":"click"}]}}`, "constraints.actions", `[0]: action goto needs "url"`},
		{"id with slash", `{"task_id":"a/b","task_type":"code","description":"x"}`, "task_id", "'/'"},
		{"id with backslash", `{"task_id":"a\\b","task_type":"code","description":"x"}`, "task_id", `'\\'`},
		{"id dotdot", `{"task_id":"..","task_type":"code","description":"x"}`, "task_id", "'..'"},
		{"id with dotdot inside", `{"task_id":"a..b","task_type":"code","description":"x"}`, "task_id", "'..'"},
		{"id hidden", `{"task_id":".tmp","task_type":"code","description":"x"}`, "task_id", "start with '.'"},
		{"id NUL", `{"task_id":"a\u0000b","task_type":"code","description":"x"}`, "task_id", "NUL"},
		{"id newline", `{"task_id":"a\nb","task_type":"code","description":"x"}`, "task_id", "control"},
		{"id too long", `{"task_id":"` + long + `","task_type":"code","description":"x"}`, "task_id", "201 bytes"},
		{"id of an attempt's file", `{"task_id":"fib.sample-3","task_type":"code","description":"x"}`, "task_id", ".sample-<digits>"},
		{"id of an attempt's file, zero", `{"task_id":"fib.sample-0","task_type":"code","description":"x"}`, "task_id", "could collide"},
		{"not utf8", "{\"task_type\":\"code\",\"description\":\"\xff\xfe\"}", "", "UTF-8"},
		{"empty tool", `{"task_type":"code","description":"x","expected_tools":[""]}`, "expected_tools", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTask([]byte(tc.line))
			var inv *InvalidTaskError
			if !errors.As(err, &inv) {
				t.Fatalf("error = %v, want *InvalidTaskError", err)
			}
			if inv.Field != tc.field {
				t.Errorf("field = %q, want %q (%v)", inv.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not contain %q", err, tc.reason)
			}
		})
	}
}

func TestInvalidTaskErrorNamesUserID(t *testing.T) {
	_, err := ParseTask([]byte(`{"task_type":"nope","description":"x"}`))
	var inv *InvalidTaskError
	if !errors.As(err, &inv) || inv.TaskID != "" {
		t.Errorf("error names a generated id: %v", err)
	}
	_, err = ParseTask([]byte(`{"task_id":"mine","task_type":"nope","description":"x"}`))
	if !errors.As(err, &inv) || inv.TaskID != "mine" || !strings.Contains(err.Error(), `task "mine"`) {
		t.Errorf("error does not name the id: %v", err)
	}
}

func TestValidateTaskIDAccepts(t *testing.T) {
	for _, id := range []string{"demo_fib", "a.b", "task-1795737243348-0", "中文任务", "with space", "a.sample-", "a.sample-x", "a.sample-1b", "a.samples-1", strings.Repeat("x", MaxTaskIDBytes)} {
		if err := ValidateTaskID(id); err != nil {
			t.Errorf("ValidateTaskID(%q) = %v", id, err)
		}
	}
}

func TestStreamRouting(t *testing.T) {
	tests := map[TaskType]string{TaskCode: StreamCode, TaskReasoning: StreamCode, TaskWeb: StreamWeb}
	for tt, want := range tests {
		if got := StreamFor(tt); got != want {
			t.Errorf("StreamFor(%s) = %s, want %s", tt, got, want)
		}
	}
	if RuntimeFor(StreamWeb) != RuntimeWeb || RuntimeFor(StreamCode) != RuntimeSandbox {
		t.Error("RuntimeFor is wrong")
	}
}

func TestTrajectoryJSONFieldNames(t *testing.T) {
	task := TaskSpec{TaskID: "t1", TaskType: TaskCode, Description: "d"}
	tr := NewTrajectory(task, "sandbox-h-1")
	tr.AddStep(ExecutionStep{ActionType: ActionCodeExecution, Success: true})
	tr.AddStep(ExecutionStep{ActionType: ActionCodeExecution, ErrorType: ErrCompile})
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, f := range []string{"task_id", "runtime_id", "success", "steps", "final_result", "error_type", "error_message", "total_duration", "metadata", "created_at", "schema_version", "task_type"} {
		if _, ok := m[f]; !ok {
			t.Errorf("trajectory lacks %q: %s", f, b)
		}
	}
	if m["error_type"] != nil {
		t.Errorf("error_type of a clean trajectory = %v, want null", m["error_type"])
	}
	steps := m["steps"].([]any)
	s1, s2 := steps[0].(map[string]any), steps[1].(map[string]any)
	for _, f := range []string{"step_id", "action_type", "action_params", "observation", "success", "error_type", "error_message", "timestamp", "duration"} {
		if _, ok := s1[f]; !ok {
			t.Errorf("step lacks %q", f)
		}
	}
	if s1["step_id"] != 1.0 || s2["step_id"] != 2.0 || s2["error_type"] != "compile_error" || s1["error_type"] != nil {
		t.Errorf("steps = %v", steps)
	}
	var back Trajectory
	if err := json.Unmarshal(b, &back); err != nil || back.Steps[1].ErrorType != ErrCompile || back.ErrorType != ErrNone {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

// TestRejectReasonsSpeakJSON: a rejected line's reason names the task
// format's shapes (an integer, a JSON object), never a Go type, and a task
// printed across several lines is told to be one line.
func TestRejectReasonsSpeakJSON(t *testing.T) {
	goWords := regexp.MustCompile(`core\.|Go (value|struct)|\bstruct\b|map\[|\[\]|json:|\*`)
	const head = `{"task_id":"a","task_type":"code","description":"d",`
	for _, tc := range []struct{ line, want string }{
		{`"a string"`, "each line must be one JSON object, not a JSON string"},
		{`[1,2]`, "each line must be one JSON object, not a JSON array"},
		{`42`, "each line must be one JSON object, not a JSON number"},
		{`{"task_id": "demo_fib", "task_type": "code",`, "each line must be one whole JSON object"},
		{` "expected_tools": ["python_executor"], "max_steps": 5}`, "each line must be one JSON object, not a JSON string"},
		{`{"task_id": 5}`, "task_id: must be a string, not a JSON number"},
		{head + `"max_steps": "5"}`, "max_steps: must be an integer, not a JSON string"},
		{head + `"expected_tools": "x"}`, "expected_tools: must be a list of strings, not a JSON string"},
		{head + `"constraints": {"expected_output": 5}}`, "constraints.expected_output: must be a string, not a JSON number"},
		{head + `"sampling": {"seed": "x"}}`, "must be an integer, not a JSON string"},
		{head + `"constraints": {"actions": [{"action": "bash", "command": 5}]}}`, "must be a string, not a JSON number"},
		{`{"task_id":"a","task_type":"web","description":"d","constraints": {"actions": 5}}`, "must be a list of actions, not a JSON number"},
		{`{"task_id":"a","task_type":"web","description":"d","constraints": {"actions": [5]}}`, "must be an action object, not a JSON number"},
		{`{"task_id":"a","task_type":"web","description":"d","constraints": {"screenshot": 5}}`, "must be true or false, not a JSON number"},
	} {
		_, err := ParseTask([]byte(tc.line))
		if err == nil {
			t.Errorf("%s: accepted", tc.line)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.line, err, tc.want)
		}
		if goWords.MatchString(err.Error()) {
			t.Errorf("%s: %q names a Go type", tc.line, err)
		}
	}
}
