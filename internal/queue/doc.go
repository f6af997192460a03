// Package queue moves tasks through Redis Streams with at-least-once delivery
// and exactly-once results:
//
//   - Producer XADDs one entry per attempt of a task (samples, default 1),
//     deduplicated per (task id, attempt) in one Lua script per batch
//     (SMISMEMBER, then XADD per new attempt and one SADD, atomically), so
//     an attempt is never enqueued twice, even across dispatcher restarts.
//     The dedup set core.KeyDispatched holds core.DispatchedMember(id, k):
//     the task id itself for attempt 0 (so sets written before attempts
//     existed stay valid: their tasks are not run again) and
//     id + "\x1f" + k for attempt k >= 1 (\x1f, the unit separator, cannot
//     occur in a task id: core.ValidateTaskID rejects control characters).
//     Submitting an id again with a larger samples enqueues only the new
//     attempts. The attempt index travels in the entry's `sample` field
//     (FieldSample) beside `task`, present when samples > 1; the Consumer
//     sets TaskSpec.SampleIndex from it (absent: 0), and an entry whose
//     sample is not an integer in 0..samples-1 is dead-lettered as invalid.
//     Each attempt is its own entry: it is leased, reclaimed, retried and
//     dead-lettered on its own. The entry's `kind` field (FieldKind) is the
//     task's core.Kind from the producer's parse; the Consumer checks it
//     against its own parse (absent, from an older producer: the parse's).
//   - Consumer reads through the consumer group `workers`, runs a Handler per
//     entry with bounded concurrency, renews the lease of every entry it holds,
//     reclaims the entries of dead consumers, dead-letters entries that failed
//     MaxDeliveries times, and acknowledges only after the Handler succeeded
//     (i.e. the trajectory file exists).
//   - Monitor publishes queue sizes, pending lag and the dead-letter size.
//
// Acknowledged entries are deleted (XACK + XDEL in one transaction), so XLEN
// of a task stream is its backlog: entries not yet finished.
package queue
