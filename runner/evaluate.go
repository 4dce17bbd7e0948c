package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/taskeval"
)

// WriteReport writes a finished run's report (report.html, loss.png) into its
// directory. It is set where the report package is linked in; nil writes none.
var WriteReport func(runDir string) error

// JudgeOptions tune the judge's requests at the end of a run (tests shorten them).
var JudgeOptions taskeval.JudgeOptions

// evaluate finishes a completed run's task evaluation: the judge (when configured
// and judge is set: only a controller driving the run calls it, never a refresh from
// `runs`), the bootstrap verdict into eval/summary.json, and the verdict folded into
// the result. Without eval files the result keeps the eval-loss comparison.
func evaluate(ctx context.Context, dir string, r *run.Result, o *Outcome, judge func(string)) {
	evalDir := filepath.Join(dir, taskeval.Dir)
	if _, err := os.Stat(evalDir); err != nil {
		return
	}
	ev, seed, err := taskeval.ReadRunEval(dir)
	if err != nil {
		o.EvalErr = err
		return
	}
	opts := taskeval.Options{Eval: ev, Seed: seed}
	var s *taskeval.Summary
	if judge != nil {
		if m := taskeval.JudgeMetric(ev); m != nil {
			judge(fmt.Sprintf("judging base vs adapter with %s at %s (Ctrl-C stops it; unjudged examples count as errors)", m.Model, m.Endpoint))
		}
		s, o.JudgeErr, err = taskeval.Evaluate(ctx, evalDir, opts, JudgeOptions)
	} else if s, err = taskeval.Summarize(evalDir, opts); err == nil {
		err = taskeval.WriteSummary(evalDir, s)
	}
	if errors.Is(err, taskeval.ErrNoEval) {
		return
	}
	if err != nil {
		o.EvalErr = err
		return
	}
	o.Eval = s
	FoldSummary(r, s)
}

// FoldSummary records a task evaluation's verdict in a run's result: verdict, reason,
// the adapter's metric means (for sweep ranking) and improved, which now means adopt.
func FoldSummary(r *run.Result, s *taskeval.Summary) {
	r.Verdict, r.VerdictReason = s.Verdict, s.Reason
	improved := s.Verdict == taskeval.Adopt
	r.Improved = &improved
	r.EvalMetrics = map[string]float64{}
	for name, ms := range s.Metrics {
		if ms.N > 0 {
			r.EvalMetrics[name] = ms.Adapter
		}
	}
	if s.Judge != nil && s.Judge.Wins+s.Judge.Losses+s.Judge.Ties > 0 {
		r.EvalMetrics[s.Judge.Name] = s.Judge.WinRate
	}
	if len(r.EvalMetrics) == 0 {
		r.EvalMetrics = nil
	}
}
