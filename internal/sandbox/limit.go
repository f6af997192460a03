package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentdataplatform/adp/internal/core"
)

// Limit returns a Jail that runs at most n programs of j at once; further
// Runs wait for a free slot (or for ctx). A runtime that keeps more tasks in
// flight than it runs programs can write one task's trajectory, acknowledge
// it, fetch the next one and wait on a model while its jails keep the CPUs
// busy. Check does not take a slot: it is the health probe, and must not
// wait behind long programs. n < 1 means 1.
func Limit(j Jail, n int) Jail {
	return &limited{Jail: j, slots: make(chan struct{}, max(n, 1))}
}

type limited struct {
	Jail
	slots chan struct{}
}

func (l *limited) Run(ctx context.Context, req Request) (Result, error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The task's time ran out in the queue for a jail: its
			// timeout, as if the program had used it.
			return Result{ErrorType: core.ErrTimeout, ErrorMessage: "no jail became free within the time limit"}, nil
		}
		return systemError(Result{}, fmt.Errorf("sandbox: waiting for a free jail: %w", context.Cause(ctx)))
	}
	defer func() { <-l.slots }()
	return l.Jail.Run(ctx, req)
}
