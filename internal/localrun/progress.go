package localrun

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a bar on a terminal and plain lines otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	total    int
	start    time.Time
	last     time.Time
	done     int
	failed   int
}

// plainEvery is how often progress lines are printed when not on a terminal.
const plainEvery = 5 * time.Second

func newProgress(w io.Writer, terminal bool, total int, start time.Time) *progress {
	return &progress{w: w, terminal: terminal, total: total, start: start}
}

func (p *progress) update(done, failed int) {
	changed := done != p.done || failed != p.failed
	p.done, p.failed = done, failed
	now := time.Now()
	if p.terminal {
		p.draw()
		return
	}
	if changed && now.Sub(p.last) >= plainEvery {
		p.last = now
		fmt.Fprintln(p.w, p.line())
	}
}

func (p *progress) line() string {
	el := time.Since(p.start)
	rate, eta := "-", "-"
	if el >= time.Second { // a rate over a few milliseconds means nothing
		r := float64(p.done) / el.Seconds()
		rate = fmt.Sprintf("%.1f", r)
		if r > 0 && p.done < p.total {
			eta = (time.Duration(float64(p.total-p.done)/r) * time.Second).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("%d/%d done  %s tasks/s  %d failed  ETA %s", p.done, p.total, rate, p.failed, eta)
}

func (p *progress) draw() {
	const width = 30
	fill := 0
	if p.total > 0 {
		fill = p.done * width / p.total
	}
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	fmt.Fprintf(p.w, "\r[%s] %s\033[K", bar, p.line())

}

func (p *progress) finish() {
	if p.terminal {
		p.draw()
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintln(p.w, p.line())
}
