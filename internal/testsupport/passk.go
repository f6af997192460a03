package testsupport

import (
	"math/big"
	"strconv"
)

// ExactPassAtK is pass@k = 1 - C(n-c, k) / C(n, k) with exact binomials:
// a reference for the unbiased estimator (Chen et al. 2021) that the
// product computes in floating point.
func ExactPassAtK(n, c, k int) float64 {
	num := new(big.Int).Binomial(int64(n-c), int64(k))
	if n-c < k {
		num.SetInt64(0)
	}
	r := new(big.Rat).SetFrac(num, new(big.Int).Binomial(int64(n), int64(k)))
	f, _ := new(big.Rat).Sub(big.NewRat(1, 1), r).Float64()
	return f
}

// ExpectedPassAtK averages ExactPassAtK over the tasks (id → {n attempts,
// c successes}) with at least k attempts, for k in 1, 5, 10 and the largest
// attempt count, keyed as `adpctl stats --json` keys pass_at_k.
func ExpectedPassAtK(tasks map[string][2]int) map[string]float64 {
	maxN := 0
	for _, nc := range tasks {
		maxN = max(maxN, nc[0])
	}
	out := map[string]float64{}
	for _, k := range []int{1, 5, 10, maxN} {
		sum, m := 0.0, 0
		for _, nc := range tasks {
			if nc[0] >= k {
				sum += ExactPassAtK(nc[0], nc[1], k)
				m++
			}
		}
		if m > 0 {
			out[strconv.Itoa(k)] = sum / float64(m)
		}
	}
	return out
}
