package core

import (
	"errors"
	"strings"
	"testing"
)

func TestResourcesConstraint(t *testing.T) {
	for _, tc := range []struct {
		name, constraints string
		want              Resources
		field, reason     string
	}{
		{"all", `{"resources": {"memory_mb": 2048, "max_procs": 32, "max_threads": 512, "cpus": 2.5, "workspace_mb": 1024}}`,
			Resources{MemoryMB: 2048, MaxProcs: 32, MaxThreads: 512, CPUs: 2.5, WorkspaceMB: 1024}, "", ""},
		{"some", `{"resources": {"memory_mb": 512}}`, Resources{MemoryMB: 512}, "", ""},
		{"unknown key", `{"resources": {"memory": 512}}`, Resources{}, "constraints.resources.memory", "unknown"},
		{"negative", `{"resources": {"cpus": -1}}`, Resources{}, "constraints.resources.cpus", "negative"},
		{"absurd", `{"resources": {"memory_mb": 99999999999}}`, Resources{}, "constraints.resources.memory_mb", "more than any runtime allows"},
		{"wrong type", `{"resources": {"max_procs": "many"}}`, Resources{}, "constraints.resources.max_procs", ""},
		{"fraction of a process", `{"resources": {"max_procs": 1.5}}`, Resources{}, "constraints.resources.max_procs", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseTask([]byte(`{"task_id": "r", "task_type": "code", "description": "x", "constraints": ` + tc.constraints + `}`))
			if tc.field != "" {
				var ie *InvalidTaskError
				if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(ie.Reason, tc.reason) {
					t.Fatalf("err = %v (%#v), want field %s, reason with %q", err, ie, tc.field, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := spec.Code()
			if err != nil {
				t.Fatal(err)
			}
			if c.Resources != tc.want {
				t.Errorf("resources = %+v, want %+v", c.Resources, tc.want)
			}
		})
	}
}

func TestResourcesWithin(t *testing.T) {
	caps := ResourceCaps{MemoryMB: 4096, MaxProcs: 64, MaxThreads: 1024, CPUs: 4, WorkspaceMB: 2048}
	for _, tc := range []struct {
		name  string
		r     Resources
		field string
	}{
		{"nothing", Resources{}, ""},
		{"at the caps", Resources(caps), ""},
		{"memory above", Resources{MemoryMB: 4097}, "constraints.resources.memory_mb"},
		{"procs above", Resources{MaxProcs: 65}, "constraints.resources.max_procs"},
		{"threads above", Resources{MaxThreads: 2000}, "constraints.resources.max_threads"},
		{"cpus above", Resources{CPUs: 4.5}, "constraints.resources.cpus"},
		{"workspace above", Resources{WorkspaceMB: 4096}, "constraints.resources.workspace_mb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Within(caps, "t1")
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ie *InvalidTaskError
			if !errors.As(err, &ie) || ie.Field != tc.field || ie.TaskID != "t1" || !strings.Contains(ie.Reason, "above this runtime's cap") {
				t.Errorf("err = %v, want an invalid task naming %s", err, tc.field)
			}
		})
	}
}
