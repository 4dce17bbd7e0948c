package slurm

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/loractl/loractl/driver"
)

// handleState is the driver-private part of a Handle: enough for any controller process
// on a host that can reach the cluster to find the job again.
type handleState struct {
	// JobID is the job id sbatch printed; for an array task, the array's job id.
	JobID string `json:"job_id"`
	// ArrayTaskID is the task index within the array; nil for a plain job.
	ArrayTaskID *int `json:"array_task_id,omitempty"`
	// Cluster is set when sbatch reported one (federated or multi-cluster setups).
	Cluster string `json:"cluster,omitempty"`
	// RunDir is where attempts.jsonl lives.
	RunDir      string    `json:"run_dir"`
	Script      string    `json:"script"`
	SubmittedAt time.Time `json:"submitted_at"`
}

var jobIDRE = regexp.MustCompile(`^[0-9]+$`)
var clusterRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// slurmID is the id Slurm's commands accept: 12 or 12_3.
func (s *handleState) slurmID() string {
	if s.ArrayTaskID != nil {
		return s.JobID + "_" + strconv.Itoa(*s.ArrayTaskID)
	}
	return s.JobID
}

// taskID is the array task index as scontrol prints it, "" for a plain job.
func (s *handleState) taskID() string {
	if s.ArrayTaskID == nil {
		return ""
	}
	return strconv.Itoa(*s.ArrayTaskID)
}

func newHandle(s *handleState) (*driver.Handle, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return &driver.Handle{Driver: Name, Version: driver.HandleVersion, ID: s.slurmID(), State: raw}, nil
}

// decodeHandle checks h and returns its state. Ids are checked again here because a
// handle comes back from a manifest on disk, and they end up in Slurm command lines.
func decodeHandle(h *driver.Handle) (*handleState, error) {
	if err := driver.CheckHandle(h, Name); err != nil {
		return nil, err
	}
	var s handleState
	if err := json.Unmarshal(h.State, &s); err != nil {
		return nil, fmt.Errorf("slurm handle %s: %w", h.ID, err)
	}
	if !jobIDRE.MatchString(s.JobID) {
		return nil, fmt.Errorf("slurm handle %s: invalid job id %q", h.ID, s.JobID)
	}
	if s.ArrayTaskID != nil && *s.ArrayTaskID < 0 {
		return nil, fmt.Errorf("slurm handle %s: invalid array task %d", h.ID, *s.ArrayTaskID)
	}
	if s.Cluster != "" && !clusterRE.MatchString(s.Cluster) {
		return nil, fmt.Errorf("slurm handle %s: invalid cluster %q", h.ID, s.Cluster)
	}
	return &s, nil
}

// JobID returns the Slurm job id a handle names ("12", or "12_3" for an array task),
// for messages such as "submitted as job 12".
func JobID(h *driver.Handle) (string, error) {
	s, err := decodeHandle(h)
	if err != nil {
		return "", err
	}
	return s.slurmID(), nil
}
