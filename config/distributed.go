package config

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Distributed training (docs/distributed.md): one run over several processes, one per
// GPU, launched by torchrun. Absent, a run is one process exactly as before, and its
// resolved.json (and so its run id) does not change.

// Strategies are the values distributed.strategy accepts: DDP replicates the model on
// every GPU; FSDP shards it (a base too large for one GPU).
var Strategies = []string{"ddp", "fsdp"}

// NprocAuto is distributed.nproc_per_node's value meaning "every GPU the run sees".
const NprocAuto = "auto"

// DefaultPort is the rendezvous port when distributed.port is unset.
const DefaultPort = 29500

// maxProcs bounds nodes and processes per node: far above any real allocation, low
// enough that a typo (nodes: 1000000) is refused instead of queued.
const maxProcs = 4096

// DistributedSpec is the `distributed:` section as written.
type DistributedSpec struct {
	// NprocPerNode is "auto" (every GPU visible to the run) or a count.
	NprocPerNode any    `json:"nproc_per_node,omitempty"`
	Nodes        *int   `json:"nodes,omitempty"`
	Strategy     string `json:"strategy,omitempty"`
	Port         *int   `json:"port,omitempty"`
}

// DistributedConfig is the resolved `distributed:` section in resolved.json. It is
// left out entirely for a single-process run.
type DistributedConfig struct {
	// NprocPerNode is the processes per node; 0 means auto (resolved at launch to the
	// GPUs the run sees, 1 on a machine without one).
	NprocPerNode int    `json:"nproc_per_node"`
	Nodes        int    `json:"nodes"`
	Strategy     string `json:"strategy"`
	Port         int    `json:"port"`
}

// Processes is the number of training processes when known from the config alone
// (nodes × nproc_per_node), or 0 when nproc_per_node is auto and only the launch can
// count the GPUs. A single-process run has 1.
func (d *DistributedConfig) Processes() int {
	if d == nil {
		return 1
	}
	return d.Nodes * d.NprocPerNode
}

// Processes is the number of training processes the effective batch is shared over:
// nodes × nproc_per_node, auto counted from the `gpu:` list when one is given, else one
// per node (the trainer then derives grad_accum from the world size torchrun gives it;
// see docs/distributed.md). 1 without a distributed section. It is known once the
// distributed section is resolved, which resolve does before the train section.
func (c *Config) Processes() int {
	return max(c.processes, 1)
}

// resolveDistributed validates the distributed section into r.Distributed.
func (c *Config) resolveDistributed(r *Resolved, errs *Errors) {
	s := c.Spec.Distributed
	if s == nil {
		return
	}
	bad := func(key, format string, a ...any) { *errs = append(*errs, c.at(key, format, a...)) }
	d := &DistributedConfig{Nodes: deref(s.Nodes, 1), Strategy: orDefault(s.Strategy, "ddp"), Port: deref(s.Port, DefaultPort)}
	switch v := s.NprocPerNode.(type) {
	case nil:
		d.NprocPerNode = 0
	case string:
		if v != NprocAuto {
			bad("distributed.nproc_per_node", "must be auto or a process count, got %q", v)
		}
	case float64:
		if v != math.Trunc(v) || v < 1 || v > maxProcs {
			bad("distributed.nproc_per_node", "must be auto or a whole number from 1 to %d, got %v", maxProcs, v)
		} else {
			d.NprocPerNode = int(v)
		}
	default:
		bad("distributed.nproc_per_node", "must be auto or a process count")
	}
	if d.Nodes < 1 || d.Nodes > maxProcs {
		bad("distributed.nodes", "must be between 1 and %d, got %d", maxProcs, d.Nodes)
	}
	if !slices.Contains(Strategies, d.Strategy) {
		bad("distributed.strategy", "must be ddp or fsdp, got %q", d.Strategy)
	}
	if d.Port < 1024 || d.Port > 65535 {
		bad("distributed.port", "must be a TCP port from 1024 to 65535, got %d", d.Port)
	}
	if d.NprocPerNode > 0 && len(c.GPUs) > 0 && d.NprocPerNode != len(c.GPUs) {
		bad("distributed.nproc_per_node", "is %d but gpu lists %d device(s); make them agree or use auto", d.NprocPerNode, len(c.GPUs))
	}
	r.Distributed = d
	switch {
	case d.NprocPerNode > 0:
		c.processes = d.Nodes * d.NprocPerNode
	case len(c.GPUs) > 0:
		c.processes = d.Nodes * len(c.GPUs)
	default:
		c.processes = d.Nodes
	}
}

// resolveGPU reads `gpu:`, one device index or a list of them, into c.GPU (the single
// index, -1 for "pick") and c.GPUs (every listed index).
func (c *Config) resolveGPU(errs *Errors) {
	bad := func(key, format string, a ...any) { *errs = append(*errs, c.at(key, format, a...)) }
	c.GPU = -1
	index := func(key string, v any) (int, bool) {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) || f < 0 || f > math.MaxInt32 {
			bad(key, "must be a device index >= 0, got %v", v)
			return 0, false
		}
		return int(f), true
	}
	switch v := c.Spec.GPU.(type) {
	case nil:
	case []any:
		if len(v) == 0 {
			bad("gpu", "must list at least one device index")
		}
		for i, x := range v {
			key := fmt.Sprintf("gpu[%d]", i)
			n, ok := index(key, x)
			if !ok {
				continue
			}
			if slices.Contains(c.GPUs, n) {
				bad(key, "GPU %d is listed twice", n)
				continue
			}
			c.GPUs = append(c.GPUs, n)
		}
		if len(c.GPUs) == 1 {
			c.GPU = c.GPUs[0]
		}
		if len(v) > 1 && c.Spec.Distributed == nil {
			bad("gpu", "lists %d GPUs but one process uses one; add `distributed: {nproc_per_node: auto}` to train on all of them", len(v))
		}
	default:
		if n, ok := index("gpu", v); ok {
			c.GPU, c.GPUs = n, []int{n}
		}
	}
}

// checkSlurmGPUs refuses a Slurm job that asks for several GPUs per node for a single
// process: the trainer would use one and leave the rest of the allocation idle.
func (c *Config) checkSlurmGPUs(errs *Errors) {
	if c.DriverName != "slurm" || c.Spec.Distributed != nil {
		return
	}
	var o struct {
		GPUs any `json:"gpus"`
	}
	if json.Unmarshal(c.DriverOptions, &o) != nil {
		return
	}
	// A count (4) or TYPE:COUNT (a100:4), as the Slurm driver reads it.
	var g float64
	switch v := o.GPUs.(type) {
	case float64:
		g = v
	case string:
		g, _ = strconv.ParseFloat(v[strings.LastIndex(v, ":")+1:], 64)
	}
	if g > 1 {
		*errs = append(*errs, c.at("driver.slurm.gpus", "is %v but without a distributed: section the trainer runs one process on one GPU; "+
			"add `distributed: {nproc_per_node: auto}` (and nodes: N for several nodes), or set gpus: 1", g))
	}
}
