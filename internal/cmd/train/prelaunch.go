package train

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmd/shared/prelaunch"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/plan"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// preLaunch runs the checks that must pass before anything is launched: the data
// check and the GPU pre-flight. They fill in lo (warnings and the estimate for the
// manifest, the chosen GPU). A resumed run skips the data check: its run id proves
// the data is the data that was checked.
func (o *Options) preLaunch(ctx context.Context, cfg *config.Config, p *runner.Prepared, lo *runner.LaunchOptions) error {
	if o.Resume == "" {
		if err := o.checkData(ctx, cfg, lo); err != nil {
			return err
		}
	}
	return o.preflight(ctx, cfg, lo)
}

// runsHere reports whether the run's driver starts the trainer on this machine, so
// that this machine's GPUs are the ones it will use. Slurm and external drivers run it
// elsewhere: a GPU on the login node says nothing about the job's.
func runsHere(lo *runner.LaunchOptions) bool {
	return lo.Driver != nil && lo.Driver.Capabilities().Local
}

// preflight estimates the run's peak GPU memory and, for a driver that runs the
// trainer on this machine, picks the GPU (--gpu, the config's gpu:, or the one with
// most free memory) and refuses with exit 3 when the run will not fit, unless --force;
// --wait-gpu waits for memory to free up instead. Other drivers get the estimate
// recorded and nothing else: the fit is judged where the job runs. An estimate the
// estimator cannot make is a warning, never a refusal.
func (o *Options) preflight(ctx context.Context, cfg *config.Config, lo *runner.LaunchOptions) error {
	log := o.Factory.Log
	index := cfg.GPU
	if o.GPU >= 0 {
		index = o.GPU
	}
	if index < 0 {
		index = preflight.AnyGPU
	}
	est, why := o.trainEstimate(cfg, lo, index)
	if why != nil {
		est = nil
		log.Warn().Str("reason", why.Error()).Msg("no memory estimate: the GPU fit is not checked before launch")
	}
	if !runsHere(lo) {
		ev := log.Info().Str("driver", cfg.DriverName)
		if est != nil {
			ev = ev.Str("estimated_peak", gpu.FormatBytes(est.PeakBytes))
		}
		ev.Msg("GPU pre-flight skipped: the trainer runs elsewhere, so its GPU and the fit are judged where the job runs")
		if o.GPU >= 0 || o.WaitGPU > 0 || cfg.GPU >= 0 {
			log.Warn().Str("driver", cfg.DriverName).Msg("--gpu, --wait-gpu and gpu: pick a GPU of this machine; they are ignored for a driver that runs the trainer elsewhere")
		}
		return nil
	}
	if cfg.Resolved.Distributed != nil {
		return o.preflightMany(ctx, cfg, lo, est)
	}
	dec, err := prelaunch.Preflight(ctx, est, o.GPUManager(), preflight.Options{
		GPU: index, Force: o.Force, Wait: o.WaitGPU, Poll: o.WaitPoll,
		Status: o.Factory.IO.ErrOut, StatusTTY: o.Factory.IO.IsStderrTTY(),
	})
	if err != nil {
		return err
	}
	if dec.CPU {
		if q := cfg.Resolved.Quantization.Mode; q != "" && q != "none" {
			// bitsandbytes quantizes on CUDA only: the trainer would load, fail and leave
			// a failed run behind. Refuse here, before anything is written.
			return cmdutil.Invalidf("quantization: %s needs an NVIDIA GPU (bitsandbytes runs on CUDA) and this machine has none: set quantization: none to train here in full precision, or run it where a GPU is (driver.name: slurm, or docker on a GPU host)", q)
		}
		ev := log.Info()
		if est != nil {
			ev = ev.Str("estimated_peak", gpu.FormatBytes(est.PeakBytes))
		}
		ev.Msg("no NVIDIA GPU: training on the CPU")
		return nil
	}
	if est != nil {
		ev := log.Info()
		if dec.Forced {
			ev = log.Warn()
		}
		ev.Str("estimated_peak", gpu.FormatBytes(est.PeakBytes)).Str("free", gpu.FormatBytes(dec.Free)).Int("gpu", dec.Index).
			Bool("fits", dec.Fits).Msg("GPU pre-flight")
	}
	if lo.Env == nil {
		lo.Env = map[string]string{}
	}
	for k, v := range dec.Env() {
		lo.Env[k] = v
	}
	lo.GPUs = []int{dec.Index}
	lo.GPU = &run.GPUInfo{Index: dec.Index, Name: dec.Name, UUID: dec.UUID, MemoryBytes: dec.Total}
	o.gpuIndex = dec.Index
	// The sampler reads the whole GPU's memory: comparable with the estimate once the
	// memory in use before the launch is taken off, and not at all on a MIG slice.
	o.nvmlComparable = !dec.MIG && dec.Total >= dec.Free
	if o.nvmlComparable {
		o.baseUsed = dec.Total - dec.Free
	}
	return nil
}

// estimateRecord is the manifest's estimate: the estimate with the batch it is for.
type estimateRecord struct {
	*plan.Estimate
	BatchSize   int    `json:"batch_size"`
	GradAccum   int    `json:"grad_accum"`
	BatchChoice string `json:"batch_choice,omitempty"`
}

// trainEstimate estimates the run on the data basis (the data check's lengths, when
// it ran) and, for train.batch_size auto, picks the micro-batch: against the free
// memory of the GPU the run will get when the trainer runs here, else the resolved
// config's. The choice reaches the trainer as LORACTL_MICRO_BATCH and is printed and
// recorded in the manifest with the estimate.
func (o *Options) trainEstimate(cfg *config.Config, lo *runner.LaunchOptions, index int) (*plan.Estimate, error) {
	var lengths *plan.Lengths
	if len(lo.DataCheck) > 0 {
		var rec struct {
			Stats *dataset.Stats `json:"stats"`
		}
		if json.Unmarshal(lo.DataCheck, &rec) == nil {
			lengths = prelaunch.LengthsFromStats(rec.Stats)
		}
	}
	run, err := prelaunch.TrainRun(&cfg.Resolved, lengths)
	if err != nil {
		return nil, err
	}
	t := cfg.Resolved.Train
	choice := ""
	if t.BatchSizeAuto {
		if b := o.resumedBatch(); b > 0 {
			// A resumed run keeps the micro-batch its checkpoints were trained with.
			run.BatchSize, run.GradAccum = b, t.EffectiveBatchSize/b
			choice = fmt.Sprintf("auto, kept from the run being resumed: micro-batch %d × grad_accum %d", b, run.GradAccum)
		} else {
			var free uint64
			if runsHere(lo) {
				free = prelaunch.FreeMemory(o.GPUManager(), index)
			}
			run, choice, err = prelaunch.ChooseBatch(run, t, free, cfg.Processes())
			if err != nil {
				// Nothing fits: the smallest micro-batch goes on to the pre-flight,
				// which refuses it (exit 3) unless --force.
				choice = err.Error()
			}
		}
		if lo.Env == nil {
			lo.Env = map[string]string{}
		}
		lo.Env["LORACTL_MICRO_BATCH"] = fmt.Sprint(run.BatchSize)
		o.Factory.Log.Info().Int("batch_size", run.BatchSize).Int("grad_accum", run.GradAccum).
			Int("effective_batch_size", t.EffectiveBatchSize).Msg("train.batch_size " + choice)
	}
	est, err := run.Estimate()
	if err != nil {
		return nil, err
	}
	if lo.Estimate, err = json.Marshal(estimateRecord{est, run.BatchSize, run.GradAccum, choice}); err != nil {
		return nil, err
	}
	o.estimate = est
	return est, nil
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

func (o *Options) checkData(ctx context.Context, cfg *config.Config, lo *runner.LaunchOptions) error {
	return prelaunch.CheckData(ctx, o.Factory, cfg, lo, o.SkipDataCheck)
}
