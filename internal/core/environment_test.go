package core

import (
	"strings"
	"testing"
)

func TestValidateEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env string
		ok  bool
	}{
		{"python:3.12-slim", true},
		{"ghcr.io/org/img:1", true},
		{"127.0.0.1:5000/swe/task@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"archive:tasks/t1.tar", true},
		{"python", false}, // no tag: "latest" moves
		{"Python:3", false},
		{" python:3", false},
		{"archive:", false},
		{"archive:/etc/x.tar", false},
		{"archive:../x.tar", false},
		{"archive:a//b.tar", false},
		{"", false},
	} {
		if err := ValidateEnvironment(tc.env); (err == nil) != tc.ok {
			t.Errorf("ValidateEnvironment(%q) = %v, want ok %v", tc.env, err, tc.ok)
		}
	}
}

func TestParseTaskEnvironment(t *testing.T) {
	line := `{"task_id":"e1","task_type":"code","description":"d","constraints":{"code":"print(1)","environment":"archive:../x.tar"}}`
	if _, err := ParseTask([]byte(line)); err == nil {
		t.Fatal("a task with an environment out of the archive directory was accepted")
	}
	line = `{"task_id":"e1","task_type":"code","description":"d","constraints":{"test_command":"true","environment":"python:3.12-slim"}}`
	if _, err := ParseTask([]byte(line)); err == nil || !strings.Contains(err.Error(), "workspace") {
		t.Fatalf("a workspace task with an environment: err = %v, want refused", err)
	}
	line = `{"task_id":"e1","task_type":"code","description":"d","constraints":{"code":"print(1)","environment":"python:3.12-slim"}}`
	task, err := ParseTask([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := task.Code(); err != nil || c.Environment != "python:3.12-slim" {
		t.Fatalf("constraints = %+v (%v)", c, err)
	}
}
