package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A figure is one SVG chart as drawing primitives, laid out in Go and
// rendered by html/template (which escapes every label). Coordinates are in
// the SVG's user units.
type figure struct {
	ID      string // "outcomes", "errors", "durations", "throughput"
	Title   string
	Note    string // a line under the title: units, bucket width
	Width   int
	Height  int
	Lines   []svgLine
	Rects   []svgRect
	Paths   []svgPath
	Circles []svgCircle
	Texts   []svgText
	Empty   string // shown instead of data when there is none
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Class          string
}

type svgRect struct {
	X, Y, W, H float64
	Class, Tip string
}

type svgPath struct {
	D     string
	Class string
}

type svgCircle struct {
	CX, CY, R  float64
	Class, Tip string
}

type svgText struct {
	X, Y   float64
	Anchor string // start, middle, end
	Class  string
	S      string
}

// Chart geometry.
const (
	chartWidth   = 600
	chartHeight  = 300
	marginLeft   = 56
	marginRight  = 16
	marginTop    = 28
	marginBottom = 44
	maxLabelRune = 18 // longer category labels are cut (the tooltip has them whole)
)

// plot is the drawing area of a chart and its y scale.
type plot struct {
	f           *figure
	left, right float64
	top, bottom float64
	yMax        float64
	yTicks      []float64
	yFormat     func(float64) string
}

func newPlot(f *figure, left float64) *plot {
	return &plot{f: f, left: left, right: float64(f.Width - marginRight),
		top: marginTop, bottom: float64(f.Height - marginBottom), yFormat: count}
}

func (p *plot) width() float64  { return p.right - p.left }
func (p *plot) height() float64 { return p.bottom - p.top }

// y maps a value to a vertical coordinate.
func (p *plot) y(v float64) float64 {
	if p.yMax <= 0 {
		return p.bottom
	}
	return p.bottom - v/p.yMax*p.height()
}

// scaleY sets a round y scale covering max and draws its grid and labels.
func (p *plot) scaleY(max float64) {
	p.yTicks = niceTicks(max, 5)
	p.yMax = p.yTicks[len(p.yTicks)-1]
	for _, t := range p.yTicks {
		y := p.y(t)
		p.f.Lines = append(p.f.Lines, svgLine{p.left, y, p.right, y, "grid"})
		p.f.Texts = append(p.f.Texts, svgText{p.left - 6, y + 4, "end", "tick", p.yFormat(t)})
	}
	p.axes()
}

func (p *plot) axes() {
	p.f.Lines = append(p.f.Lines,
		svgLine{p.left, p.bottom, p.right, p.bottom, "axis"},
		svgLine{p.left, p.top, p.left, p.bottom, "axis"})
}

// niceTicks returns 0, step, 2*step, ... up to the first tick >= max, with
// a round step giving about n intervals; counts never get a step below 1.
func niceTicks(max float64, n int) []float64 {
	if max <= 0 {
		return []float64{0, 1}
	}
	step := niceCeil(max / float64(n))
	if step < 1 {
		step = 1
	}
	ticks := []float64{0}
	for v := step; ; v += step {
		ticks = append(ticks, v)
		if v >= max*(1-1e-9) {
			return ticks
		}
	}
}

func count(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// cut shortens a label for an axis; the full text goes in the tooltip.
func cut(s string) string {
	if utf8.RuneCountInString(s) <= maxLabelRune {
		return s
	}
	r := []rune(s)
	return string(r[:maxLabelRune-1]) + "…"
}

// outcomesChart: per task type, a bar of successes with the failures
// stacked on it.
func outcomesChart(s *Stats) figure {
	f := figure{ID: "outcomes", Title: "Outcomes by task type", Note: "trajectories; green succeeded, red failed",
		Width: chartWidth, Height: chartHeight}
	if len(s.ByType) == 0 {
		f.Empty = "No trajectories"
		return f
	}
	p := newPlot(&f, marginLeft)
	maxTotal := 0
	for _, t := range s.ByType {
		maxTotal = max(maxTotal, t.Total)
	}
	p.scaleY(float64(maxTotal))
	slot := p.width() / float64(len(s.ByType))
	barW := math.Min(72, slot*0.6)
	for i, t := range s.ByType {
		x := p.left + slot*float64(i) + (slot-barW)/2
		yOK := p.y(float64(t.Succeeded))
		if t.Succeeded > 0 {
			f.Rects = append(f.Rects, svgRect{x, yOK, barW, p.bottom - yOK, "bar ok",
				fmt.Sprintf("%s: %d succeeded of %d", t.TaskType, t.Succeeded, t.Total)})
		}
		yTop := p.y(float64(t.Total))
		if t.Failed > 0 {
			f.Rects = append(f.Rects, svgRect{x, yTop, barW, yOK - yTop, "bar fail",
				fmt.Sprintf("%s: %d failed of %d", t.TaskType, t.Failed, t.Total)})
		}
		f.Texts = append(f.Texts,
			svgText{x + barW/2, yTop - 6, "middle", "value", fmt.Sprintf("%d/%d (%s)", t.Succeeded, t.Total, pct(t.SuccessRate, t.Total))},
			svgText{x + barW/2, p.bottom + 18, "middle", "label", cut(t.TaskType)})
	}
	legend(&f, []legendItem{{"ok", "succeeded"}, {"fail", "failed"}})
	return f
}

type legendItem struct{ class, label string }

// legend draws swatches in the top right corner.
func legend(f *figure, items []legendItem) {
	x := float64(f.Width - marginRight)
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		w := 14 + 7*float64(utf8.RuneCountInString(it.label))
		x -= w + 12
		f.Rects = append(f.Rects, svgRect{x, 8, 10, 10, "swatch " + it.class, ""})
		f.Texts = append(f.Texts, svgText{x + 14, 17, "start", "legend", it.label})
	}
}

// errorsChart: failures by error_type, horizontal bars, most frequent on
// top.
func errorsChart(s *Stats) figure {
	const rowH, left = 26.0, 150.0
	rows := len(s.FailuresByErrorType)
	f := figure{ID: "errors", Title: "Failures by error type", Note: "failed trajectories",
		Width: chartWidth, Height: max(140, int(marginTop+rowH*float64(rows)+marginBottom))}
	if rows == 0 {
		f.Empty = "No failures"
		return f
	}
	p := newPlot(&f, left)
	maxN := s.FailuresByErrorType[0].Count
	ticks := niceTicks(float64(maxN), 5)
	xMax := ticks[len(ticks)-1]
	xOf := func(v float64) float64 { return p.left + v/xMax*p.width() }
	for _, t := range ticks {
		x := xOf(t)
		f.Lines = append(f.Lines, svgLine{x, p.top, x, p.bottom, "grid"})
		f.Texts = append(f.Texts, svgText{x, p.bottom + 16, "middle", "tick", count(t)})
	}
	p.axes()
	for i, c := range s.FailuresByErrorType {
		y := p.top + rowH*float64(i) + 4
		w := xOf(float64(c.Count)) - p.left
		f.Rects = append(f.Rects, svgRect{p.left, y, w, rowH - 8, "bar err",
			fmt.Sprintf("%s: %d failures (%s)", c.Name, c.Count, pct(ratio(c.Count, s.Failed), s.Failed))})
		f.Texts = append(f.Texts,
			svgText{p.left - 8, y + rowH/2, "end", "label", cut(c.Name)},
			svgText{p.left + w + 6, y + rowH/2, "start", "value", strconv.Itoa(c.Count)})
	}
	return f
}

// durationChart: the histogram of total_duration; the overflow bar (beyond
// the 99th percentile) is drawn apart.
func durationChart(s *Stats) figure {
	h := s.DurationHistogram
	f := figure{ID: "durations", Title: "Task duration", Note: "trajectories by total_duration, " + roundSecs(h.BinSeconds) + " bins",
		Width: chartWidth, Height: chartHeight}
	if len(h.Bins) == 0 {
		f.Empty = "No trajectories"
		return f
	}
	p := newPlot(&f, marginLeft)
	n := len(h.Bins)
	if h.Overflow > 0 {
		n++
	}
	maxN := h.Overflow
	for _, b := range h.Bins {
		maxN = max(maxN, b.Count)
	}
	p.scaleY(float64(maxN))
	binW := p.width() / float64(n)
	every := int(math.Ceil(float64(n) / 8)) // at most ~8 edge labels
	for i, b := range h.Bins {
		x := p.left + binW*float64(i)
		if b.Count > 0 {
			y := p.y(float64(b.Count))
			f.Rects = append(f.Rects, svgRect{x + 0.5, y, binW - 1, p.bottom - y, "bar dur",
				fmt.Sprintf("%s – %s: %d", roundSecs(b.Lo), roundSecs(b.Hi), b.Count)})
		}
		if i%every == 0 {
			f.Lines = append(f.Lines, svgLine{x, p.bottom, x, p.bottom + 4, "axis"})
			f.Texts = append(f.Texts, svgText{x, p.bottom + 16, "middle", "tick", roundSecs(b.Lo)})
		}
	}
	if h.Overflow > 0 {
		x := p.left + binW*float64(n-1)
		y := p.y(float64(h.Overflow))
		f.Rects = append(f.Rects, svgRect{x + 0.5, y, binW - 1, p.bottom - y, "bar overflow",
			fmt.Sprintf("≥ %s: %d", roundSecs(h.OverflowFrom), h.Overflow)})
		f.Texts = append(f.Texts, svgText{x + binW/2, p.bottom + 30, "middle", "tick", "≥" + roundSecs(h.OverflowFrom)})
	}
	f.Texts = append(f.Texts, svgText{p.right, p.bottom + 36, "end", "label",
		fmt.Sprintf("p50 %s · p95 %s · p99 %s", secs(s.Duration.P50), secs(s.Duration.P95), secs(s.Duration.P99))})
	// Percentile markers, when they fall inside the binned range.
	for _, m := range []struct {
		name string
		v    float64
	}{{"p50", s.Duration.P50}, {"p95", s.Duration.P95}} {
		if m.v >= h.Bins[len(h.Bins)-1].Hi {
			continue
		}
		x := p.left + m.v/h.BinSeconds*binW
		f.Lines = append(f.Lines, svgLine{x, p.top, x, p.bottom, "marker"})
		f.Texts = append(f.Texts, svgText{x + 3, p.top + 10, "start", "marker-label", m.name})
	}
	return f
}

// throughputChart: trajectories per bucket of created_at, all and failed.
func throughputChart(s *Stats) figure {
	th := s.Throughput
	f := figure{ID: "throughput", Title: "Throughput over time",
		Note:  "trajectories started per " + bucketName(th.BucketSeconds) + " (created_at, UTC)",
		Width: chartWidth, Height: chartHeight}
	if len(th.Buckets) == 0 {
		f.Empty = "No dated trajectories"
		return f
	}
	if len(th.Buckets) == 1 {
		f.Note = "all started within one " + bucketName(th.BucketSeconds) + " (created_at, UTC): no trend to draw"
	}
	p := newPlot(&f, marginLeft)
	maxN := 0
	for _, b := range th.Buckets {
		maxN = max(maxN, b.Total)
	}
	p.scaleY(float64(maxN))
	n := len(th.Buckets)
	xOf := func(i int) float64 {
		if n == 1 {
			return p.left + p.width()/2
		}
		return p.left + p.width()*float64(i)/float64(n-1)
	}
	series := []struct {
		class string
		v     func(Bucket) int
	}{{"total", func(b Bucket) int { return b.Total }}, {"fail", func(b Bucket) int { return b.Failed }}}
	for _, sr := range series {
		var d strings.Builder
		for i, b := range th.Buckets {
			if n > 1 {
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&d, "%s%.1f %.1f", cmd, xOf(i), p.y(float64(sr.v(b))))
			}
			if n <= 60 {
				f.Circles = append(f.Circles, svgCircle{xOf(i), p.y(float64(sr.v(b))), 3, "dot " + sr.class,
					fmt.Sprintf("%s: %d %s", b.Start.Format("2006-01-02 15:04"), sr.v(b), map[string]string{"total": "started", "fail": "failed"}[sr.class])})
			}
		}
		if n > 1 { // one point is a dot: there is no trend to draw
			f.Paths = append(f.Paths, svgPath{d.String(), "line " + sr.class})
		}
	}
	layout := "15:04"
	span := th.Buckets[n-1].Start.Sub(th.Buckets[0].Start)
	switch {
	case th.BucketSeconds >= 24*3600:
		layout = "2006-01-02"
	case span >= 24*time.Hour || th.Buckets[0].Start.YearDay() != th.Buckets[n-1].Start.YearDay():
		layout = "01-02 15:04"
	}
	ticks := min(n, 6)
	for k := 0; k < ticks; k++ {
		i := 0
		if ticks > 1 {
			i = k * (n - 1) / (ticks - 1)
		}
		x := xOf(i)
		f.Lines = append(f.Lines, svgLine{x, p.bottom, x, p.bottom + 4, "axis"})
		f.Texts = append(f.Texts, svgText{x, p.bottom + 16, "middle", "tick", th.Buckets[i].Start.Format(layout)})
	}
	legend(&f, []legendItem{{"total", "started"}, {"fail", "failed"}})
	return f
}

func bucketName(seconds int64) string {
	switch seconds {
	case 60:
		return "minute"
	case 3600:
		return "hour"
	case 24 * 3600:
		return "day"
	case 7 * 24 * 3600:
		return "week"
	}
	d := time.Duration(seconds) * time.Second
	if d%time.Hour == 0 {
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return fmt.Sprintf("%d minutes", d/time.Minute)
}

// roundSecs formats a round number of seconds (a bin edge) without
// trailing zeros: "500ms", "2s", "2.5s".
func roundSecs(s float64) string {
	switch {
	case s == 0:
		return "0s"
	case s < 1:
		return strconv.FormatFloat(math.Round(s*1e4)/10, 'f', -1, 64) + "ms"
	default:
		return strconv.FormatFloat(math.Round(s*1e3)/1e3, 'f', -1, 64) + "s"
	}
}
