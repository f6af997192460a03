package report

import (
	"maps"
	"math"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// binomial pass@k for small n, as the paper writes it.
func naivePassAtK(n, c, k int) float64 {
	choose := func(n, k int) float64 {
		if k < 0 || k > n {
			return 0
		}
		r := 1.0
		for i := 1; i <= k; i++ {
			r = r * float64(n-k+i) / float64(i)
		}
		return r
	}
	return 1 - choose(n-c, k)/choose(n, k)
}

func TestPassAtK(t *testing.T) {
	for n := 1; n <= 12; n++ {
		for c := 0; c <= n; c++ {
			for k := 1; k <= n; k++ {
				got, ok := PassAtK(n, c, k)
				if want := naivePassAtK(n, c, k); !ok || math.Abs(got-want) > 1e-12 {
					t.Fatalf("PassAtK(%d, %d, %d) = %v, %v; want %v", n, c, k, got, ok, want)
				}
			}
		}
	}
	if _, ok := PassAtK(3, 1, 5); ok {
		t.Error("pass@5 of 3 attempts is not defined")
	}
	if p, _ := PassAtK(10, 3, 1); math.Abs(p-0.3) > 1e-12 {
		t.Errorf("pass@1 = %v, want the success rate 0.3", p)
	}
	got, over := passAtK(map[string]attempts{"a": {n: 8, c: 2}, "b": {n: 8, c: 0}, "c": {n: 2, c: 1}})
	if want := map[string]int{"1": 3, "5": 2, "8": 2}; !maps.Equal(over, want) {
		t.Errorf("tasks per pass@k = %v, want %v", over, want)
	}
	want1 := (2.0/8 + 0 + 0.5) / 3
	p5, _ := PassAtK(8, 2, 5)
	if math.Abs(got["1"]-want1) > 1e-12 || math.Abs(got["5"]-p5/2) > 1e-12 || got["8"] == 0 {
		t.Errorf("passAtK = %v; want pass@1 %v, pass@5 %v (tasks with 8 attempts)", got, want1, p5/2)
	}
	if _, ok := got["10"]; ok {
		t.Errorf("pass@10 reported with at most 8 attempts: %v", got)
	}
}

func TestStatsPassAtKAndReward(t *testing.T) {
	var acc Accumulator
	r := func(v float64) *float64 { return &v }
	add := func(id string, typ core.TaskType, ok bool, reward *float64) {
		acc.Add(&core.Trajectory{TaskID: id, TaskType: typ, Success: ok, Reward: reward, Metadata: core.Metadata{}})
	}
	// Task a: 4 attempts, 1 success; task b: 4 attempts, none; w: one web attempt.
	add("a", core.TaskCode, true, r(1))
	add("a", core.TaskCode, false, r(0.5))
	add("a", core.TaskCode, false, r(0))
	add("a", core.TaskCode, false, nil)
	for range 4 {
		add("b", core.TaskCode, false, r(0))
	}
	add("w", core.TaskWeb, true, nil)
	s := acc.Stats()
	if s.Tasks != 3 || s.ByType[0].Tasks != 2 {
		t.Fatalf("tasks = %d, code tasks = %d", s.Tasks, s.ByType[0].Tasks)
	}
	code := s.ByType[0]
	if p := code.PassAtK["1"]; math.Abs(p-(0.25+0)/2) > 1e-12 {
		t.Errorf("code pass@1 = %v, want 0.125", p)
	}
	if p := code.PassAtK["4"]; math.Abs(p-0.5) > 1e-12 {
		t.Errorf("code pass@4 = %v, want 0.5 (a surely, b never)", p)
	}
	if _, ok := code.PassAtK["5"]; ok {
		t.Errorf("pass@5 with 4 attempts: %v", code.PassAtK)
	}
	if p := s.PassAtK["1"]; math.Abs(p-(0.25+0+1)/3) > 1e-12 {
		t.Errorf("overall pass@1 = %v", p)
	}
	if code.MeanReward == nil || math.Abs(*code.MeanReward-1.5/7) > 1e-12 || code.RewardCount != 7 {
		t.Errorf("code mean reward = %v of %d, want %v of 7", code.MeanReward, code.RewardCount, 1.5/7)
	}
	if s.ByType[1].MeanReward != nil {
		t.Errorf("web has no reward, mean %v", *s.ByType[1].MeanReward)
	}
}
