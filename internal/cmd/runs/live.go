package runs

import (
	"path/filepath"
	"time"

	"github.com/loractl/loractl/run"
)

// liveProgress is what a running run's events say about it now.
type liveProgress struct {
	Step       int      `json:"step"`
	TotalSteps int      `json:"total_steps,omitempty"`
	Loss       *float64 `json:"loss,omitempty"`
	// ETASeconds extrapolates this attempt's rate (from its first logged step to its
	// latest, by the events' times) over the steps left.
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
}

// readLive reads a run's events; nil when there is nothing to say yet.
func readLive(dir string) *liveProgress {
	evs, err := run.ReadEvents(filepath.Join(dir, run.EventsFile))
	if err != nil {
		return nil
	}
	return fromEvents(evs)
}

func fromEvents(evs []*run.Event) *liveProgress {
	var lp liveProgress
	var firstStep int
	var firstAt, lastAt time.Time
	seen := false
	for _, e := range evs {
		switch e.Type {
		case run.EventStart:
			if e.TotalSteps > 0 {
				lp.TotalSteps = e.TotalSteps
			}
			firstAt = time.Time{} // a new attempt: its own rate
		case run.EventLog, run.EventCheckpoint:
			if e.Step <= 0 {
				continue
			}
			seen = true
			if e.TotalSteps > 0 {
				lp.TotalSteps = e.TotalSteps
			}
			lp.Step = e.Step
			if e.Type == run.EventLog && e.Loss != nil {
				lp.Loss = e.Loss
			}
			if firstAt.IsZero() {
				firstStep, firstAt = e.Step, e.Time
			}
			lastAt = e.Time
		}
	}
	if !seen {
		return nil
	}
	if done := lp.Step - firstStep; done > 0 && lp.TotalSteps > lp.Step && lastAt.After(firstAt) {
		eta := lastAt.Sub(firstAt).Seconds() / float64(done) * float64(lp.TotalSteps-lp.Step)
		lp.ETASeconds = &eta
	}
	return &lp
}
