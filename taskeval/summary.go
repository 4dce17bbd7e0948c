package taskeval

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"sort"

	"github.com/loractl/loractl/config"
)

// Verdicts.
const (
	Adopt        = "adopt"
	DoNotAdopt   = "do_not_adopt"
	Inconclusive = "inconclusive"
)

// MinExamples is the fewest paired examples a decisive verdict needs. Below it the
// percentile bootstrap's interval is too narrow to trust (three examples that all
// improve give an interval above zero), so the verdict is inconclusive.
const MinExamples = 10

// DoesNotStopShare is the share of answers ended by max tokens above which a side is
// flagged does_not_stop: it rambles past the end of its turn.
const DoesNotStopShare = 0.10

// Summary is eval/summary.json.
type Summary struct {
	N       int                       `json:"n"`
	Primary string                    `json:"primary"`
	Metrics map[string]*MetricSummary `json:"metrics"`
	// EvalLoss is the per-example eval loss; absent without example_losses.json.
	EvalLoss *LossSummary `json:"eval_loss,omitempty"`
	Verdict  string       `json:"verdict"`
	Reason   string       `json:"reason"`
	// DoesNotStop flags a side whose answers ended by max tokens in more than 10% of
	// the prompts.
	DoesNotStop Sides `json:"does_not_stop"`
	// StopRate is each side's share of answers that ended the turn (stopped at eos).
	StopRate   Rates         `json:"stop_rate"`
	Checkpoint string        `json:"checkpoint"`
	Judge      *JudgeSummary `json:"judge,omitempty"`
	// Against names the other model whose replies hold the base side (`loractl eval
	// --against`); empty when the base is the run's base model.
	Against string `json:"against,omitempty"`
}

// MetricSummary is one metric's means over the examples scored on both sides, and the
// 95% bootstrap interval of the paired difference adapter − base.
type MetricSummary struct {
	Base    float64    `json:"base"`
	Adapter float64    `json:"adapter"`
	Delta   float64    `json:"delta"`
	CI95    [2]float64 `json:"ci95"`
	// N is how many examples were scored on both sides.
	N int `json:"n"`
	// Errors counts the examples where the metric failed on either side.
	Errors int `json:"errors"`
}

// LossSummary is the mean per-example eval loss before and after training, and the
// 95% interval of the paired difference after − before (negative: the loss fell).
type LossSummary struct {
	Before    float64     `json:"before"`
	After     float64     `json:"after"`
	CI95Delta *[2]float64 `json:"ci95_delta,omitempty"`
}

// JudgeSummary is the judge's win rate (adapter 1, tie 0.5, base 0 per example) with
// its 95% interval.
type JudgeSummary struct {
	Name    string     `json:"name"`
	WinRate float64    `json:"win_rate"`
	CI95    [2]float64 `json:"ci95"`
	Wins    int        `json:"wins"`
	Losses  int        `json:"losses"`
	Ties    int        `json:"ties"`
	Errors  int        `json:"errors"`
}

// Sides holds a flag per side.
type Sides struct {
	Base    bool `json:"base"`
	Adapter bool `json:"adapter"`
}

// Rates holds a share per side.
type Rates struct {
	Base    float64 `json:"base"`
	Adapter float64 `json:"adapter"`
}

// Options say what decides and how.
type Options struct {
	// Eval is the run's resolved eval section: metrics (for their kinds), the primary
	// metric and the required improvement.
	Eval config.EvalConfig
	// Seed seeds the bootstrap (the run's train.seed).
	Seed uint64
	// Resamples defaults to DefaultResamples.
	Resamples int
	// Checkpoint names what was evaluated: "adapter" (default) or "checkpoint-N".
	Checkpoint string
	// Against names the model in the base side when it is not the base (see Summary).
	Against string
}

// ErrNoEval is returned when an eval directory holds neither generations nor
// per-example losses: there is nothing to decide on.
var ErrNoEval = errors.New("no task evaluation: neither generations.jsonl nor example_losses.json")

// Summarize reads an eval directory's generations and per-example losses and computes
// the summary. It writes nothing.
func Summarize(dir string, o Options) (*Summary, error) {
	rows, err := ReadGenerations(filepath.Join(dir, GenerationsFile))
	hasRows := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	losses, err := ReadExampleLosses(filepath.Join(dir, ExampleLossesFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if !hasRows && losses == nil {
		return nil, ErrNoEval
	}
	return Compute(rows, losses, o), nil
}

// Compute is Summarize for data already read; either may be empty.
func Compute(rows []Row, losses *ExampleLosses, o Options) *Summary {
	s := &Summary{N: len(rows), Metrics: map[string]*MetricSummary{}, Checkpoint: o.Checkpoint}
	if s.Checkpoint == "" {
		s.Checkpoint = "adapter"
	}
	if len(rows) == 0 && losses != nil {
		s.N = len(losses.Before)
	}
	s.stops(rows)

	// Every metric the rows carry is summarised (configured ones and any extra a
	// --metric evaluation added); the primary decides.
	diffs := map[string][]float64{}
	for _, name := range metricNames(rows, o.Eval) {
		ms, d := summariseMetric(rows, name, o)
		s.Metrics[name], diffs[name] = ms, d
	}
	var judgeDiffs []float64
	if j := JudgeMetric(o.Eval); j != nil && hasJudgements(rows) {
		s.Judge, judgeDiffs = summariseJudge(rows, j.Name, o)
	}
	var lossDiffs []float64
	if losses != nil && len(losses.Before) > 0 {
		s.EvalLoss, lossDiffs = summariseLoss(losses, o)
	}

	s.Primary = o.Eval.Primary
	pm := o.Eval.Metric(s.Primary)
	switch {
	case pm != nil && pm.Kind == config.MetricJudge:
		if s.Judge == nil {
			s.Verdict, s.Reason = Inconclusive, fmt.Sprintf("the primary metric %q is a judge that has not judged these generations", s.Primary)
			break
		}
		// The win rate against an even split: its difference from 0.5 plays the
		// part of adapter − base.
		s.decide(judgeDiffs, s.Judge.Errors, o, label{name: "judge win rate", offset: 0.5, digits: 2})
	case s.Primary != "":
		if len(rows) == 0 {
			s.Verdict, s.Reason = Inconclusive, fmt.Sprintf("no generations to score %s on", s.Primary)
			break
		}
		ms := s.Metrics[s.Primary]
		if ms == nil {
			s.Verdict, s.Reason = Inconclusive, fmt.Sprintf("no example has a %s score", s.Primary)
			break
		}
		s.decide(diffs[s.Primary], ms.Errors, o, metricLabel(s.Primary, pm))
	case lossDiffs != nil:
		s.decide(lossDiffs, 0, o, label{name: "eval loss reduction", digits: 4})
	default:
		s.Verdict, s.Reason = Inconclusive, "no metric configured and no per-example eval loss to decide by"
	}
	if o.Against != "" {
		s.Against = o.Against
		s.Reason = fmt.Sprintf("%s vs %s: %s", s.Checkpoint, o.Against, s.Reason)
	}
	return s
}

// label is how a decided quantity is named and printed in the reason.
type label struct {
	name   string
	offset float64 // added to the interval when printed (the judge's 0.5)
	digits int
}

func metricLabel(name string, m *config.MetricConfig) label {
	l := label{name: name, digits: 3}
	if m != nil && m.Kind == config.MetricChrF {
		l.name, l.digits = "chrF", 1
	}
	return l
}

func (l label) num(v float64) string {
	if l.offset != 0 {
		return fmt.Sprintf("%.*f", l.digits, v+l.offset)
	}
	return fmt.Sprintf("%+.*f", l.digits, v)
}

// threshold words the required improvement: "zero", "an even split (0.50)".
func (l label) threshold(minImp float64) string {
	switch {
	case minImp == 0 && l.offset == 0.5:
		return "an even split (" + l.num(0) + ")"
	case minImp == 0:
		return "zero"
	}
	return "the required " + l.name + " " + l.num(minImp)
}

// decide applies the verdict rule to the per-example differences: adopt when the 95%
// interval's lower end is above the required improvement, do_not_adopt when its upper
// end is at or below it, inconclusive otherwise. A metric with errors cannot adopt:
// the examples it failed on might be exactly the ones the adapter gets wrong.
func (s *Summary) decide(diffs []float64, errs int, o Options, l label) {
	minImp := o.Eval.MinImprovement
	n := len(diffs)
	if n == 0 {
		s.Verdict, s.Reason = Inconclusive, fmt.Sprintf("no example has a %s value on both sides", l.name)
		return
	}
	ci := Bootstrap(diffs, o.Resamples, o.Seed)
	interval := fmt.Sprintf("the 95%% interval %s..%s %s", l.num(ci.Lo), l.num(ci.Hi), l.name)
	head := fmt.Sprintf("%d eval %s", n, plural(n, "example"))
	switch {
	case n < MinExamples:
		s.Verdict = Inconclusive
		s.Reason = fmt.Sprintf("%s are too few to decide (at least %d are needed): %s", head, MinExamples, interval)
		if more := ExamplesToResolve(diffs, minImp); more > MinExamples {
			s.Reason += fmt.Sprintf("; about %d examples would resolve a difference this size", more)
		}
	case ci.Lo > minImp:
		s.Verdict = Adopt
		s.Reason = fmt.Sprintf("%s: %s is above %s (mean %s)", head, interval, l.threshold(minImp), l.num(ci.Mean))
	case ci.Hi <= minImp:
		s.Verdict = DoNotAdopt
		s.Reason = fmt.Sprintf("%s: %s is at or below %s (mean %s)", head, interval, l.threshold(minImp), l.num(ci.Mean))
	default:
		s.Verdict = Inconclusive
		s.Reason = fmt.Sprintf("%s: %s includes %s", head, interval, l.threshold(minImp))
		if more := ExamplesToResolve(diffs, minImp); more > n {
			s.Reason += fmt.Sprintf("; about %d examples would resolve a difference this size", more)
		} else if more == 0 {
			s.Reason += "; no difference to resolve with more examples"
		}
	}
	if errs > 0 && s.Verdict == Adopt {
		s.Verdict = Inconclusive
		s.Reason = fmt.Sprintf("%s; but %s failed on %d %s, so it cannot adopt (the errors are in generations.jsonl)", s.Reason, l.name, errs, plural(errs, "example"))
	} else if errs > 0 {
		s.Reason += fmt.Sprintf("; %s failed on %d %s", l.name, errs, plural(errs, "example"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func (s *Summary) stops(rows []Row) {
	if len(rows) == 0 {
		return
	}
	var baseEOS, adEOS, baseMax, adMax int
	for _, r := range rows {
		baseEOS += b2i(r.Base.Stopped == StoppedEOS)
		adEOS += b2i(r.Adapter.Stopped == StoppedEOS)
		baseMax += b2i(r.Base.Stopped == StoppedMaxTokens)
		adMax += b2i(r.Adapter.Stopped == StoppedMaxTokens)
	}
	n := float64(len(rows))
	s.StopRate = Rates{Base: float64(baseEOS) / n, Adapter: float64(adEOS) / n}
	s.DoesNotStop = Sides{Base: float64(baseMax)/n > DoesNotStopShare, Adapter: float64(adMax)/n > DoesNotStopShare}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// metricNames lists the configured non-judge metrics in config order, then any other
// score or error name the rows carry, sorted.
func metricNames(rows []Row, e config.EvalConfig) []string {
	var names []string
	for _, m := range e.Metrics {
		if m.Kind != config.MetricJudge {
			names = append(names, m.Name)
		}
	}
	extra := map[string]bool{}
	for _, r := range rows {
		for _, side := range []Side{r.Base, r.Adapter} {
			for k := range side.Scores {
				extra[k] = true
			}
			for k := range side.Errors {
				extra[k] = true
			}
		}
	}
	var more []string
	for k := range extra {
		if !slices.Contains(names, k) {
			if m := e.Metric(k); m == nil || m.Kind != config.MetricJudge {
				more = append(more, k)
			}
		}
	}
	sort.Strings(more)
	return append(names, more...)
}

func summariseMetric(rows []Row, name string, o Options) (*MetricSummary, []float64) {
	ms := &MetricSummary{}
	var diffs, base, adapter []float64
	for _, r := range rows {
		_, be := r.Base.Errors[name]
		_, ae := r.Adapter.Errors[name]
		if be || ae {
			ms.Errors++
			continue
		}
		b, bok := r.Base.Scores[name]
		a, aok := r.Adapter.Scores[name]
		if !bok || !aok || !finite(a) || !finite(b) {
			continue
		}
		base, adapter, diffs = append(base, b), append(adapter, a), append(diffs, a-b)
	}
	ms.N = len(diffs)
	if ms.N == 0 {
		return ms, nil
	}
	ci := Bootstrap(diffs, o.Resamples, o.Seed)
	ms.Base, ms.Adapter, ms.Delta, ms.CI95 = meanOf(base), meanOf(adapter), ci.Mean, [2]float64{ci.Lo, ci.Hi}
	return ms, diffs
}

func summariseLoss(l *ExampleLosses, o Options) (*LossSummary, []float64) {
	var before, after, reduction []float64
	for i := range l.Before {
		if !finite(l.Before[i]) || !finite(l.After[i]) {
			continue
		}
		before, after = append(before, l.Before[i]), append(after, l.After[i])
		reduction = append(reduction, l.Before[i]-l.After[i])
	}
	if len(reduction) == 0 {
		return nil, nil
	}
	ci := Bootstrap(reduction, o.Resamples, o.Seed)
	return &LossSummary{Before: meanOf(before), After: meanOf(after), CI95Delta: &[2]float64{-ci.Hi, -ci.Lo}}, reduction
}

// JudgeMetric returns the eval section's judge metric, nil when it has none.
func JudgeMetric(e config.EvalConfig) *config.MetricConfig {
	for i := range e.Metrics {
		if e.Metrics[i].Kind == config.MetricJudge {
			return &e.Metrics[i]
		}
	}
	return nil
}

func hasJudgements(rows []Row) bool {
	for _, r := range rows {
		if r.Judge != nil {
			return true
		}
	}
	return false
}

// summariseJudge returns the win rate and the per-example score − 0.5, which the
// verdict rule treats like a paired difference.
func summariseJudge(rows []Row, name string, o Options) (*JudgeSummary, []float64) {
	js := &JudgeSummary{Name: name}
	var scores, diffs []float64
	for _, r := range rows {
		v, ok := r.Judge.Score()
		if !ok {
			js.Errors++
			continue
		}
		switch r.Judge.Winner {
		case WinnerAdapter:
			js.Wins++
		case WinnerBase:
			js.Losses++
		default:
			js.Ties++
		}
		scores, diffs = append(scores, v), append(diffs, v-0.5)
	}
	if len(scores) == 0 {
		return js, nil
	}
	ci := Bootstrap(scores, o.Resamples, o.Seed)
	js.WinRate, js.CI95 = ci.Mean, [2]float64{ci.Lo, ci.Hi}
	return js, diffs
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
