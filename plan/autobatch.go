package plan

import "fmt"

// AutoBatchShare is the part of the GPU's free memory `train.batch_size: auto` fills:
// the rest absorbs the estimate's error (-5%..+10% of NVML on the measured table) and
// whatever else allocates on the GPU meanwhile.
const AutoBatchShare = 0.90

// PreflightMargin is added to the data-basis estimate before the pre-flight judges the
// fit: the estimate was as much as 5% under NVML on the measured table, and the data
// check's lengths may be approximate.
const PreflightMargin = 0.05

// Need is the memory the pre-flight asks for: the estimate plus PreflightMargin.
func Need(e *Estimate) uint64 {
	return uint64(float64(e.PeakBytes) * (1 + PreflightMargin))
}

// AutoBatch picks the micro-batch for `train.batch_size: auto`: the largest of
// candidates (each a divisor of the effective batch, largest first) whose estimate
// fits in AutoBatchShare of available, with grad_accum = effective ÷ micro-batch so
// that the optimisation stays the same. When none fits, the smallest comes back with
// its estimate and an error.
func AutoBatch(r Run, available uint64, effective int, candidates []int) (Run, *Estimate, error) {
	if len(candidates) == 0 {
		return r, nil, fmt.Errorf("no micro-batch divides the effective batch %d", effective)
	}
	limit := uint64(AutoBatchShare * float64(available))
	var last *Estimate
	for _, b := range candidates {
		v := r
		v.BatchSize, v.GradAccum = b, effective/b
		e, err := v.Estimate()
		if err != nil {
			return r, nil, err
		}
		last = e
		if e.PeakBytes <= limit {
			return v, e, nil
		}
		r = v
	}
	return r, last, fmt.Errorf("even micro-batch %d needs about %s, over %.0f%% of %s",
		r.BatchSize, humanBytes(int64(last.PeakBytes)), AutoBatchShare*100, humanBytes(int64(available)))
}
