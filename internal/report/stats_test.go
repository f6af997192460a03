package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// t0 is a minute boundary, so bucket arithmetic in the tests is exact.
const t0 = 1_760_000_040.0

type spec struct {
	id       string
	typ      core.TaskType
	ok       bool
	et       core.ErrorType
	dur      float64
	created  float64
	source   string
	cacheHit *bool
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func (s spec) trajectory() *core.Trajectory {
	tr := &core.Trajectory{SchemaVersion: core.SchemaVersion, TaskID: s.id, TaskType: s.typ, Description: "task " + s.id,
		Success: s.ok, ErrorType: s.et, TotalDuration: s.dur, CreatedAt: s.created, Metadata: core.Metadata{}, Steps: []core.ExecutionStep{}}
	if s.source != "" {
		tr.Metadata["source"] = s.source
	}
	if s.cacheHit != nil {
		tr.Metadata["cache_hit"] = *s.cacheHit
	}
	return tr
}

// writeDir writes trajectories (and an invalid file) into a new directory.
func writeDir(t *testing.T, trs []*core.Trajectory, invalid int) string {
	t.Helper()
	dir := t.TempDir()
	w, err := trajectory.NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trs {
		if err := w.Write(tr); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < invalid; i++ {
		if err := os.WriteFile(filepath.Join(dir, "zz_broken_"+string(rune('a'+i))+".json"), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Temporary files of the writer are not trajectories.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-x.json-1"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func smallSet() []*core.Trajectory {
	specs := []spec{
		{"c1", core.TaskCode, true, "", 1, t0, "llm", no()},
		{"c2", core.TaskCode, true, "", 2, t0 + 10, "cache", yes()},
		{"c3", core.TaskCode, true, "", 3, t0 + 70, "cache", yes()},
		{"c4", core.TaskCode, false, core.ErrRuntime, 10, t0 + 200, "rules", nil},
		{"w1", core.TaskWeb, true, "", 5, t0 + 200, "", nil},
		{"w2", core.TaskWeb, false, core.ErrTimeout, 30, t0 + 59, "", nil},
		{"x1", "", false, "", 0, 0, "", nil},
	}
	var trs []*core.Trajectory
	for _, s := range specs {
		trs = append(trs, s.trajectory())
	}
	return trs
}

func TestComputeSmallSet(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, smallSet(), 1)
	s, err := Compute(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Files != 8 || s.Total != 7 || s.Succeeded != 4 || s.Failed != 3 || len(s.Invalid) != 1 {
		t.Errorf("counts: files %d total %d ok %d failed %d invalid %v", s.Files, s.Total, s.Succeeded, s.Failed, s.Invalid)
	}
	if want := 4.0 / 7; s.SuccessRate != want {
		t.Errorf("success rate = %v, want %v", s.SuccessRate, want)
	}
	var types []string
	for _, ts := range s.ByType {
		types = append(types, ts.TaskType)
	}
	if !reflect.DeepEqual(types, []string{"code", "web", "unknown"}) {
		t.Errorf("types = %v", types)
	}
	code := s.ByType[0]
	if code.Total != 4 || code.Succeeded != 3 || code.SuccessRate != 0.75 ||
		code.Duration != (Percentiles{Count: 4, Min: 1, Mean: 4, P50: 2, P95: 10, P99: 10, Max: 10}) {
		t.Errorf("code = %+v", code)
	}
	if want := []Count{{"runtime_error", 1}}; !reflect.DeepEqual(code.FailuresByErrorType, want) {
		t.Errorf("code failures = %v", code.FailuresByErrorType)
	}
	if want := []Count{{"runtime_error", 1}, {"timeout", 1}, {"unclassified", 1}}; !reflect.DeepEqual(s.FailuresByErrorType, want) {
		t.Errorf("failures = %v, want %v", s.FailuresByErrorType, want)
	}
	if want := []Count{{"unrecorded", 3}, {"cache", 2}, {"llm", 1}, {"rules", 1}}; !reflect.DeepEqual(s.Sources, want) {
		t.Errorf("sources = %v, want %v", s.Sources, want)
	}
	if s.Cache != (Cache{Known: 3, Hits: 2, HitRate: 2.0 / 3}) {
		t.Errorf("cache = %+v", s.Cache)
	}
	if d := s.Duration; d.P50 != 3 || d.P95 != 30 || d.P99 != 30 || d.Min != 0 || d.Max != 30 || d.Count != 7 {
		t.Errorf("duration = %+v", d)
	}
	h := s.DurationHistogram
	if h.BinSeconds != 2 || len(h.Bins) != 16 || h.Overflow != 0 {
		t.Errorf("histogram: %v s bins, %d bins, overflow %d", h.BinSeconds, len(h.Bins), h.Overflow)
	} else {
		got := map[float64]int{}
		for _, b := range h.Bins {
			if b.Count > 0 {
				got[b.Lo] = b.Count
			}
		}
		if want := map[float64]int{0: 2, 2: 2, 4: 1, 10: 1, 30: 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("histogram counts = %v, want %v", got, want)
		}
	}
	th := s.Throughput
	start := time.Unix(int64(t0), 0).UTC()
	want := []Bucket{
		{start, 3, 2, 1},
		{start.Add(time.Minute), 1, 1, 0},
		{start.Add(2 * time.Minute), 0, 0, 0},
		{start.Add(3 * time.Minute), 2, 1, 1},
	}
	if th.BucketSeconds != 60 || th.Undated != 1 || !reflect.DeepEqual(th.Buckets, want) {
		t.Errorf("throughput = %+v", th)
	}
	if th.PeakPerMinute == nil || *th.PeakPerMinute != 3 || th.MeanPerMinute == nil || *th.MeanPerMinute != 1.5 {
		t.Errorf("throughput rates: peak %v mean %v", th.PeakPerMinute, th.MeanPerMinute)
	}
}

// One bucket gives no rate (n/a) and is drawn as dots, not a line.
func TestThroughputOneBucket(t *testing.T) {
	var acc Accumulator
	acc.Add(&core.Trajectory{TaskID: "a", TaskType: core.TaskCode, Success: true, CreatedAt: 1_700_000_000, Metadata: core.Metadata{}})
	s := acc.Stats()
	if th := s.Throughput; len(th.Buckets) != 1 || th.MeanPerMinute != nil || th.PeakPerMinute != nil {
		t.Errorf("throughput = %+v, want one bucket and no rates", th)
	}
	f := throughputChart(s)
	if len(f.Paths) != 0 || len(f.Circles) != 2 || !strings.Contains(f.Note, "no trend") {
		t.Errorf("chart of one bucket: %d paths, %d dots, note %q", len(f.Paths), len(f.Circles), f.Note)
	}
	var text strings.Builder
	if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "mean n/a/min, peak n/a/min") {
		t.Errorf("text: %v\n%s", err, text.String())
	}
}

func TestComputeEmptyAndMissing(t *testing.T) {
	t.Parallel()
	s, err := Compute(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("empty stats do not encode: %v", err)
	}
	for _, key := range []string{`"by_type":[]`, `"buckets":[]`, `"bins":[]`, `"success_rate":0`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("empty stats JSON lacks %s: %s", key, b)
		}
	}
	var text, html bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&html, s, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "No trajectories") {
		t.Error("empty report does not say there is no data")
	}
	if _, err := Compute(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing directory: no error")
	}
}

func TestHistogramLongTail(t *testing.T) {
	t.Parallel()
	var v []float64
	for i := 0; i < 300; i++ {
		v = append(v, 1+float64(i%10)/10)
	}
	v = append(v, 900, 1000)
	h := histogram(v)
	if h.Overflow != 2 || h.OverflowFrom == 0 || h.Bins[len(h.Bins)-1].Hi > 3 {
		t.Errorf("long tail: overflow %d from %v, last bin %+v", h.Overflow, h.OverflowFrom, h.Bins[len(h.Bins)-1])
	}
	total := h.Overflow
	for _, b := range h.Bins {
		total += b.Count
	}
	if total != len(v) {
		t.Errorf("histogram holds %d values, want %d", total, len(v))
	}
}

func TestHistogramBinsExactEdges(t *testing.T) {
	t.Parallel()
	var v []float64
	for i := 0; i <= 20; i++ {
		v = append(v, 1+float64(i%10)/10) // 1.0 .. 1.9, twice, and 1.0
	}
	h := histogram(v)
	for _, b := range h.Bins {
		if b.Lo >= 1-1e-9 && b.Lo < 1.95 && b.Count == 0 {
			t.Errorf("bin %+v is empty: float error put its values in the bin before", b)
		}
	}
}

func TestThroughputWidensBuckets(t *testing.T) {
	t.Parallel()
	var times []timed
	for i := 0; i < 100; i++ {
		times = append(times, timed{at: t0 + float64(i)*3*86400/100, ok: true})
	}
	th := throughput(times, 0)
	if th.BucketSeconds != 300 || len(th.Buckets) > maxThroughputBuckets {
		t.Errorf("3 days: %d s buckets, %d of them", th.BucketSeconds, len(th.Buckets))
	}
	n := 0
	for _, b := range th.Buckets {
		n += b.Total
	}
	if n != 100 {
		t.Errorf("buckets hold %d, want 100", n)
	}
}

func TestNiceCeil(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]float64{0.0137: 0.02, 1: 1, 1.5: 2, 3: 5, 7: 10, 20: 20, 0.25: 0.5} {
		if got := niceCeil(in); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestWriteText(t *testing.T) {
	t.Parallel()
	trs := smallSet()
	trs[3].ErrorType = "evil\x1b[31m\tcolumn"
	dir := writeDir(t, trs, 1)
	s, err := Compute(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Succeeded: 4 of 7 (57.1%)",
		"Cache hit rate: 66.7% (2 of 3",
		"code", "75.0%", "evil?[31m column  1", "unclassified", "unrecorded",
		"mean 1.5/min, peak 3.0/min",
		"1 trajectories have no created_at",
		"Invalid files (skipped)", "zz_broken_a.json",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("a control character from a file reached the terminal")
	}
}

// sampleSet is a realistic mix for the report: three types, several error
// types, durations with a tail, spread over a quarter of an hour.
func sampleSet(n int) []*core.Trajectory {
	r := rand.New(rand.NewPCG(1, 2))
	errs := []core.ErrorType{core.ErrRuntime, core.ErrRuntime, core.ErrRuntime, core.ErrTimeout, core.ErrCompile, core.ErrWrongAnswer, core.ErrBrowser, core.ErrNetwork}
	sources := []string{"llm", "cache", "rules", "scripted"}
	var trs []*core.Trajectory
	for i := 0; i < n; i++ {
		s := spec{id: fmt.Sprintf("t%04d", i), created: t0 + 900*math.Pow(float64(i)/float64(n), 1.6) + r.Float64()}
		switch {
		case i%3 == 2:
			s.typ, s.dur = core.TaskWeb, 2+r.ExpFloat64()*3
		case i%7 == 6:
			s.typ, s.dur = core.TaskReasoning, 0.5+r.Float64()
		default:
			s.typ, s.dur = core.TaskCode, 0.2+r.ExpFloat64()
			s.source = sources[r.IntN(len(sources))]
			h := s.source == "cache"
			s.cacheHit = &h
		}
		s.ok = r.Float64() < 0.85
		if !s.ok {
			s.et = errs[r.IntN(len(errs))]
			if s.et == core.ErrTimeout {
				s.dur = 30
			}
		}
		trs = append(trs, s.trajectory())
	}
	return trs
}

// The failed attempts listed are the first maxListed by task id and sample,
// however many there are and in whatever order they are read; messages are
// cut.
func TestStatsListsTheFirstFailures(t *testing.T) {
	var acc Accumulator
	n := 5*maxListed + 3
	long := strings.Repeat("x", 2*maxMessageChars)
	for i := n - 1; i >= 0; i-- {
		acc.AddFile(fmt.Sprintf("t%05d.json", i), &core.Trajectory{TaskID: fmt.Sprintf("t%05d", i), TaskType: core.TaskCode, ErrorType: core.ErrRuntime, ErrorMessage: long, Metadata: core.Metadata{}})
	}
	s := acc.Stats()
	if s.Failed != n || s.FailuresListed != maxListed || len(s.Failures) != maxListed {
		t.Fatalf("failed %d, listed %d (%d)", s.Failed, s.FailuresListed, len(s.Failures))
	}
	for i, f := range s.Failures {
		if want := fmt.Sprintf("t%05d", i); f.TaskID != want || f.Path != want+".json" || len([]rune(f.Message)) != maxMessageChars+1 {
			t.Fatalf("failure %d = %s %s (%d chars), want %s", i, f.TaskID, f.Path, len([]rune(f.Message)), want)
		}
	}
}
