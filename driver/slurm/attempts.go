package slurm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Attempt is one run of the batch script: the first, or one after a requeue (by the
// script itself after a USR1 checkpoint, or by Slurm after preemption or node failure).
type Attempt struct {
	// JobID is the Slurm job id of this attempt (an array task's own id).
	JobID string `json:"job_id"`
	// ArrayJobID and ArrayTaskID are set for tasks of a job array.
	ArrayJobID  string `json:"array_job_id,omitempty"`
	ArrayTaskID string `json:"array_task_id,omitempty"`
	// RestartCount is Slurm's SLURM_RESTART_COUNT: 0 for the first attempt.
	RestartCount int       `json:"restart_count"`
	Node         string    `json:"node"`
	StartedAt    time.Time `json:"started_at"`
	// FinishedAt, ExitCode and Signal are unset when the attempt never reported its end
	// (killed by the scheduler, node failure) or is still running.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	// Signal is the signal the batch script forwarded to the trainer (USR1, TERM, INT).
	Signal string `json:"signal,omitempty"`
	// Requeued is set when the script requeued the job after this attempt.
	Requeued bool `json:"requeued,omitempty"`
}

// attemptLine is one line of attempts.jsonl as the batch script writes it.
type attemptLine struct {
	Event string `json:"event"`
	// Time is parsed leniently: a line written while the job was being killed may
	// lack it, and the rest of the line is still worth keeping.
	Time         string `json:"time"`
	JobID        string `json:"job_id"`
	ArrayJobID   string `json:"array_job_id"`
	ArrayTaskID  string `json:"array_task_id"`
	RestartCount int    `json:"restart_count"`
	Node         string `json:"node"`
	ExitCode     *int   `json:"exit_code"`
	Signal       string `json:"signal"`
	Requeued     bool   `json:"requeued"`
}

// ReadAttempts folds RUN_DIR/attempts.jsonl into attempts, oldest first. A missing file
// means no attempt has started yet. An end line is matched to the latest start of the
// same job and restart count; a half-written last line (the node died mid-write) is
// skipped.
func ReadAttempts(runDir string) ([]Attempt, error) {
	path := filepath.Join(runDir, AttemptsName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Attempt
	sc := bufio.NewScanner(f)
	var bad error // a broken line is an error only when more lines follow it
	for n := 1; sc.Scan(); n++ {
		if bad != nil {
			return out, bad
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l attemptLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			bad = fmt.Errorf("%s:%d: %w", path, n, err)
			continue
		}
		at, _ := time.Parse(time.RFC3339, l.Time)
		switch l.Event {
		case "start":
			out = append(out, Attempt{JobID: l.JobID, ArrayJobID: l.ArrayJobID, ArrayTaskID: l.ArrayTaskID,
				RestartCount: l.RestartCount, Node: l.Node, StartedAt: at})
		case "end":
			i := len(out) - 1
			for ; i >= 0; i-- {
				if out[i].JobID == l.JobID && out[i].RestartCount == l.RestartCount {
					break
				}
			}
			if i < 0 { // an end without its start: keep what it says
				out = append(out, Attempt{JobID: l.JobID, ArrayJobID: l.ArrayJobID, ArrayTaskID: l.ArrayTaskID,
					RestartCount: l.RestartCount, Node: l.Node})
				i = len(out) - 1
			}
			out[i].FinishedAt, out[i].ExitCode, out[i].Signal, out[i].Requeued = at, l.ExitCode, l.Signal, l.Requeued
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// lastAttempt is the newest attempt of the given job id, or nil.
func lastAttempt(runDir, jobID string) *Attempt {
	as, _ := ReadAttempts(runDir)
	for i := len(as) - 1; i >= 0; i-- {
		if jobID == "" || as[i].JobID == jobID {
			return &as[i]
		}
	}
	return nil
}
