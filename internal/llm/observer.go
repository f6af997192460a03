package llm

import "time"

// Attempt describes one HTTP attempt of a Chat call.
type Attempt struct {
	// N is the attempt number, 1 for the first.
	N int
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Err is nil when the attempt produced the response; otherwise why it
	// failed (already redacted).
	Err error
	// Duration is the time from sending the request to reading the body; it
	// excludes the wait for a concurrency slot.
	Duration time.Duration
	// Retry is true when another attempt follows, after Wait.
	Retry bool
	Wait  time.Duration
	// Usage is the token usage of a successful attempt.
	Usage Usage
}

// Observer is told about every attempt, from the calling goroutine, before
// Chat returns or sleeps. Count requests as attempts, retries as attempts
// with Retry, tokens from Usage. Implementations must be safe for concurrent
// use and fast (no I/O).
type Observer interface {
	ObserveAttempt(Attempt)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Attempt)

// ObserveAttempt calls f(a).
func (f ObserverFunc) ObserveAttempt(a Attempt) { f(a) }
