package preflight

import (
	"fmt"
	"slices"
	"strings"
)

// PickMany chooses the GPUs of a run of several processes (one per GPU): the listed
// indices when want is non-empty, else the n candidates with most free memory (every
// candidate when n is 0, `nproc_per_node: auto`). Each must have need bytes free,
// unless force; the refusal is a NoFitError naming the GPU with the least free memory.
func PickMany(cands []Candidate, want []int, n int, need uint64, force bool) ([]Candidate, error) {
	if len(cands) == 0 {
		return nil, nil
	}
	var chosen []Candidate
	if len(want) > 0 {
		for _, idx := range want {
			c, ok := Pick(cands, idx)
			if !ok {
				return nil, requestErrorf("gpu lists GPU %d but this machine has GPUs 0-%d", idx, cands[len(cands)-1].Index)
			}
			chosen = append(chosen, c)
		}
	} else {
		sorted := slices.Clone(cands)
		slices.SortStableFunc(sorted, func(a, b Candidate) int {
			switch {
			case a.Free > b.Free:
				return -1
			case a.Free < b.Free:
				return 1
			}
			return 0
		})
		if n == 0 {
			n = len(sorted)
		}
		if n > len(sorted) {
			return nil, requestErrorf("distributed.nproc_per_node is %d but this machine has %d usable GPU(s): lower it or use auto", n, len(sorted))
		}
		chosen = sorted[:n]
	}
	if force {
		return chosen, nil
	}
	for _, c := range chosen {
		if need > c.Free {
			return nil, &NoFitError{Need: need, Best: c, TooBig: need > c.Total}
		}
	}
	return chosen, nil
}

// VisibleDevices is the CUDA_VISIBLE_DEVICES value selecting every chosen GPU; rank
// i of torchrun takes the i-th.
func VisibleDevices(chosen []Candidate) string {
	v := make([]string, len(chosen))
	for i, c := range chosen {
		v[i] = c.Visible
	}
	return strings.Join(v, ",")
}

// Names names the chosen GPUs for the log.
func Names(chosen []Candidate) string {
	v := make([]string, len(chosen))
	for i, c := range chosen {
		v[i] = fmt.Sprintf("%d (%s)", c.Index, c.Name)
	}
	return strings.Join(v, ", ")
}
