package taskeval

import (
	"math"
	"math/rand/v2"
	"slices"
)

// DefaultResamples is the bootstrap's resample count.
const DefaultResamples = 10000

// Interval is a mean and its 95% percentile-bootstrap interval.
type Interval struct {
	Mean, Lo, Hi float64
	N            int
}

// Bootstrap resamples xs with replacement (seeded: the same data and seed always give
// the same interval) and returns the mean and the 2.5th and 97.5th percentiles of the
// resampled means. For paired data xs holds the per-example differences, so the
// pairing is kept: an example's base and adapter scores are drawn together.
func Bootstrap(xs []float64, resamples int, seed uint64) Interval {
	n := len(xs)
	if n == 0 {
		return Interval{Mean: math.NaN(), Lo: math.NaN(), Hi: math.NaN()}
	}
	if resamples <= 0 {
		resamples = DefaultResamples
	}
	mean := meanOf(xs)
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261637463)) // "loractc": a fixed stream per seed
	means := make([]float64, resamples)
	for b := range means {
		var sum float64
		for range n {
			sum += xs[rng.IntN(n)]
		}
		means[b] = sum / float64(n)
	}
	slices.Sort(means)
	return Interval{Mean: mean, Lo: percentile(means, 0.025), Hi: percentile(means, 0.975), N: n}
}

// percentile interpolates linearly between the closest ranks of sorted xs.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := p * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(i)
	return sorted[i] + frac*(sorted[i+1]-sorted[i])
}

func meanOf(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// stddev is the sample standard deviation (n-1).
func stddev(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	m := meanOf(xs)
	var s float64
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(xs)-1))
}

// ExamplesToResolve estimates how many examples would make a 95% interval narrow
// enough to tell a mean difference of this size from threshold: the n at which
// 1.96·sd/√n equals |mean − threshold|, rounded up to two significant digits. It
// returns 0 when no number of examples would (no difference, or no spread to size
// it by).
func ExamplesToResolve(diffs []float64, threshold float64) int {
	if len(diffs) < 2 {
		return 0
	}
	gap := math.Abs(meanOf(diffs) - threshold)
	sd := stddev(diffs)
	if gap == 0 || sd == 0 {
		return 0
	}
	z := 1.96 * sd / gap
	n := math.Ceil(z * z)
	if n > 1e9 {
		return 0
	}
	return roundUp2(int(n))
}

// roundUp2 rounds n up to two significant digits (57 -> 57, 123 -> 130, 4567 -> 4600).
func roundUp2(n int) int {
	step := 1
	for n/step >= 100 {
		step *= 10
	}
	return (n + step - 1) / step * step
}
