package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/plan"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// Options say how Check judges a run before its launch.
type Options struct {
	// Log receives what the user must hear: data warnings, the estimate, the GPU chosen.
	Log *zerolog.Logger
	// GPUManager opens NVML (tests give a fake GPU).
	GPUManager func() gpu.Manager
	// GPU is a GPU index asked for on the command line; -1 defers to the config's gpu:.
	GPU int
	// Force launches although the run will not fit.
	Force bool
	// Wait is how long to wait for enough free GPU memory (0: refuse at once); Poll how
	// often to look.
	Wait, Poll time.Duration
	// Status shows the wait's progress (a live line when StatusTTY).
	Status    io.Writer
	StatusTTY bool
	// Resumed: the run resumes, so its data (named by its run id) was checked when it
	// started. ResumedBatch is the micro-batch its manifest records (0: none), which
	// batch_size auto keeps.
	Resumed      bool
	ResumedBatch int
	// SkipDataCheck skips the data check (emergencies only).
	SkipDataCheck bool
	// TokenCacheDir caches the data check's token counts.
	TokenCacheDir string
	// Counting, when set, is called when the data check starts counting tokens, once the
	// structural checks have passed (Train starts the trainer's imports then); the count
	// runs in the runner it returns, if any (the warm trainer process).
	Counting func() dataset.PythonRunner
}

// Result is what Check decided besides what it wrote into the launch options.
type Result struct {
	// Estimate is the run's estimated peak (nil: the estimator could not make one).
	Estimate *plan.Estimate
	// GPUIndex is the GPU the run was placed on (-1: the CPU, or a trainer elsewhere).
	GPUIndex int
	// BaseUsed is the GPU memory in use before the launch; NVMLComparable says the GPU's
	// used memory minus BaseUsed is the run's own (a whole GPU, not a MIG slice).
	BaseUsed       uint64
	NVMLComparable bool
}

// Check runs what must pass before anything is launched: the data check, then the
// estimate and, for a driver that runs the trainer on this machine, the GPU
// pre-flight. It fills lo: the data check and the estimate for the manifest, the
// chosen GPUs and their environment. A refusal is a typed error: *DataCheckError,
// *InputError, or the pre-flight's (*preflight.NoFitError, ...).
func Check(ctx context.Context, cfg *config.Config, lo *runner.LaunchOptions, o Options) (*Result, error) {
	if !o.Resumed {
		if err := checkData(ctx, o.Log, cfg, lo, o.SkipDataCheck, o.TokenCacheDir, o.Counting); err != nil {
			return nil, err
		}
	}
	return preflightRun(ctx, cfg, lo, o)
}

// RunsHere reports whether the run's driver starts the trainer on this machine, so
// that this machine's GPUs are the ones it will use. Slurm and external drivers run it
// elsewhere: a GPU on the login node says nothing about the job's.
func RunsHere(lo *runner.LaunchOptions) bool {
	return lo.Driver != nil && lo.Driver.Capabilities().Local
}

// preflightRun estimates the run's peak GPU memory and, for a driver that runs the
// trainer on this machine, picks the GPU (Options.GPU, the config's gpu:, or the one
// with most free memory) and refuses when the run will not fit, unless Force; Wait
// waits for memory to free up instead. Other drivers get the estimate recorded and
// nothing else: the fit is judged where the job runs. An estimate the estimator cannot
// make is a warning, never a refusal.
func preflightRun(ctx context.Context, cfg *config.Config, lo *runner.LaunchOptions, o Options) (*Result, error) {
	log := o.Log
	res := &Result{GPUIndex: -1}
	index := cfg.GPU
	if o.GPU >= 0 {
		index = o.GPU
	}
	if index < 0 {
		index = preflight.AnyGPU
	}
	est, why := trainEstimate(cfg, lo, o, index)
	if why != nil {
		est = nil
		log.Warn().Str("reason", why.Error()).Msg("no memory estimate: the GPU fit is not checked before launch")
	}
	res.Estimate = est
	if !RunsHere(lo) {
		ev := log.Info().Str("driver", cfg.DriverName)
		if est != nil {
			ev = ev.Str("estimated_peak", gpu.FormatBytes(est.PeakBytes))
		}
		ev.Msg("GPU pre-flight skipped: the trainer runs elsewhere, so its GPU and the fit are judged where the job runs")
		if o.GPU >= 0 || o.Wait > 0 || cfg.GPU >= 0 {
			log.Warn().Str("driver", cfg.DriverName).Msg("--gpu, --wait-gpu and gpu: pick a GPU of this machine; they are ignored for a driver that runs the trainer elsewhere")
		}
		return res, nil
	}
	if cfg.Resolved.Distributed != nil {
		return res, preflightMany(cfg, lo, o, est, res)
	}
	dec, err := Preflight(ctx, est, o.GPUManager(), preflight.Options{
		GPU: index, Force: o.Force, Wait: o.Wait, Poll: o.Poll, Status: o.Status, StatusTTY: o.StatusTTY,
	})
	if err != nil {
		return nil, err
	}
	if dec.CPU {
		if q := cfg.Resolved.Quantization.Mode; q != "" && q != "none" {
			// bitsandbytes quantizes on CUDA only: the trainer would load, fail and leave
			// a failed run behind. Refuse here, before anything is written.
			return nil, inputErrorf("quantization: %s needs an NVIDIA GPU (bitsandbytes runs on CUDA) and this machine has none: set quantization: none to train here in full precision, or run it where a GPU is (driver.name: slurm, or docker on a GPU host)", q)
		}
		ev := log.Info()
		if est != nil {
			ev = ev.Str("estimated_peak", gpu.FormatBytes(est.PeakBytes))
		}
		ev.Msg("no NVIDIA GPU: training on the CPU")
		return res, nil
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
	res.GPUIndex = dec.Index
	// The sampler reads the whole GPU's memory: comparable with the estimate once the
	// memory in use before the launch is taken off, and not at all on a MIG slice.
	res.NVMLComparable = !dec.MIG && dec.Total >= dec.Free
	if res.NVMLComparable {
		res.BaseUsed = dec.Total - dec.Free
	}
	return res, nil
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
// config's. The choice reaches the trainer as LORACTL_MICRO_BATCH and is logged and
// recorded in the manifest with the estimate.
func trainEstimate(cfg *config.Config, lo *runner.LaunchOptions, o Options, index int) (*plan.Estimate, error) {
	var lengths *plan.Lengths
	if len(lo.DataCheck) > 0 {
		var rec struct {
			Stats *dataset.Stats `json:"stats"`
		}
		if json.Unmarshal(lo.DataCheck, &rec) == nil {
			lengths = LengthsFromStats(rec.Stats)
		}
	}
	r, err := TrainRun(&cfg.Resolved, lengths)
	if err != nil {
		return nil, err
	}
	t := cfg.Resolved.Train
	choice := ""
	if t.BatchSizeAuto {
		if b := o.ResumedBatch; b > 0 {
			// A resumed run keeps the micro-batch its checkpoints were trained with.
			r.BatchSize, r.GradAccum = b, t.EffectiveBatchSize/b
			choice = fmt.Sprintf("auto, kept from the run being resumed: micro-batch %d × grad_accum %d", b, r.GradAccum)
		} else {
			var free uint64
			if RunsHere(lo) {
				free = FreeMemory(o.GPUManager(), index)
			}
			r, choice, err = ChooseBatch(r, t, free, cfg.Processes())
			if err != nil {
				// Nothing fits: the smallest micro-batch goes on to the pre-flight,
				// which refuses it unless Force.
				choice = err.Error()
			}
		}
		if lo.Env == nil {
			lo.Env = map[string]string{}
		}
		lo.Env["LORACTL_MICRO_BATCH"] = fmt.Sprint(r.BatchSize)
		o.Log.Info().Int("batch_size", r.BatchSize).Int("grad_accum", r.GradAccum).
			Int("effective_batch_size", t.EffectiveBatchSize).Msg("train.batch_size " + choice)
	}
	est, err := r.Estimate()
	if err != nil {
		return nil, err
	}
	if lo.Estimate, err = json.Marshal(estimateRecord{est, r.BatchSize, r.GradAccum, choice}); err != nil {
		return nil, err
	}
	return est, nil
}

// preflightMany is the GPU pre-flight of a distributed run on this machine: the GPUs
// of `gpu:` or the ones with most free memory, each checked against one rank's
// estimated peak (plan.PerRank: the single-GPU peak for DDP, the sharded base plus
// the rank's own share for FSDP). No GPU: the run trains on the CPU with gloo.
func preflightMany(cfg *config.Config, lo *runner.LaunchOptions, o Options, est *plan.Estimate, res *Result) error {
	log := o.Log
	d := cfg.Resolved.Distributed
	mgr, err := gpu.Open(o.GPUManager())
	if err != nil {
		return err
	}
	defer func() { _ = mgr.Shutdown() }()
	cands, err := preflight.Candidates(mgr)
	if err != nil || len(cands) == 0 {
		if q := cfg.Resolved.Quantization.Mode; q != "none" {
			return inputErrorf("quantization: %s needs NVIDIA GPUs (bitsandbytes runs on CUDA) and this machine has none: set quantization: none to train here", q)
		}
		if lo.Env == nil {
			lo.Env = map[string]string{}
		}
		lo.Env["CUDA_VISIBLE_DEVICES"] = ""
		log.Info().Int("processes", max(d.NprocPerNode, 1)).Msg("no NVIDIA GPU: training on the CPU with gloo")
		return nil
	}
	world := d.Processes()
	if world == 0 {
		world = len(cands) * d.Nodes
		if len(cfg.GPUs) > 0 {
			world = len(cfg.GPUs) * d.Nodes
		}
	}
	need := plan.PerRank(est, d.Strategy, world)
	chosen, err := preflight.PickMany(cands, cfg.GPUs, d.NprocPerNode, need, o.Force)
	if err != nil {
		return err
	}
	if lo.Env == nil {
		lo.Env = map[string]string{}
	}
	lo.Env["CUDA_VISIBLE_DEVICES"] = preflight.VisibleDevices(chosen)
	lo.GPUs = nil
	for _, c := range chosen {
		lo.GPUs = append(lo.GPUs, c.Index)
	}
	first := chosen[0]
	lo.GPU = &run.GPUInfo{Index: first.Index, Name: first.Name, UUID: first.UUID, MemoryBytes: first.Total}
	res.GPUIndex = first.Index
	log.Info().Str("gpus", preflight.Names(chosen)).Str("per_rank_estimate", gpu.FormatBytes(need)).
		Str("strategy", d.Strategy).Msg("GPU pre-flight")
	return nil
}
