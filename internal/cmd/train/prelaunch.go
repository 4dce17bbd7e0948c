package train

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/runner"
)

// preLaunch runs the checks that must pass before anything is launched (launch.Check:
// the data check, the estimate, the GPU pre-flight), which fill in lo, and keeps what
// the summary needs. A resumed run skips the data check: its run id proves the data is
// the data that was checked. A data check with errors prints them and exits 2.
func (o *Options) preLaunch(ctx context.Context, cfg *config.Config, p *runner.Prepared, lo *runner.LaunchOptions) error {
	res, err := launch.Check(ctx, cfg, lo, launch.Options{
		Log: o.Factory.Log, GPUManager: o.GPUManager, GPU: o.GPU, Force: o.Force,
		Wait: o.WaitGPU, Poll: o.WaitPoll, Status: o.Factory.IO.ErrOut, StatusTTY: o.Factory.IO.IsStderrTTY(),
		Resumed: o.Resume != "", ResumedBatch: o.resumedBatch(), SkipDataCheck: o.SkipDataCheck,
		TokenCacheDir: pyenv.TokenCacheDir(),
	})
	var dce *launch.DataCheckError
	if errors.As(err, &dce) {
		dce.Write(o.Factory.IO.ErrOut)
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	if err != nil {
		return err
	}
	o.estimate, o.gpuIndex = res.Estimate, res.GPUIndex
	o.nvmlComparable, o.baseUsed = res.NVMLComparable, res.BaseUsed
	return nil
}

// resumedBatch is the micro-batch recorded in the manifest of the run being resumed,
// or 0 (a fresh run, or a manifest without one).
func (o *Options) resumedBatch() int {
	if o.Resume == "" {
		return 0
	}
	store, err := o.Factory.Store()
	if err != nil {
		return 0
	}
	m, err := store.Manifest(o.Resume)
	if err != nil || len(m.Estimate) == 0 {
		return 0
	}
	var rec struct {
		BatchSize int `json:"batch_size"`
	}
	if json.Unmarshal(m.Estimate, &rec) != nil {
		return 0
	}
	return rec.BatchSize
}
