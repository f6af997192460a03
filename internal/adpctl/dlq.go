package adpctl

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/queue"
)

func cmdDLQ(ctx context.Context, e Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want list, retry or purge", errUsage)
	}
	switch args[0] {
	case "list", "retry", "purge":
	default:
		return fmt.Errorf("%w: unknown dlq command %q: want list, retry or purge", errUsage, args[0])
	}
	rdb, err := e.redis()
	if err != nil {
		return err
	}
	defer rdb.Close()
	switch args[0] {
	case "list":
		fs := newFlags(e, "dlq list", "[--json] [--count N]")
		asJSON := fs.Bool("json", false, "print JSON lines")
		count := fs.Int64("count", 100, "at most this many entries, oldest first")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		dead, err := queue.ListDead(ctx, rdb, *count)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(e.Stdout)
			for _, d := range dead {
				if err := enc.Encode(d); err != nil {
					return err
				}
			}
			return nil
		}
		w := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tTASK\tSTREAM\tDELIVERIES\tDEAD SINCE\tLAST ERROR")
		for _, d := range dead {
			id := "(unparseable)"
			if t, err := core.ParseTaskWithDefaultID([]byte(d.Task), "-"); err == nil {
				id = core.AttemptName(t.TaskID, d.Sample) // attempt k >= 1 shows as <id>.sample-<k>, its file's name
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, id, d.SourceStream, d.Deliveries,
				time.Unix(d.DeadAt, 0).UTC().Format(time.RFC3339), clip(d.LastError, 100))
		}
		return w.Flush()
	case "retry":
		fs := newFlags(e, "dlq retry", "[--all | ID...]")
		all := fs.Bool("all", false, "retry every dead-letter entry")
		ids, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if *all == (len(ids) > 0) {
			return fmt.Errorf("%w: give --all or entry IDs (see adpctl dlq list)", errUsage)
		}
		if *all {
			dead, err := queue.ListDead(ctx, rdb, -1)
			if err != nil {
				return err
			}
			for _, d := range dead {
				ids = append(ids, d.ID)
			}
		}
		var missing int
		for _, id := range ids {
			newID, found, err := queue.RetryDead(ctx, rdb, id)
			if err != nil {
				return err
			}
			if !found {
				missing++
				fmt.Fprintf(e.Stderr, "not found in %s: %s\n", core.StreamDead, id)
				continue
			}
			fmt.Fprintf(e.Stdout, "retried %s as %s\n", id, newID)
		}
		if missing > 0 {
			return fmt.Errorf("%d ids not found", missing)
		}
		return nil
	case "purge":
		n, err := queue.PurgeDead(ctx, rdb)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "purged %d dead-letter entries\n", n)
		return nil
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
