package report

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

func renderSample(t *testing.T, trs []*core.Trajectory) string {
	t.Helper()
	return renderDir(t, writeDir(t, trs, 2))
}

func renderDir(t *testing.T, dir string) string {
	t.Helper()
	s, err := Compute(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	opts := HTMLOptions{Source: "output/trajectories", GeneratedAt: time.Date(2025, 10, 9, 8, 7, 6, 0, time.UTC)}
	if err := WriteHTML(&b, s, opts); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHTMLIsSelfContained(t *testing.T) {
	t.Parallel()
	page := renderSample(t, sampleSet(120))
	if n := strings.Count(page, "<svg"); n != 4 {
		t.Errorf("%d charts, want 4", n)
	}
	for _, id := range []string{"chart-outcomes", "chart-errors", "chart-durations", "chart-throughput", "by-type", "error-types", "sources", "invalid"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("no element #%s", id)
		}
	}
	// Nothing that could load anything.
	for _, re := range []string{`(?i)<script`, `(?i)\ssrc=`, `(?i)url\(`, `(?i)@import`, `(?i)https?://`, `(?i)<link[^>]+stylesheet`} {
		if loc := regexp.MustCompile(re).FindStringIndex(page); loc != nil {
			t.Errorf("page has %q: ...%s...", re, page[max(0, loc[0]-40):min(len(page), loc[1]+40)])
		}
	}
	if !strings.Contains(page, "Content-Security-Policy") || !strings.Contains(page, "2025-10-09 08:07:06 UTC") {
		t.Error("CSP or generation time missing")
	}
}

func TestHTMLEscapesFileText(t *testing.T) {
	t.Parallel()
	trs := sampleSet(20)
	trs[0].TaskType = `<script>alert("type")</script>`
	trs[1].Success, trs[1].ErrorType = false, `"><img src=x onerror=alert(1)>`
	trs[2].Metadata["source"] = `</title><script>alert(2)</script>`
	page := renderSample(t, trs)
	for _, raw := range []string{`<script>alert`, `<img src=x`, `</title><script>`} {
		if strings.Contains(page, raw) {
			t.Errorf("page contains unescaped %q", raw)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;type&#34;)") {
		t.Error("the escaped task type is not shown")
	}
}

func TestHTMLIsDeterministic(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, sampleSet(50), 2)
	if renderDir(t, dir) != renderDir(t, dir) {
		t.Error("the same data renders differently")
	}
}

func TestHTMLEdgeCases(t *testing.T) {
	t.Parallel()
	one := spec{"only", core.TaskCode, true, "", 0.3, t0, "llm", nil}.trajectory()
	undated := spec{"undated", core.TaskWeb, true, "", 1, 0, "", nil}.trajectory()
	var tail []*core.Trajectory
	for i := 0; i < 150; i++ {
		tail = append(tail, spec{fmt.Sprintf("t%03d", i), core.TaskCode, true, "", 1 + float64(i%10)/10, t0 + float64(i), "", nil}.trajectory())
	}
	tail = append(tail, spec{"stuck", core.TaskCode, false, core.ErrTimeout, 3600, t0, "", nil}.trajectory())
	cases := []struct {
		name string
		trs  []*core.Trajectory
		want []string
	}{
		{"one trajectory", []*core.Trajectory{one}, []string{"No failures", `class="line total"`}},
		{"undated only", []*core.Trajectory{undated}, []string{"No dated trajectories", "No failures"}},
		{"long tail", tail, []string{`class="bar overflow"`, "≥"}},
	}
	for _, tc := range cases {
		page := renderSample(t, tc.trs)
		for _, w := range tc.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s: page lacks %q", tc.name, w)
			}
		}
		if strings.Contains(page, "NaN") || strings.Contains(page, "Inf") {
			t.Errorf("%s: page has NaN or Inf coordinates", tc.name)
		}
	}
}
