package core

import (
	"strconv"
	"strings"
)

// An attempt is one of a task's Samples runs: task id + 0-based sample
// index. Attempt 0 keeps every name a task had before attempts existed
// (its file, its dedup member), so a file with samples = 1 runs and reads
// exactly as before.

// sampleSuffix separates a task id from the sample index in the file of
// attempts k >= 1: <task_id>.sample-<k>.json. ValidateTaskID rejects ids
// ending in .sample-<digits>, so no task's file can be another's attempt.
const sampleSuffix = ".sample-"

// TrajectoryFileName is the name of the trajectory file of attempt k of
// task id: <task_id>.json for attempt 0, <task_id>.sample-<k>.json after.
func TrajectoryFileName(id string, k int) string {
	return AttemptName(id, k) + ".json"
}

// AttemptName is TrajectoryFileName without ".json": the task id for
// attempt 0, <task_id>.sample-<k> after. It names an attempt in logs and
// tests.
func AttemptName(id string, k int) string {
	if k == 0 {
		return id
	}
	return id + sampleSuffix + strconv.Itoa(k)
}

// ParseAttemptName splits an AttemptName (or a trajectory file name
// without ".json") into the task id and the sample index. A name without
// the suffix is attempt 0 of the task of that id.
func ParseAttemptName(name string) (id string, k int) {
	i := strings.LastIndex(name, sampleSuffix)
	if i <= 0 {
		return name, 0
	}
	n, ok := sampleDigits(name[i+len(sampleSuffix):])
	if !ok || n == 0 {
		return name, 0
	}
	return name[:i], n
}

// sampleDigits parses the index of a sample suffix: decimal digits only.
func sampleDigits(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// hasSampleSuffix reports whether id ends in .sample-<digits>, the shape of
// an attempt's file name: such an id could collide with another task's.
func hasSampleSuffix(id string) bool {
	i := strings.LastIndex(id, sampleSuffix)
	if i < 0 {
		return false
	}
	_, ok := sampleDigits(id[i+len(sampleSuffix):])
	return ok
}

// dispatchedSep joins a task id and a sample index in a member of
// KeyDispatched. It is a control character (unit separator), which
// ValidateTaskID rejects in ids, so a member reads back unambiguously.
const dispatchedSep = "\x1f"

// DispatchedMember is the member of KeyDispatched that marks attempt k of
// task id as enqueued: the id itself for attempt 0 (as before attempts
// existed, so old sets stay valid), id + "\x1f" + k for k >= 1.
func DispatchedMember(id string, k int) string {
	if k == 0 {
		return id
	}
	return id + dispatchedSep + strconv.Itoa(k)
}

// ParseDispatchedMember is the inverse of DispatchedMember.
func ParseDispatchedMember(m string) (id string, k int) {
	id, ks, ok := strings.Cut(m, dispatchedSep)
	if !ok {
		return m, 0
	}
	n, err := strconv.Atoi(ks)
	if err != nil || n < 0 {
		return m, 0
	}
	return id, n
}
