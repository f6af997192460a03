package report

import (
	"sort"
	"strconv"
)

// passKs are the k of pass@k reported, besides the largest number of
// attempts of any task.
var passKs = []int{1, 5, 10}

// attempts counts a task's attempts and how many succeeded, and keeps the
// rewards of those that have one.
type attempts struct {
	n, c    int
	rewards []float64
}

// PassAtK is the unbiased estimator of pass@k (Chen et al. 2021, "Evaluating
// Large Language Models Trained on Code"): for a task with n attempts of
// which c succeeded, 1 - C(n-c, k) / C(n, k), the chance that k attempts
// drawn without replacement include a success. It is computed as a product,
// without large binomials. ok is false when k > n (not defined).
func PassAtK(n, c, k int) (p float64, ok bool) {
	if k < 1 || n < k || c < 0 || c > n {
		return 0, false
	}
	if n-c < k {
		return 1, true
	}
	q := 1.0
	for i := n - c + 1; i <= n; i++ {
		q *= 1 - float64(k)/float64(i)
	}
	return 1 - q, true
}

// passAtK returns, for k in passKs and the largest attempt count, the mean
// of PassAtK over the tasks with at least k attempts, and how many tasks
// that is; a k that no task reaches is left out. Keys are k in decimal.
func passAtK(tasks map[string]attempts) (means map[string]float64, over map[string]int) {
	means, over = map[string]float64{}, map[string]int{}
	if len(tasks) == 0 {
		return means, over
	}
	maxN := 0
	for _, a := range tasks {
		maxN = max(maxN, a.n)
	}
	ks := append([]int(nil), passKs...)
	ks = append(ks, maxN)
	sort.Ints(ks)
	for _, k := range ks {
		sum, m := 0.0, 0
		for _, a := range tasks {
			if p, ok := PassAtK(a.n, a.c, k); ok {
				sum += p
				m++
			}
		}
		if m > 0 {
			means[strconv.Itoa(k)] = sum / float64(m)
			over[strconv.Itoa(k)] = m
		}
	}
	return means, over
}
