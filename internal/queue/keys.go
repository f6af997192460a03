package queue

import "github.com/agentdataplatform/adp/internal/core"

// keyLastErrorPrefix prefixes per-entry error notes:
// tasks:lasterror:<stream>:<entry id> holds the last system error a handler
// returned for that entry (expires after lastErrorTTL). The reclaimer copies
// it into the dead-letter entry.
const keyLastErrorPrefix = "tasks:lasterror:"

func lastErrorKey(stream, id string) string { return keyLastErrorPrefix + stream + ":" + id }

// Fields of a stream entry, and those dead-lettering adds to them.
const (
	// FieldTask is the task's JSON (one line of tasks.jsonl, as parsed).
	FieldTask = "task"
	// FieldKind is the task's core.Kind (program, workspace, web), decided
	// by the producer's parse. An entry of an older producer has none: the
	// consumer takes the kind of its own parse; an entry whose kind differs
	// from it is dead-lettered as an invalid task.
	FieldKind        = "kind"
	FieldSubmittedAt = "submitted_at"
	FieldPriority    = "priority"
	// FieldSample is the attempt's 0-based sample index (core.TaskSpec's
	// SampleIndex), present when the task has samples > 1; absent means
	// attempt 0. Dead-lettering and retry keep it with the other fields.
	FieldSample       = "sample"
	FieldSourceStream = "source_stream"
	FieldSourceID     = "source_id"
	FieldDeliveries   = "deliveries"
	FieldLastError    = "last_error"
	FieldDeadAt       = "dead_at"
)

// deadLetterFields are added by dead-lettering and stripped on retry.
var deadLetterFields = map[string]bool{
	FieldSourceStream: true, FieldSourceID: true, FieldDeliveries: true,
	FieldLastError: true, FieldDeadAt: true,
}

// DeadStream is where poison entries go.
const DeadStream = core.StreamDead
