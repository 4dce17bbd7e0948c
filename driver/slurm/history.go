package slurm

import (
	"fmt"

	"github.com/loractl/loractl/driver"
)

// History implements driver.HistoryReader: every run of the batch script (the first
// and each requeue) from RUN_DIR/attempts.jsonl.
func (d *Driver) History(runDir string) ([]driver.Launch, error) {
	atts, err := ReadAttempts(runDir)
	if err != nil {
		return nil, err
	}
	out := make([]driver.Launch, 0, len(atts))
	for _, a := range atts {
		out = append(out, driver.Launch{
			ID:        fmt.Sprintf("%s (restart %d)", a.JobID, a.RestartCount),
			Node:      a.Node,
			StartedAt: a.StartedAt,
			EndedAt:   a.FinishedAt,
			ExitCode:  a.ExitCode,
			Signal:    a.Signal,
			Requeued:  a.Requeued,
		})
	}
	return out, nil
}
