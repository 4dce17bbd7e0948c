package sweep

import (
	"strconv"

	"github.com/loractl/loractl/gpu/preflight"
)

// Slot is a place one locally running point occupies: a GPU (or MIG device), or
// the CPU when GPU is nil.
type Slot struct {
	GPU *preflight.Candidate
}

// Env is what the point's trainer must see: only its GPU.
func (s Slot) Env() map[string]string {
	if s.GPU == nil {
		return nil
	}
	return map[string]string{"CUDA_VISIBLE_DEVICES": s.GPU.Visible}
}

// GPUs are the host device indices the trainer may use.
func (s Slot) GPUs() []int {
	if s.GPU == nil {
		return nil
	}
	return []int{s.GPU.Index}
}

func (s Slot) String() string {
	if s.GPU == nil {
		return "cpu"
	}
	return "gpu " + strconv.Itoa(s.GPU.Index)
}

// LocalSlots decides how many points run at once on this machine and where, from the
// GPU pre-flight's view: each GPU takes as many points as fit in its free memory,
// need being the largest point's estimated peak, and max_parallel caps the total.
// Without GPUs the points share the CPU, max_parallel of them at once. An unknown
// need (0: the model's architecture could not be resolved) allows one point per GPU.
// When no point fits anywhere the sweep is refused with exit code 3, as a run would be.
func LocalSlots(cands []preflight.Candidate, need uint64, maxParallel int) ([]Slot, error) {
	maxParallel = max(maxParallel, 1)
	if len(cands) == 0 {
		return make([]Slot, maxParallel), nil
	}
	fits := make([]int, len(cands))
	total := 0
	for i, c := range cands {
		switch need {
		case 0:
			fits[i] = 1
		default:
			fits[i] = int(c.Free / need)
		}
		total += fits[i]
	}
	if total == 0 {
		best, _ := preflight.Pick(cands, preflight.AnyGPU)
		return nil, &preflight.NoFitError{Need: need, Best: best}
	}
	// Round robin over the GPUs, so two points on two GPUs do not share one.
	var slots []Slot
	for round := 0; len(slots) < maxParallel; round++ {
		added := false
		for i := range cands {
			if round < fits[i] && len(slots) < maxParallel {
				slots = append(slots, Slot{GPU: &cands[i]})
				added = true
			}
		}
		if !added {
			break
		}
	}
	return slots, nil
}
