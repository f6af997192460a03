package report

import (
	"bytes"
	"fmt"
	"path/filepath"
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
		{"one trajectory", []*core.Trajectory{one}, []string{"No failures", `class="dot total"`, "no trend to draw"}},
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
	if page := renderSample(t, []*core.Trajectory{one}); strings.Contains(page, `class="line total"`) {
		t.Error("one trajectory drawn as a line")
	}
}

// The page has pass@k (with the tasks each is over) and reward by type,
// the failed attempts with their error and a link to their file relative
// to the page, and the reward distribution of each sampled task.
func TestHTMLFailuresAndSampledTasks(t *testing.T) {
	t.Parallel()
	var trs []*core.Trajectory
	for k, r := range []float64{0, 1, 0.5, 1} {
		tr := spec{"sampled", core.TaskCode, r == 1, "", 1, t0, "llm", nil}.trajectory()
		tr.SampleIndex, tr.Samples, tr.Reward = k, 4, new(r)
		if r != 1 {
			tr.ErrorType, tr.ErrorMessage = core.ErrWrongAnswer, fmt.Sprintf("attempt %d <b>wrong</b>", k)
		}
		trs = append(trs, tr)
	}
	trs = append(trs, spec{"single", core.TaskWeb, true, "", 1, t0, "", nil}.trajectory())
	dir := writeDir(t, trs, 0)
	s, err := Compute(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, s, HTMLOptions{LinkDir: filepath.Dir(dir)}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	base := filepath.Base(dir)
	for _, want := range []string{
		"pass@1 0.750 (2 tasks)", "pass@4 1.000 (1 task)", // overall: sampled 0.5, single 1
		"<td>0.625 (4)</td>", // code's mean reward
		`<td>sampled</td><td>code</td><td>0</td><td>wrong_answer</td><td class="path">attempt 0 &lt;b&gt;wrong&lt;/b&gt;</td>`,
		`<a href="` + base + `/sampled.sample-2.json">`,
		`<td>sampled</td><td>code</td><td>4</td><td>2</td><td>0 ×1, 0.5 ×1, 1 ×2 (mean 0.625)</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<td>single</td><td>web</td><td>1</td>") {
		t.Error("a task with one attempt is listed among the sampled tasks")
	}
}
