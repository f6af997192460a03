package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Resources is constraints.resources: what a code task asks of the
// sandbox runtime's jail beyond its defaults (a Harbor task.toml's
// [environment] cpus, memory and storage become these). A field left out
// (zero) takes the runtime's default. The runtime runs a task only within
// its caps (ResourceCaps, the SANDBOX_CAP_* settings): a task asking more
// is refused, naming the field, never run with less than it asked.
type Resources struct {
	// MemoryMB is the program's memory in MiB (sandbox.Limits.MemoryBytes).
	MemoryMB int64 `json:"memory_mb,omitempty"`
	// MaxProcs is the number of processes (sandbox.Limits.MaxProcs).
	MaxProcs int `json:"max_procs,omitempty"`
	// MaxThreads is the number of threads of all its processes
	// (sandbox.Limits.MaxThreads).
	MaxThreads int `json:"max_threads,omitempty"`
	// CPUs is how many CPUs' worth of time the program may use: its CPU
	// time limit is the task's time limit × ceil(cpus) (a multi-threaded
	// program uses CPU time faster than wall time).
	CPUs float64 `json:"cpus,omitempty"`
	// WorkspaceMB is a workspace task's workspace size in MiB (the
	// runtime's SANDBOX_WORKSPACE_MB by default).
	WorkspaceMB int64 `json:"workspace_mb,omitempty"`
}

// UnmarshalJSON decodes strictly, naming the field of an error
// (constraints.resources.<field>).
func (r *Resources) UnmarshalJSON(b []byte) error {
	type plain Resources
	var p plain
	if err := decodeStrict(b, &p); err != nil {
		var typeErr *json.UnmarshalTypeError
		if uk, ok := unknownField(err); ok {
			var known []string
			for _, f := range (Resources{}).fields() {
				known = append(known, f.name)
			}
			return &fieldError{field: "resources." + uk, err: fmt.Errorf("unknown resource; known: %s", strings.Join(known, ", "))}
		}
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return &fieldError{field: "resources." + typeErr.Field, err: typeErr}
		}
		return &fieldError{field: "resources", err: err}
	}
	*r = Resources(p)
	return nil
}

// Absolute bounds of a resources constraint, whatever the runtime's caps:
// a task asking more is invalid anywhere.
const (
	MaxResourceMemoryMB    = 1 << 20 // 1 TiB
	MaxResourceProcs       = 1 << 16
	MaxResourceThreads     = 1 << 20
	MaxResourceCPUs        = 1024
	MaxResourceWorkspaceMB = 1 << 24 // 16 TiB
)

// DefaultResourceCaps are the sandbox runtime's caps by default
// (SANDBOX_CAP_*) and `adpctl import harbor`'s (--max-*): what a Harbor
// task.toml asks by default (2 GiB, 1 CPU, 10 GiB of storage) fits.
var DefaultResourceCaps = ResourceCaps{MemoryMB: 4096, MaxProcs: 64, MaxThreads: 1024, CPUs: 4, WorkspaceMB: 10240}

// ResourceCaps are a runtime's caps on what a task's resources may ask (at
// least its defaults; a zero cap refuses every value of its field).
type ResourceCaps Resources

// IsZero reports whether the task asks for nothing.
func (r Resources) IsZero() bool { return r == Resources{} }

// resourceFields lists the fields with their JSON names, value and
// absolute bound, in the order errors are reported.
func (r Resources) fields() []struct {
	name     string
	v, bound float64
} {
	return []struct {
		name     string
		v, bound float64
	}{
		{"memory_mb", float64(r.MemoryMB), MaxResourceMemoryMB},
		{"max_procs", float64(r.MaxProcs), MaxResourceProcs},
		{"max_threads", float64(r.MaxThreads), MaxResourceThreads},
		{"cpus", r.CPUs, MaxResourceCPUs},
		{"workspace_mb", float64(r.WorkspaceMB), MaxResourceWorkspaceMB},
	}
}

// validate rejects a negative or absurd field (as constraints.resources.<field>).
func (r Resources) validate() error {
	for _, f := range r.fields() {
		switch {
		case math.IsNaN(f.v) || f.v < 0:
			return &fieldError{field: "resources." + f.name, err: fmt.Errorf("%v is negative; leave it out for the runtime's default", f.v)}
		case f.v > f.bound:
			return &fieldError{field: "resources." + f.name, err: fmt.Errorf("%v is more than any runtime allows (%v)", f.v, f.bound)}
		}
	}
	return nil
}

// Within checks r against caps: the first field above its cap is an
// *InvalidTaskError naming constraints.resources.<field>. taskID names the
// task in the error.
func (r Resources) Within(caps ResourceCaps, taskID string) error {
	capFields := Resources(caps).fields()
	for i, f := range r.fields() {
		if c := capFields[i]; f.v > c.v {
			return &InvalidTaskError{
				TaskID: printableID(taskID), Field: "constraints.resources." + f.name,
				Reason: fmt.Sprintf("%v is above this runtime's cap of %v: the jail would give the task less than it asks", f.v, c.v),
			}
		}
	}
	return nil
}
