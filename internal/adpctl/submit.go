package adpctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/ops"
	"github.com/agentdataplatform/adp/internal/queue"
)

// submitBatch is tasks per enqueue call.
const submitBatch = 256

func cmdSubmit(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "submit", "FILE|- | --json '<task>'")
	inline := fs.String("json", "", "one task as JSON, instead of a file")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var in io.Reader
	switch {
	case *inline != "" && len(pos) == 0:
		in = strings.NewReader(*inline)
	case *inline == "" && len(pos) == 1 && pos[0] == "-":
		in = e.Stdin
	case *inline == "" && len(pos) == 1:
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	default:
		return fmt.Errorf("%w: give one FILE, - for stdin, or --json", errUsage)
	}
	rdb, err := e.redis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	prod := queue.NewProducer(rdb)

	var enqueued, dups, rejected, valid int
	var runtimes map[string][]ops.HealthReport // read at the first sampled task
	var batch []core.TaskSpec
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		outs, err := prod.Enqueue(ctx, batch, nil)
		if err != nil {
			return err
		}
		for i, o := range outs {
			t := &batch[i]
			dups += o.Duplicates
			enqueued += o.Enqueued
			switch {
			case o.Enqueued == 0:
				fmt.Fprintf(e.Stderr, "duplicate: task %q was already dispatched; skipped\n", t.TaskID)
			case o.Duplicates > 0:
				fmt.Fprintf(e.Stdout, "enqueued %s -> %s: %d new attempts (%d were already dispatched)\n", t.TaskID, core.StreamFor(t.TaskType), o.Enqueued, o.Duplicates)
			case o.Enqueued > 1:
				fmt.Fprintf(e.Stdout, "enqueued %s -> %s: %d attempts\n", t.TaskID, core.StreamFor(t.TaskType), o.Enqueued)
			default:
				fmt.Fprintf(e.Stdout, "enqueued %s -> %s\n", t.TaskID, core.StreamFor(t.TaskType))
			}
		}
		batch = batch[:0]
		return nil
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), core.MaxTaskBytes+1)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		t, err := core.ParseTask(sc.Bytes())
		if err != nil {
			var inv *core.InvalidTaskError
			if errors.As(err, &inv) {
				inv.Line = line
			}
			rejected++
			fmt.Fprintf(e.Stderr, "rejected: %v\n", err)
			continue
		}
		valid++
		if t.Samples > 1 || t.Sampling != nil {
			warnSamplingWithoutModel(ctx, e, rdb, t, &runtimes)
		}
		batch = append(batch, t)
		if len(batch) >= submitBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read input at line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return err
	}
	// Counted in attempts (stream entries): a task of samples N is N.
	fmt.Fprintf(e.Stderr, "%d enqueued, %d duplicates, %d rejected\n", enqueued, dups, rejected)
	if rejected > 0 {
		return fmt.Errorf("%d invalid tasks rejected", rejected)
	}
	if valid == 0 {
		return errors.New("no valid task: the input has no task line")
	}
	return nil
}

// warnSamplingWithoutModel warns that t's samples or sampling will have no
// effect when replicas of its runtime report and none has a model: every
// attempt would run the same rule program (the trajectories say so too,
// metadata.sampling_ignored). runtimes caches the live reports by runtime.
func warnSamplingWithoutModel(ctx context.Context, e Env, rdb *redis.Client, t core.TaskSpec, runtimes *map[string][]ops.HealthReport) {
	if *runtimes == nil {
		*runtimes = map[string][]ops.HealthReport{}
		all, err := rdb.HGetAll(ctx, core.KeyRuntimeHealth).Result()
		if err != nil {
			return // the enqueue will report Redis
		}
		now := time.Now()
		for _, v := range all {
			var r ops.HealthReport
			if json.Unmarshal([]byte(v), &r) == nil && r.State(now) != ops.StateDown {
				(*runtimes)[r.Runtime] = append((*runtimes)[r.Runtime], r)
			}
		}
	}
	rt := core.RuntimeFor(core.StreamFor(t.TaskType))
	live := (*runtimes)[rt]
	if len(live) == 0 || slices.ContainsFunc(live, func(r ops.HealthReport) bool { return r.Model }) {
		return
	}
	fmt.Fprintf(e.Stderr, "warning: task %q asks for %d samples or sampling settings, but no %s runtime has a model configured (LLM_BASE_URL): "+
		"its attempts will run the same rule program, and the trajectories say sampling_ignored\n", t.TaskID, max(t.Samples, 1), rt)
}
