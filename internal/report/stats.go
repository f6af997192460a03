// Package report computes figures from trajectory files (adpctl stats) and
// renders them as text or as a self-contained HTML page with inline SVG
// charts (adpctl report).
package report

import (
	"math"
	"sort"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/export"
)

// Labels for values a trajectory does not state.
const (
	labelUnknownType  = "unknown"      // empty task_type
	labelUnclassified = "unclassified" // failed without an error_type
	labelNoSource     = "unrecorded"   // no metadata.source
)

// Limits of the derived series.
const (
	// maxThroughputBuckets bounds the throughput series: one-minute buckets
	// up to a day of data, wider buckets beyond (see bucketWidths).
	maxThroughputBuckets = 1440
	// histogramBins is the target number of duration histogram bins.
	histogramBins = 20
)

// bucketWidths are the throughput bucket widths tried in order, in seconds.
var bucketWidths = []int64{60, 300, 600, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 7 * 24 * 3600}

// Stats are the figures of a set of trajectories.
type Stats struct {
	// Files is the number of trajectory files found; Invalid lists those
	// that could not be read (they count nowhere else).
	Files   int                `json:"files"`
	Invalid []export.FileError `json:"invalid"`

	Total       int     `json:"total"`
	Succeeded   int     `json:"succeeded"`
	Failed      int     `json:"failed"`
	SuccessRate float64 `json:"success_rate"` // 0..1; 0 when Total is 0
	// Tasks is the number of distinct task ids (a task may have several
	// attempts).
	Tasks int `json:"tasks"`
	// PassAtK is pass@k by k ("1", "5", "10" and the largest number of
	// attempts of a task), with the unbiased estimator over the tasks with
	// at least k attempts (see PassAtK); a k no task reaches is absent.
	PassAtK map[string]float64 `json:"pass_at_k"`
	// PassAtKTasks is, by the same k, how many tasks each pass@k is the
	// mean over (those with at least k attempts).
	PassAtKTasks map[string]int `json:"pass_at_k_tasks"`
	// MeanReward is the mean reward of the trajectories that have one
	// (RewardCount), absent when none has.
	MeanReward  *float64 `json:"mean_reward,omitempty"`
	RewardCount int      `json:"reward_count"`

	// ByType has one entry per task type: code, web, reasoning first (when
	// present), then any other type by name.
	ByType []TypeStats `json:"by_type"`
	// FailuresByErrorType counts failed trajectories by error_type, most
	// frequent first; a failure without an error_type is "unclassified".
	FailuresByErrorType []Count `json:"failures_by_error_type"`

	// Duration summarizes total_duration of every trajectory, in seconds.
	Duration          Percentiles `json:"duration_seconds"`
	DurationHistogram Histogram   `json:"duration_histogram"`

	Cache Cache `json:"cache"`
	// Sources counts metadata.source (scripted, cache, llm, rules, ...);
	// trajectories without one count as "unrecorded".
	Sources []Count `json:"sources"`

	Throughput Throughput `json:"throughput"`

	// Failures lists failed attempts by task id and sample index, the
	// first maxListed of them (FailuresListed of Failed).
	Failures       []Failure `json:"failures"`
	FailuresListed int       `json:"failures_listed"`
	// SampledTasks are the tasks with more than one attempt, by task id,
	// with the rewards of their attempts (the first maxListed of them).
	SampledTasks []TaskRewards `json:"sampled_tasks"`
}

// maxListed bounds the failed attempts and sampled tasks listed one by one.
const maxListed = 200

// maxMessageChars bounds the error message of a listed failed attempt.
const maxMessageChars = 300

// Failure is one failed attempt: which, why, and its file.
type Failure struct {
	TaskID      string `json:"task_id"`
	TaskType    string `json:"task_type"`
	SampleIndex int    `json:"sample_index"`
	ErrorType   string `json:"error_type"`
	Message     string `json:"error_message"`
	Path        string `json:"path,omitempty"` // empty when not read from a file
}

// TaskRewards is the distribution of one sampled task's rewards.
type TaskRewards struct {
	TaskID    string `json:"task_id"`
	TaskType  string `json:"task_type"`
	Attempts  int    `json:"attempts"`
	Succeeded int    `json:"succeeded"`
	// Rewards are the attempts' rewards in increasing order; attempts
	// without one (no verifier) are left out.
	Rewards []float64 `json:"rewards"`
}

// TypeStats are the figures of one task type.
type TypeStats struct {
	TaskType            string             `json:"task_type"`
	Total               int                `json:"total"`
	Succeeded           int                `json:"succeeded"`
	Failed              int                `json:"failed"`
	SuccessRate         float64            `json:"success_rate"`
	Duration            Percentiles        `json:"duration_seconds"`
	FailuresByErrorType []Count            `json:"failures_by_error_type"`
	Tasks               int                `json:"tasks"`
	PassAtK             map[string]float64 `json:"pass_at_k"`
	PassAtKTasks        map[string]int     `json:"pass_at_k_tasks"`
	MeanReward          *float64           `json:"mean_reward,omitempty"`
	RewardCount         int                `json:"reward_count"`
}

// Count is a labelled count.
type Count struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

// Percentiles summarize durations in seconds. Percentiles use the
// nearest-rank method: each is a duration that was observed. All are 0 when
// Count is 0.
type Percentiles struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Cache is the template cache's hit rate among trajectories that record
// metadata.cache_hit (web tasks and scripted programs may not).
type Cache struct {
	Known   int     `json:"known"` // trajectories with a boolean cache_hit
	Hits    int     `json:"hits"`
	HitRate float64 `json:"hit_rate"` // Hits/Known; 0 when Known is 0
}

// Histogram counts durations in equal bins [Lo, Hi). Durations above the
// last bin (a long tail beyond the 99th percentile) are counted in
// Overflow, from OverflowFrom up.
type Histogram struct {
	BinSeconds   float64 `json:"bin_seconds"`
	Bins         []Bin   `json:"bins"`
	Overflow     int     `json:"overflow"`
	OverflowFrom float64 `json:"overflow_from"`
}

// Bin is one histogram bin.
type Bin struct {
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	Count int     `json:"count"`
}

// Throughput counts trajectories by created_at (when the task started
// executing), in buckets of BucketSeconds: 60 unless the data spans more
// than maxThroughputBuckets minutes. Empty buckets between the first and the
// last are included, so the series is a time axis. Undated counts
// trajectories without created_at.
type Throughput struct {
	BucketSeconds int64    `json:"bucket_seconds"`
	Buckets       []Bucket `json:"buckets"`
	Undated       int      `json:"undated"`
	// PeakPerMinute and MeanPerMinute are rates over the dated span;
	// absent when it is one bucket (too short to give a rate).
	PeakPerMinute *float64 `json:"peak_per_minute,omitempty"`
	MeanPerMinute *float64 `json:"mean_per_minute,omitempty"`
}

// Bucket is one throughput bucket; Start is in UTC.
type Bucket struct {
	Start     time.Time `json:"start"`
	Total     int       `json:"total"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// Compute reads every trajectory file in dir (see export.Walk) and returns
// its figures. Unreadable files are listed in Stats.Invalid; the error is
// non-nil only when dir cannot be listed.
func Compute(dir string) (*Stats, error) {
	var acc Accumulator
	err := export.Walk(dir, func(path string, tr *core.Trajectory, readErr error) error {
		if readErr != nil {
			acc.AddInvalid(path, readErr)
			return nil
		}
		acc.AddFile(path, tr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return acc.Stats(), nil
}

// Accumulator gathers trajectories one at a time; its zero value is ready.
// It keeps one duration and one timestamp per trajectory, not the
// trajectories.
type Accumulator struct {
	files   int
	invalid []export.FileError
	types   map[string]*typeAcc
	errors  map[string]int
	sources map[string]int
	cache   Cache
	all     []float64
	times   []timed
	undated int
	failed  []Failure
}

type typeAcc struct {
	total, ok int
	durations []float64
	errors    map[string]int
	tasks     map[string]attempts // by task id
	rewards   int
	rewardSum float64
}

type timed struct {
	at float64
	ok bool
}

// AddInvalid records a file that could not be read.
func (a *Accumulator) AddInvalid(path string, err error) {
	a.files++
	a.invalid = append(a.invalid, export.FileError{Path: path, Err: err.Error()})
}

// Add records one trajectory.
func (a *Accumulator) Add(tr *core.Trajectory) { a.AddFile("", tr) }

// AddFile records one trajectory read from path.
func (a *Accumulator) AddFile(path string, tr *core.Trajectory) {
	a.files++
	if a.types == nil {
		a.types = map[string]*typeAcc{}
		a.errors = map[string]int{}
		a.sources = map[string]int{}
	}
	typ := string(tr.TaskType)
	if typ == "" {
		typ = labelUnknownType
	}
	ta := a.types[typ]
	if ta == nil {
		ta = &typeAcc{errors: map[string]int{}, tasks: map[string]attempts{}}
		a.types[typ] = ta
	}
	d := tr.TotalDuration
	if d < 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		d = 0
	}
	ta.total++
	ta.durations = append(ta.durations, d)
	at := ta.tasks[tr.TaskID]
	at.n++
	if tr.Success {
		at.c++
	}
	if tr.Reward != nil && !math.IsNaN(*tr.Reward) {
		ta.rewards++
		ta.rewardSum += *tr.Reward
		at.rewards = append(at.rewards, *tr.Reward)
	}
	ta.tasks[tr.TaskID] = at
	a.all = append(a.all, d)
	if tr.Success {
		ta.ok++
	} else {
		et := string(tr.ErrorType)
		if et == "" {
			et = labelUnclassified
		}
		ta.errors[et]++
		a.errors[et]++
		a.failed = append(a.failed, Failure{TaskID: tr.TaskID, TaskType: typ, SampleIndex: tr.SampleIndex, ErrorType: et, Message: truncate(tr.ErrorMessage, maxMessageChars), Path: path})
		if len(a.failed) >= 2*maxListed { // keep memory bounded: only the first maxListed are listed
			a.failed = firstFailures(a.failed)
		}
	}
	src, _ := tr.Metadata[core.MetaSource].(string)
	if src == "" {
		src = labelNoSource
	}
	a.sources[src]++
	if hit, ok := tr.Metadata[core.MetaCacheHit].(bool); ok {
		a.cache.Known++
		if hit {
			a.cache.Hits++
		}
	}
	if tr.CreatedAt > 0 && !math.IsInf(tr.CreatedAt, 0) {
		a.times = append(a.times, timed{at: tr.CreatedAt, ok: tr.Success})
	} else {
		a.undated++
	}
}

// Stats returns the figures of everything added so far.
func (a *Accumulator) Stats() *Stats {
	s := &Stats{
		Files:               a.files,
		Invalid:             append([]export.FileError{}, a.invalid...),
		ByType:              []TypeStats{},
		FailuresByErrorType: counts(a.errors),
		Sources:             counts(a.sources),
		Cache:               a.cache,
		Duration:            percentiles(a.all),
		DurationHistogram:   histogram(a.all),
		Throughput:          throughput(a.times, a.undated),
	}
	allTasks := map[string]attempts{}
	rewards, rewardSum := 0, 0.0
	for _, name := range typeOrder(a.types) {
		ta := a.types[name]
		for id, at := range ta.tasks {
			all := allTasks[name+"\x00"+id] // a task id is one task per type
			all.n, all.c = all.n+at.n, all.c+at.c
			allTasks[name+"\x00"+id] = all
			if at.n > 1 {
				rw := append([]float64{}, at.rewards...)
				sort.Float64s(rw)
				s.SampledTasks = append(s.SampledTasks, TaskRewards{TaskID: id, TaskType: name, Attempts: at.n, Succeeded: at.c, Rewards: rw})
			}
		}
		rewards, rewardSum = rewards+ta.rewards, rewardSum+ta.rewardSum
		ts := TypeStats{
			Tasks:               len(ta.tasks),
			MeanReward:          mean(ta.rewardSum, ta.rewards),
			RewardCount:         ta.rewards,
			TaskType:            name,
			Total:               ta.total,
			Succeeded:           ta.ok,
			Failed:              ta.total - ta.ok,
			SuccessRate:         ratio(ta.ok, ta.total),
			Duration:            percentiles(ta.durations),
			FailuresByErrorType: counts(ta.errors),
		}
		ts.PassAtK, ts.PassAtKTasks = passAtK(ta.tasks)
		s.ByType = append(s.ByType, ts)
		s.Total += ts.Total
		s.Succeeded += ts.Succeeded
	}
	s.Failed = s.Total - s.Succeeded
	s.SuccessRate = ratio(s.Succeeded, s.Total)
	s.Tasks = len(allTasks)
	s.PassAtK, s.PassAtKTasks = passAtK(allTasks)
	s.MeanReward, s.RewardCount = mean(rewardSum, rewards), rewards
	s.Cache.HitRate = ratio(s.Cache.Hits, s.Cache.Known)
	sort.Slice(s.SampledTasks, func(i, j int) bool {
		x, y := s.SampledTasks[i], s.SampledTasks[j]
		return x.TaskID < y.TaskID || (x.TaskID == y.TaskID && x.TaskType < y.TaskType)
	})
	if s.SampledTasks == nil || len(s.SampledTasks) > maxListed {
		s.SampledTasks = append([]TaskRewards{}, s.SampledTasks[:min(len(s.SampledTasks), maxListed)]...)
	}
	s.Failures = firstFailures(append([]Failure{}, a.failed...))
	s.FailuresListed = len(s.Failures)
	return s
}

// firstFailures sorts fs by task id, task type and sample index and keeps
// the first maxListed.
func firstFailures(fs []Failure) []Failure {
	sort.Slice(fs, func(i, j int) bool {
		x, y := fs[i], fs[j]
		if x.TaskID != y.TaskID {
			return x.TaskID < y.TaskID
		}
		if x.TaskType != y.TaskType {
			return x.TaskType < y.TaskType
		}
		return x.SampleIndex < y.SampleIndex
	})
	return fs[:min(len(fs), maxListed)]
}

// typeOrder lists the core task types first, in their usual order, then
// any other type by name.
func typeOrder(types map[string]*typeAcc) []string {
	var out, rest []string
	for _, t := range core.TaskTypes {
		if _, ok := types[string(t)]; ok {
			out = append(out, string(t))
		}
	}
	for name := range types {
		if !core.TaskType(name).Valid() {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// mean is sum/n, nil when n is 0.
func mean(sum float64, n int) *float64 {
	if n == 0 {
		return nil
	}
	m := sum / float64(n)
	return &m
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// counts sorts a tally by count, most first, then by name.
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for name, n := range m {
		out = append(out, Count{name, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func percentiles(values []float64) Percentiles {
	if len(values) == 0 {
		return Percentiles{}
	}
	v := append([]float64(nil), values...)
	sort.Float64s(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	return Percentiles{
		Count: len(v),
		Min:   v[0],
		Mean:  sum / float64(len(v)),
		P50:   nearestRank(v, 50),
		P95:   nearestRank(v, 95),
		P99:   nearestRank(v, 99),
		Max:   v[len(v)-1],
	}
}

// nearestRank is the p-th percentile of sorted: the smallest value with at
// least p% of the values at or below it.
func nearestRank(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// histogram bins durations into about histogramBins bins of a round width.
// With a long tail (max more than twice the 99th percentile, over at least
// 100 values) the bins stop at the 99th percentile and the rest is
// Overflow, so that one stuck task does not squash every other bar.
func histogram(values []float64) Histogram {
	h := Histogram{Bins: []Bin{}}
	if len(values) == 0 {
		return h
	}
	p := percentiles(values)
	hi := p.Max
	if len(values) >= 100 && p.Max > 2*p.P99 {
		hi = p.P99
	}
	width := niceCeil(hi / histogramBins)
	if width <= 0 {
		width = 1
	}
	// binOf tolerates float error: 1.2/0.1 is 11.999999999999998, and 1.2
	// belongs in the bin [1.2, 1.3).
	binOf := func(v float64) int { return int(math.Floor(v/width + 1e-9)) }
	n := binOf(hi) + 1 // hi itself falls in the last bin
	h.BinSeconds = width
	for i := 0; i < n; i++ {
		h.Bins = append(h.Bins, Bin{Lo: float64(i) * width, Hi: float64(i+1) * width})
	}
	h.OverflowFrom = float64(n) * width
	for _, v := range values {
		i := binOf(v)
		if i >= n {
			h.Overflow++
			continue
		}
		h.Bins[i].Count++
	}
	if h.Overflow == 0 {
		h.OverflowFrom = 0
	}
	return h
}

// niceCeil rounds x up to 1, 2 or 5 times a power of ten.
func niceCeil(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	exp := math.Floor(math.Log10(x))
	base := math.Pow(10, exp)
	for _, m := range []float64{1, 2, 5, 10} {
		if m*base >= x*(1-1e-9) {
			return m * base
		}
	}
	return 10 * base
}

func throughput(times []timed, undated int) Throughput {
	t := Throughput{BucketSeconds: bucketWidths[0], Buckets: []Bucket{}, Undated: undated}
	if len(times) == 0 {
		return t
	}
	lo, hi := times[0].at, times[0].at
	for _, x := range times {
		lo, hi = math.Min(lo, x.at), math.Max(hi, x.at)
	}
	width := bucketWidths[len(bucketWidths)-1]
	for _, w := range bucketWidths {
		if int64(hi)/w-int64(lo)/w+1 <= maxThroughputBuckets {
			width = w
			break
		}
	}
	t.BucketSeconds = width
	first := int64(lo) / width
	n := int(int64(hi)/width - first + 1)
	if n > maxThroughputBuckets { // more than ~27 years at a week per bucket
		n = maxThroughputBuckets
	}
	t.Buckets = make([]Bucket, n)
	for i := range t.Buckets {
		t.Buckets[i].Start = time.Unix((first+int64(i))*width, 0).UTC()
	}
	for _, x := range times {
		i := int(int64(x.at)/width - first)
		if i >= n {
			i = n - 1
		}
		b := &t.Buckets[i]
		b.Total++
		if x.ok {
			b.Succeeded++
		} else {
			b.Failed++
		}
	}
	if n < 2 {
		return t
	}
	minutes := float64(width) / 60
	peak := 0
	for _, b := range t.Buckets {
		peak = max(peak, b.Total)
	}
	t.PeakPerMinute = new(float64(peak) / minutes)
	t.MeanPerMinute = new(float64(len(times)) / (float64(n) * minutes))
	return t
}
