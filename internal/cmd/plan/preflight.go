package plan

import (
	"context"
	"errors"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/plan"
)

// Preflight is the one call `loractl train` makes before launching: it estimates the
// run's peak, then picks its GPU and refuses (exit 3, *preflight.NoFitError) when the
// estimate does not fit, unless opts.Force. A machine without an NVIDIA driver gets a
// CPU decision. When the model's architecture cannot be found before the trainer
// downloads it, the estimate is nil and the GPU is chosen by free memory alone; the
// caller should say so. The manager is opened and shut down here.
func Preflight(ctx context.Context, r *config.Resolved, m gpu.Manager, opts preflight.Options) (*plan.Estimate, *preflight.Decision, error) {
	var est *plan.Estimate
	run, err := RunFromResolved(r)
	switch {
	case errors.Is(err, plan.ErrUnknownModel):
	case err != nil:
		return nil, nil, cmdutil.Invalid(err)
	default:
		if est, err = run.Estimate(); err != nil {
			return nil, nil, cmdutil.Invalid(err)
		}
	}
	mgr, err := gpu.Open(m)
	if err != nil {
		return est, nil, cmdutil.Failed(err)
	}
	defer func() { _ = mgr.Shutdown() }()
	var need uint64
	if est != nil {
		need = est.PeakBytes
	}
	d, err := preflight.Run(ctx, mgr, need, opts)
	return est, d, err
}
