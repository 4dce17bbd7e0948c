package taskeval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBootstrapConstantDifference(t *testing.T) {
	xs := make([]float64, 40)
	for i := range xs {
		xs[i] = 0.25
	}
	ci := Bootstrap(xs, 0, 1)
	if ci.Mean != 0.25 || ci.Lo != 0.25 || ci.Hi != 0.25 || ci.N != 40 {
		t.Fatalf("a constant difference must give a zero-width interval at it: %+v", ci)
	}
}

func TestBootstrapSeededDeterminism(t *testing.T) {
	xs := normal(50, 1, 2, 7)
	a, b := Bootstrap(xs, 0, 42), Bootstrap(xs, 0, 42)
	if a != b {
		t.Fatalf("same data and seed, different intervals: %+v vs %+v", a, b)
	}
	if c := Bootstrap(xs, 0, 43); c.Lo == a.Lo && c.Hi == a.Hi {
		t.Fatalf("another seed drew the very same interval: %+v", c)
	}
}

// Against a known distribution the percentile interval matches the normal theory:
// mean ± 1.96·σ/√n within a few percent.
func TestBootstrapMatchesNormalTheory(t *testing.T) {
	const n, sigma = 400, 2.0
	xs := normal(n, 0.5, sigma, 3)
	ci := Bootstrap(xs, 0, 9)
	half := 1.96 * stddev(xs) / math.Sqrt(n)
	if d := math.Abs((ci.Hi-ci.Lo)/2 - half); d > 0.06*half {
		t.Fatalf("half width %.4f, normal theory %.4f", (ci.Hi-ci.Lo)/2, half)
	}
	if math.Abs((ci.Hi+ci.Lo)/2-ci.Mean) > 0.1*half {
		t.Fatalf("interval %v..%v not centred on the mean %v", ci.Lo, ci.Hi, ci.Mean)
	}
	if ci.Mean < ci.Lo || ci.Mean > ci.Hi {
		t.Fatalf("mean outside its interval: %+v", ci)
	}
}

// Covers the true mean in about 95% of repeated experiments.
func TestBootstrapCoverage(t *testing.T) {
	const trials = 200
	covered := 0
	for i := range trials {
		xs := normal(60, 1.0, 1.0, uint64(100+i))
		ci := Bootstrap(xs, 2000, uint64(i))
		if ci.Lo <= 1.0 && 1.0 <= ci.Hi {
			covered++
		}
	}
	if covered < 180 || covered > 198 {
		t.Fatalf("covered the true mean in %d of %d trials, want about 95%%", covered, trials)
	}
}

func TestExamplesToResolve(t *testing.T) {
	// mean 0.5, sd √2: (1.96·√2/0.5)² = 30.7, so 31 examples.
	if got := ExamplesToResolve([]float64{-0.5, 1.5}, 0); got != 31 {
		t.Fatalf("ExamplesToResolve = %d, want 31", got)
	}
	// Measured against the threshold, not zero: mean 0.5 vs 0.25 needs 4x as many.
	if got := ExamplesToResolve([]float64{-0.5, 1.5}, 0.25); got != 130 {
		t.Fatalf("ExamplesToResolve against 0.25 = %d, want 130 (123 rounded up)", got)
	}
	if got := ExamplesToResolve([]float64{1, -1, 1, -1}, 0); got != 0 {
		t.Fatalf("no difference at all: want 0, got %d", got)
	}
	if got := ExamplesToResolve([]float64{2, 2, 2}, 0); got != 0 {
		t.Fatalf("no spread: want 0, got %d", got)
	}
	for in, want := range map[int]int{7: 7, 99: 99, 123: 130, 4567: 4600, 100: 100} {
		if got := roundUp2(in); got != want {
			t.Errorf("roundUp2(%d) = %d, want %d", in, got, want)
		}
	}
}

func normal(n int, mean, sd float64, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, seed))
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = mean + sd*r.NormFloat64()
	}
	return xs
}
