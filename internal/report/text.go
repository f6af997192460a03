package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// maxTextBuckets bounds the throughput rows of WriteText; the JSON form
// has them all.
const maxTextBuckets = 30

// WriteText renders s as aligned text tables for a terminal.
func (s *Stats) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	p("Trajectories: %d files, %d read, %d invalid\n", s.Files, s.Total, len(s.Invalid))
	p("Succeeded: %d of %d (%s)\n", s.Succeeded, s.Total, pct(s.SuccessRate, s.Total))
	p("Tasks: %d; %s; %s\n", s.Tasks, passAtKText(s.PassAtK, s.PassAtKTasks), rewardText(s.MeanReward, s.RewardCount))
	if s.Cache.Known > 0 {
		p("Cache hit rate: %s (%d of %d that record cache_hit)\n", pct(s.Cache.HitRate, s.Cache.Known), s.Cache.Hits, s.Cache.Known)
	} else {
		p("Cache hit rate: n/a (no trajectory records cache_hit)\n")
	}
	p("\n")

	p("TYPE\tTOTAL\tSUCCEEDED\tFAILED\tSUCCESS\tP50\tP95\tP99\tMAX\n")
	for _, t := range s.ByType {
		p("%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", oneLine(t.TaskType), t.Total, t.Succeeded, t.Failed, pct(t.SuccessRate, t.Total),
			secs(t.Duration.P50), secs(t.Duration.P95), secs(t.Duration.P99), secs(t.Duration.Max))
	}
	if len(s.ByType) > 1 {
		p("all\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Total, s.Succeeded, s.Failed, pct(s.SuccessRate, s.Total),
			secs(s.Duration.P50), secs(s.Duration.P95), secs(s.Duration.P99), secs(s.Duration.Max))
	}
	p("\n")

	if len(s.FailuresByErrorType) > 0 {
		p("ERROR TYPE\tFAILURES\tSHARE\n")
		for _, c := range s.FailuresByErrorType {
			p("%s\t%d\t%s\n", oneLine(c.Name), c.Count, pct(ratio(c.Count, s.Failed), s.Failed))
		}
		p("\n")
	}

	if len(s.Sources) > 0 {
		p("SOURCE\tTRAJECTORIES\n")
		for _, c := range s.Sources {
			p("%s\t%d\n", oneLine(c.Name), c.Count)
		}
		p("\n")
	}

	th := s.Throughput
	if len(th.Buckets) > 0 {
		p("Throughput (tasks started per %s, by created_at, UTC): mean %s/min, peak %s/min\n",
			bucketName(th.BucketSeconds), rateText(th.MeanPerMinute), rateText(th.PeakPerMinute))
		p("START\tTOTAL\tSUCCEEDED\tFAILED\n")
		buckets := th.Buckets
		if len(buckets) > maxTextBuckets {
			p("(%d earlier buckets left out; --json has them all)\n", len(buckets)-maxTextBuckets)
			buckets = buckets[len(buckets)-maxTextBuckets:]
		}
		for _, b := range buckets {
			p("%s\t%d\t%d\t%d\n", b.Start.Format("2006-01-02 15:04"), b.Total, b.Succeeded, b.Failed)
		}
	}
	if th.Undated > 0 {
		p("%d trajectories have no created_at\n", th.Undated)
	}

	if len(s.Invalid) > 0 {
		p("\nInvalid files (skipped):\n")
		for _, f := range s.Invalid {
			p("  %s: %s\n", oneLine(f.Path), oneLine(f.Err))
		}
	}
	return tw.Flush()
}

// pct formats a rate as a percentage, or "-" when there is nothing to rate.
func pct(rate float64, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*rate)
}

// secs formats seconds with a precision that suits their size.
func secs(s float64) string {
	switch {
	case s == 0:
		return "0s"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 100:
		return fmt.Sprintf("%.2fs", s)
	default:
		return fmt.Sprintf("%.0fs", s)
	}
}

// oneLine keeps a table row on one line and tabwriter's columns intact,
// and keeps control characters from file content (an ANSI escape in an
// error_type) off the terminal.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return '?'
		}
		return r
	}, s)
}

// passAtKText is "pass@1 0.700 (20 tasks), pass@5 0.950 (3 tasks)" in
// increasing k: each pass@k with the number of tasks it is the mean over.
func passAtKText(m map[string]float64, over map[string]int) string {
	if len(m) == 0 {
		return "pass@k: n/a"
	}
	ks := make([]int, 0, len(m))
	for k := range m {
		if n, err := strconv.Atoi(k); err == nil {
			ks = append(ks, n)
		}
	}
	sort.Ints(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		key := strconv.Itoa(k)
		parts[i] = fmt.Sprintf("pass@%d %.3f (%s)", k, m[key], plural(over[key], "task"))
	}
	return strings.Join(parts, ", ")
}

// rateText is a rate to one decimal, or n/a when there is none.
func rateText(r *float64) string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", *r)
}

// plural is "1 task", "3 tasks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func rewardText(mean *float64, n int) string {
	if mean == nil {
		return "mean reward: n/a (no trajectory has a verifier)"
	}
	return fmt.Sprintf("mean reward %.3f (of %d)", *mean, n)
}
