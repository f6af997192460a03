// Package queue moves tasks through Redis Streams with at-least-once delivery
// and exactly-once results:
//
//   - Producer XADDs tasks, deduplicated by task id in one Lua script per
//     batch (SADD + XADD atomically), so a task id is never enqueued twice,
//     even across dispatcher restarts.
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
