package runner

import (
	"strconv"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver"
)

// TorchrunSignals are the signals torchrun forwards to every worker: its defaults plus
// SIGUSR1, Slurm's warning before a time limit or preemption, on which the trainer
// checkpoints (unhandled, SIGUSR1 would kill torchrun outright).
const TorchrunSignals = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"

// ShutdownGrace is how long torchrun lets its workers finish after forwarding a
// signal before it kills them (TORCH_ELASTIC_SHUTDOWN_TIMEOUT, default 30 s): long
// enough for every rank to save its part of a checkpoint.
const ShutdownGrace = "600"

// distributedTask turns the trainer's argv into a distributed launch. Local and
// container drivers run `python -m torch.distributed.run --standalone` (one node, a
// free rendezvous port); Slurm renders its own srun + torchrun line around the plain
// argv from task.Distributed, so the command stays the trainer's there. pinned, when
// > 0, replaces auto (a reproduction keeps the original world size).
func distributedTask(task *driver.Task, d *config.DistributedConfig, driverName string, gpus []int, pinned int) {
	if d == nil {
		return
	}
	nproc := d.NprocPerNode
	switch {
	case nproc == 0 && pinned > 0:
		nproc = pinned
	case nproc == 0: // auto: the GPUs the pre-flight chose; one process on the CPU
		nproc = max(len(gpus), 1)
	}
	task.Distributed = &driver.Distributed{Nodes: d.Nodes, NprocPerNode: d.NprocPerNode, Port: d.Port, Strategy: d.Strategy}
	task.Env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = ShutdownGrace
	if driverName == "slurm" {
		return
	}
	task.Distributed.NprocPerNode = nproc
	cmd := []string{task.Command[0], "-m", "torch.distributed.run", "--standalone",
		"--nproc-per-node", strconv.Itoa(nproc), "--signals-to-handle", TorchrunSignals}
	task.Command = append(cmd, task.Command[1:]...)
}
