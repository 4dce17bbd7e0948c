package run

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CompleteMarker is written last into a checkpoint directory by the trainer; a
// checkpoint without it was interrupted while saving and must not be resumed from.
const CompleteMarker = "loractl-complete.json"

// Checkpoint is one saved training state.
type Checkpoint struct {
	Step     int
	Path     string
	Complete bool
}

// Checkpoints lists the run's checkpoints by ascending step.
func Checkpoints(runDir string) ([]Checkpoint, error) {
	dir := filepath.Join(runDir, CheckpointsDir)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Checkpoint
	for _, e := range entries {
		step, ok := checkpointStep(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		_, err := os.Stat(filepath.Join(p, CompleteMarker))
		out = append(out, Checkpoint{Step: step, Path: p, Complete: err == nil})
	}
	// Directory order is by name; "checkpoint-100" sorts before "checkpoint-20".
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Step < out[j-1].Step; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// LatestComplete returns the newest complete checkpoint, or ok=false.
func LatestComplete(runDir string) (Checkpoint, bool, error) {
	cps, err := Checkpoints(runDir)
	if err != nil {
		return Checkpoint{}, false, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		if cps[i].Complete {
			return cps[i], true, nil
		}
	}
	return Checkpoint{}, false, nil
}

// MarkerStep reads the step recorded in a checkpoint's completion marker.
func MarkerStep(cpDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(cpDir, CompleteMarker))
	if err != nil {
		return 0, err
	}
	var m struct {
		Step int `json:"step"`
	}
	err = json.Unmarshal(b, &m)
	return m.Step, err
}

func checkpointStep(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "checkpoint-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
