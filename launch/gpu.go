package launch

import (
	"context"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/plan"
)

// TrainEstimate is the estimate `loractl train` records and judges the fit with.
// Unlike `loractl plan`, training does not depend on the estimator: when it cannot
// handle the run (an architecture it does not know, a config.json not downloaded
// yet, target modules it cannot place), the estimate is nil and the error says why,
// for the caller to warn with. It never fails the run.
func TrainEstimate(r *config.Resolved) (*plan.Estimate, error) {
	run, err := RunFromResolved(r)
	if err != nil {
		return nil, err
	}
	return run.Estimate()
}

// TrainRun is TrainEstimate's run with the data check's lengths (nil: every row at
// max_length), for callers that adjust it (batch_size auto) before estimating.
func TrainRun(r *config.Resolved, lengths *plan.Lengths) (plan.Run, error) {
	run, err := RunFromResolved(r)
	if err != nil {
		return run, err
	}
	run.Data = lengths
	return run, nil
}

// FreeMemory is the free memory of the GPU the pre-flight would pick (index, or
// preflight.AnyGPU for the most free), or 0 when there is none to measure.
func FreeMemory(m gpu.Manager, index int) uint64 {
	mgr, err := gpu.Open(m)
	if err != nil {
		return 0
	}
	defer func() { _ = mgr.Shutdown() }()
	cands, _, err := preflight.Survey(mgr)
	if err != nil || len(cands) == 0 {
		return 0
	}
	c, ok := preflight.Pick(cands, index)
	if !ok {
		return 0
	}
	return c.Free
}

// Preflight is the GPU half of `loractl train`'s checks before launching, for drivers
// that run the trainer on this machine: it picks the run's GPU and refuses (exit 3,
// *preflight.NoFitError) when est plus plan.PreflightMargin does not fit, unless opts.Force. A nil est (no
// estimate) picks the GPU by free memory alone. A machine without an NVIDIA driver
// gets a CPU decision. The manager is opened and shut down here.
func Preflight(ctx context.Context, est *plan.Estimate, m gpu.Manager, opts preflight.Options) (*preflight.Decision, error) {
	mgr, err := gpu.Open(m)
	if err != nil {
		return nil, err
	}
	defer func() { _ = mgr.Shutdown() }()
	var need uint64
	if est != nil {
		need = plan.Need(est) // the estimate plus the pre-flight's margin
	}
	return preflight.Run(ctx, mgr, need, opts)
}
