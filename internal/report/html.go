package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var pageTemplate string

// maxInvalidListed bounds the invalid files the page lists by name.
const maxInvalidListed = 50

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f":      func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"half":   func(v int) int { return v / 2 },
	"pct":    pct,
	"secs":   secs,
	"rate":   rateText,
	"passk":  passAtKText,
	"reward": func(v *float64) string { return fmt.Sprintf("%.3f", *v) },
	"share": func(n, of int) string {
		return pct(ratio(n, of), of)
	},
	"dist":  rewardDistribution,
	"short": oneLine, // messages are cut to maxMessageChars when read
}).Parse(pageTemplate))

// truncate cuts s to n characters, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// rewardDistribution is "0 ×3, 0.5 ×1, 1 ×4 (mean 0.562)": each reward
// with how many attempts got it, in increasing order.
func rewardDistribution(rewards []float64) string {
	if len(rewards) == 0 {
		return "no rewards (no verifier)"
	}
	var parts []string
	sum := 0.0
	for i := 0; i < len(rewards); {
		j := i
		for j < len(rewards) && rewards[j] == rewards[i] {
			sum += rewards[j]
			j++
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", strconv.FormatFloat(rewards[i], 'g', 3, 64), j-i))
		i = j
	}
	return fmt.Sprintf("%s (mean %.3f)", strings.Join(parts, ", "), sum/float64(len(rewards)))
}

// fileLink is the URL of a trajectory file relative to dir (the report's
// directory; the file's path as it is when dir is empty or no relative
// path exists).
func fileLink(dir, path string) string {
	if dir != "" {
		if abs, err := filepath.Abs(path); err == nil {
			if rel, err := filepath.Rel(dir, abs); err == nil {
				path = rel
			}
		}
	}
	return (&url.URL{Path: filepath.ToSlash(path)}).String()
}

// HTMLOptions describe the page around the figures.
type HTMLOptions struct {
	// Title of the page. Default "Agent Data Platform report".
	Title string
	// Source says where the trajectories came from (the directory), shown
	// under the title. Default: not shown.
	Source string
	// GeneratedAt is shown under the title. Default: not shown (so that
	// the same data renders the same bytes).
	GeneratedAt time.Time
	// LinkDir is the absolute directory the page is written to: links to
	// trajectory files are relative to it. Empty: the files' paths as read.
	LinkDir string
}

// WriteHTML renders s as one self-contained HTML page: inline CSS, inline
// SVG charts drawn here (outcomes by task type, failures by error type,
// duration histogram, throughput over time) and the summary tables. It
// loads nothing: no script, no font, no stylesheet, no image, and its
// Content-Security-Policy forbids any fetch. Every text that comes from
// the files (task types, error types, sources, paths) is escaped by
// html/template.
func WriteHTML(w io.Writer, s *Stats, opts HTMLOptions) error {
	if opts.Title == "" {
		opts.Title = "Agent Data Platform report"
	}
	data := struct {
		Opts        HTMLOptions
		Generated   string
		S           *Stats
		Charts      []figure
		Invalid     int
		InvalidList any
		Bucket      string
		Links       map[string]string // trajectory path → href
	}{
		Opts:   opts,
		S:      s,
		Charts: []figure{outcomesChart(s), errorsChart(s), durationChart(s), throughputChart(s)},
		Bucket: bucketName(s.Throughput.BucketSeconds),
	}
	if !opts.GeneratedAt.IsZero() {
		data.Generated = opts.GeneratedAt.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	data.Links = map[string]string{}
	for _, f := range s.Failures {
		if f.Path != "" {
			data.Links[f.Path] = fileLink(opts.LinkDir, f.Path)
		}
	}
	data.Invalid = len(s.Invalid)
	if len(s.Invalid) > maxInvalidListed {
		data.InvalidList = s.Invalid[:maxInvalidListed]
	} else {
		data.InvalidList = s.Invalid
	}
	return page.Execute(w, data)
}
