package reproduce

import (
	"math"
	"sort"

	"github.com/loractl/loractl/run"
)

// sessionMetrics are final values the trainer aggregates over one process's life:
// after a resume they cover only the resumed part, so they say nothing about whether
// the training was reproduced.
var sessionMetrics = map[string]bool{"train_loss": true, "total_flos": true}

// StepLosses compares the loss logged at every step in both runs: what a resume
// leaves comparable when the aggregate train_loss is not.
type StepLosses struct {
	Steps      int   `json:"steps"`
	Mismatched []int `json:"mismatched_steps,omitempty"`
	Missing    []int `json:"missing_steps,omitempty"`
	// Partial steps are not compared: the first loss logged after a resume averages
	// only the steps since the resume.
	Partial    []int   `json:"partial_steps,omitempty"`
	MaxRelDiff float64 `json:"max_rel_diff"`
}

// Same reports whether every step's loss matched.
func (s *StepLosses) Same() bool { return len(s.Mismatched) == 0 && len(s.Missing) == 0 }

// history is what a run's events say about its training path.
type history struct {
	// resumeStep is the step the newest resume started from (0: never resumed).
	resumeStep int
	// losses by step; a step logged twice (before an interruption and again after the
	// resume from an earlier checkpoint) keeps its last value, the one on the final path.
	losses map[int]float64
	// partial are steps whose logged loss averages fewer steps than an uninterrupted
	// run's would: the first log after a resume from a step that was not itself a
	// logging step covers only the steps since the resume.
	partial map[int]bool
}

func readHistory(events []*run.Event) history {
	h := history{losses: map[int]float64{}, partial: map[int]bool{}}
	afterResume := -1 // the resume step until the first log after it, else -1
	for _, e := range events {
		switch e.Type {
		case "start":
			if e.ResumeStep > 0 {
				h.resumeStep = e.ResumeStep
				afterResume = e.ResumeStep
			}
		case "log":
			if e.Loss == nil || e.Step <= 0 {
				continue
			}
			if afterResume >= 0 {
				if _, logged := h.losses[afterResume]; !logged {
					h.partial[e.Step] = true
				}
				afterResume = -1
			} else {
				delete(h.partial, e.Step)
			}
			h.losses[e.Step] = *e.Loss
		}
	}
	return h
}

// compareSteps compares per-step losses within tol (relative; 0: exactly).
func compareSteps(a, b history, tol float64) *StepLosses {
	steps := map[int]bool{}
	for s := range a.losses {
		steps[s] = true
	}
	for s := range b.losses {
		steps[s] = true
	}
	out := &StepLosses{}
	for s := range steps {
		if a.partial[s] || b.partial[s] {
			delete(steps, s)
			out.Partial = append(out.Partial, s)
		}
	}
	sort.Ints(out.Partial)
	keys := make([]int, 0, len(steps))
	for s := range steps {
		keys = append(keys, s)
	}
	sort.Ints(keys)
	for _, s := range keys {
		x, okA := a.losses[s]
		y, okB := b.losses[s]
		if !okA || !okB {
			out.Missing = append(out.Missing, s)
			continue
		}
		out.Steps++
		d := math.Abs(x - y)
		rel := 0.0
		if d > 0 {
			rel = d / math.Max(math.Abs(x), math.Abs(y))
		}
		out.MaxRelDiff = math.Max(out.MaxRelDiff, rel)
		if d != 0 && rel > tol {
			out.Mismatched = append(out.Mismatched, s)
		}
	}
	return out
}
