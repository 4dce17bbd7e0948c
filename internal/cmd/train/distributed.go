package train

import (
	"context"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/plan"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// preflightMany is the GPU pre-flight of a distributed run on this machine: the GPUs
// of `gpu:` or the ones with most free memory, each checked against one rank's
// estimated peak (plan.PerRank: the single-GPU peak for DDP, the sharded base plus
// the rank's own share for FSDP). No GPU: the run trains on the CPU with gloo.
func (o *Options) preflightMany(ctx context.Context, cfg *config.Config, lo *runner.LaunchOptions, est *plan.Estimate) error {
	log := o.Factory.Log
	d := cfg.Resolved.Distributed
	mgr, err := gpu.Open(o.GPUManager())
	if err != nil {
		return cmdutil.Failed(err)
	}
	defer func() { _ = mgr.Shutdown() }()
	cands, err := preflight.Candidates(mgr)
	if err != nil || len(cands) == 0 {
		if q := cfg.Resolved.Quantization.Mode; q != "none" {
			return cmdutil.Invalidf("quantization: %s needs NVIDIA GPUs (bitsandbytes runs on CUDA) and this machine has none: set quantization: none to train here", q)
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
	o.gpuIndex = first.Index
	log.Info().Str("gpus", preflight.Names(chosen)).Str("per_rank_estimate", gpu.FormatBytes(need)).
		Str("strategy", d.Strategy).Msg("GPU pre-flight")
	return nil
}
