package train

import (
	"strings"
	"testing"

	"github.com/loractl/loractl/taskeval"
)

func TestEvalLines(t *testing.T) {
	if evalLines(nil) != nil {
		t.Fatal("no evaluation, no lines")
	}
	s := &taskeval.Summary{
		N: 12, Primary: "chrf",
		Metrics: map[string]*taskeval.MetricSummary{
			"exact": {Base: 0.1, Adapter: 0.5, Delta: 0.4, CI95: [2]float64{0.2, 0.6}, N: 12},
			"chrf":  {Base: 40, Adapter: 42.5, Delta: 2.5, CI95: [2]float64{-4.1, 9.8}, N: 11, Errors: 1},
		},
		Judge:       &taskeval.JudgeSummary{Name: "judge", WinRate: 0.625, CI95: [2]float64{0.4, 0.8}, Wins: 6, Ties: 3, Losses: 3},
		DoesNotStop: taskeval.Sides{Adapter: true}, StopRate: taskeval.Rates{Base: 1, Adapter: 0.75},
		Verdict: taskeval.Inconclusive, Reason: "12 eval examples: the 95% interval -4.1..+9.8 chrF includes zero",
	}
	got := strings.Join(evalLines(s), "\n")
	for _, want := range []string{
		"  chrf       40 -> 42.5 (+2.5, 95% interval -4.1..+9.8, 11 examples), 1 errors\n  exact",
		"judge      win rate 0.62 (95% interval 0.40..0.80): 6 wins, 3 ties, 3 losses",
		"adapter (75% ended the turn)",
		"  verdict    inconclusive: 12 eval examples",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lines lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "base (") {
		t.Errorf("base stops fine, yet flagged:\n%s", got)
	}
}
