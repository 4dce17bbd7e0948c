package run

import "fmt"

// Distributed is how a run of several processes was laid out, as rank 0's trainer
// reports it in its start event: world_size processes over nodes, the strategy (ddp,
// fsdp) and the collective backend (nccl, gloo).
type Distributed struct {
	WorldSize    int    `json:"world_size"`
	Nodes        int    `json:"nodes"`
	NprocPerNode int    `json:"nproc_per_node"`
	Strategy     string `json:"strategy"`
	Backend      string `json:"backend"`
}

// String is the layout as runs, logs and the summary show it: "2×4 ddp/nccl".
func (d *Distributed) String() string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("%d×%d %s/%s", d.Nodes, d.NprocPerNode, d.Strategy, d.Backend)
}
