package plan

// PerRank is a first-order estimate of one process's peak memory in a run of world
// processes. DDP replicates everything, so each GPU holds the single-GPU peak. FSDP
// shards the base weights (full_shard), so each rank keeps 1/world of them plus its
// own activations, LoRA weights, gradients and optimizer states (small for LoRA); the
// one layer FSDP gathers at a time for its forward and backward is not counted, which
// docs/distributed.md points out.
func PerRank(e *Estimate, strategy string, world int) uint64 {
	if e == nil {
		return 0
	}
	if strategy != "fsdp" || world <= 1 {
		return e.PeakBytes
	}
	var base uint64
	for _, t := range e.Terms {
		if t.Name == "base_weights" {
			base = t.Bytes
		}
	}
	shard := base / uint64(world)
	if base-shard > e.PeakBytes {
		return e.PeakBytes
	}
	return e.PeakBytes - (base - shard)
}
