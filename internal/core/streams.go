package core

// Redis keys shared by the dispatcher, the runtimes and adpctl. Every key the
// platform writes is named here.
const (
	// StreamCode holds code and reasoning tasks; the sandbox runtime consumes it.
	StreamCode = "tasks:code"
	// StreamWeb holds web tasks; the web runtime consumes it.
	StreamWeb = "tasks:web"
	// StreamDead is the dead-letter stream: entries that failed MAX_DELIVERIES
	// times, with their original fields plus source_stream, source_id,
	// deliveries and last_error. Written by the runtimes' reclaimers, read and
	// retried by `adpctl dlq`.
	StreamDead = "tasks:dead"
	// ConsumerGroup is the one consumer group every runtime joins.
	ConsumerGroup = "workers"
	// KeyDispatched is a set of every task attempt ever enqueued (by the
	// dispatcher or adpctl submit): DispatchedMember(id, k), the bare task id
	// for attempt 0. SADD is the atomic check-and-add that makes dispatch
	// exactly-once across restarts. Delete it to allow re-running the same ids.
	KeyDispatched = "tasks:dispatched"
	// KeyRuntimeHealth is a hash: field = consumer name, value = JSON health
	// report written by each runtime replica every few seconds.
	KeyRuntimeHealth = "runtime_health"
	// KeyTemplateCachePrefix prefixes template cache keys:
	// template_cache:<md5(task_type + ":" + lower(trim(description)))>.
	KeyTemplateCachePrefix = "template_cache:"
)

// Runtime names: the `runtime` label of metrics and the first part of
// consumer names.
const (
	RuntimeDispatcher = "dispatcher"
	RuntimeSandbox    = "sandbox"
	RuntimeWeb        = "web"
)

// Streams lists the task streams in a fixed order.
var Streams = []string{StreamCode, StreamWeb}

// StreamFor returns the stream a task type is routed to. Reasoning tasks go to
// tasks:code: the sandbox runtime serves them (the blueprint's
// tasks:reasoning had no consumer).
func StreamFor(t TaskType) string {
	if t == TaskWeb {
		return StreamWeb
	}
	return StreamCode
}

// RuntimeFor returns the runtime that consumes stream.
func RuntimeFor(stream string) string {
	if stream == StreamWeb {
		return RuntimeWeb
	}
	return RuntimeSandbox
}
