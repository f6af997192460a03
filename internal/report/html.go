package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
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
	"rate":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"passk":  passAtKText,
	"reward": func(v *float64) string { return fmt.Sprintf("%.3f", *v) },
	"share": func(n, of int) string {
		return pct(ratio(n, of), of)
	},
}).Parse(pageTemplate))

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
	}{
		Opts:   opts,
		S:      s,
		Charts: []figure{outcomesChart(s), errorsChart(s), durationChart(s), throughputChart(s)},
		Bucket: bucketName(s.Throughput.BucketSeconds),
	}
	if !opts.GeneratedAt.IsZero() {
		data.Generated = opts.GeneratedAt.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	data.Invalid = len(s.Invalid)
	if len(s.Invalid) > maxInvalidListed {
		data.InvalidList = s.Invalid[:maxInvalidListed]
	} else {
		data.InvalidList = s.Invalid
	}
	return page.Execute(w, data)
}
