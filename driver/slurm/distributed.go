package slurm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/loractl/loractl/driver"
)

// Several processes per job (docs/distributed.md): the job holds N nodes with one
// Slurm task each; srun starts one torchrun per node, and the torchruns meet at a
// c10d rendezvous on the allocation's first node. torchrun starts one trainer per GPU
// of its node.

// torchrunSignals are forwarded by torchrun to its workers: SIGUSR1 included, which
// Slurm sends before the time limit (unhandled it would end torchrun at once).
const torchrunSignals = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"

// gpusPerNode is the GPU count each node runs a process on: driver.slurm.gpus (its
// count part) or distributed.nproc_per_node; both set, they must agree.
func gpusPerNode(d *driver.Distributed, o *Options) (int, error) {
	gpus := 0
	if o.GPUs != "" {
		s := string(o.GPUs)
		if i := strings.LastIndex(s, ":"); i >= 0 {
			s = s[i+1:]
		}
		gpus, _ = strconv.Atoi(s)
	}
	switch {
	case gpus == 0 && d.NprocPerNode == 0:
		return 0, fmt.Errorf("distributed.nproc_per_node is auto and driver.slurm.gpus is unset: set driver.slurm.gpus to the GPUs per node (the job asks Slurm for them)")
	case gpus == 0:
		return d.NprocPerNode, nil
	case d.NprocPerNode != 0 && d.NprocPerNode != gpus:
		return 0, fmt.Errorf("distributed.nproc_per_node is %d but driver.slurm.gpus asks for %d per node: make them agree (or use auto)", d.NprocPerNode, gpus)
	}
	return gpus, nil
}

// distributedDirectives replace --gres for a distributed job: N nodes, one task (one
// torchrun) per node, K GPUs per node (the gres type, when given, is kept).
func distributedDirectives(d *driver.Distributed, o *Options, k int) []string {
	gpus := strconv.Itoa(k)
	if s := string(o.GPUs); strings.Contains(s, ":") {
		gpus = s
	}
	return []string{
		"--nodes=" + strconv.Itoa(d.Nodes),
		"--ntasks-per-node=1",
		"--gpus-per-node=" + gpus,
	}
}

// torchrunArgs are the torchrun options before the trainer script. The rendezvous
// endpoint and id are shell variables the script sets at run time, so they are the
// only unquoted words of the trainer line.
func torchrunArgs(d *driver.Distributed, k int) (before []string, endpoint string) {
	return []string{"-m", "torch.distributed.run", "--nnodes", strconv.Itoa(d.Nodes),
		"--nproc-per-node", strconv.Itoa(k), "--rdzv-backend", "c10d", "--max-restarts", "0",
		"--signals-to-handle", torchrunSignals}, `--rdzv-endpoint "$head_node:$rdzv_port" --rdzv-id "$job_id"`
}

// distributedPrologue finds the rendezvous host and port. The port is the configured
// one plus the array task index, so the points of a sweep that share a first node
// do not collide.
func distributedPrologue(d *driver.Distributed) string {
	return fmt.Sprintf(`
# Rendezvous: every node's torchrun meets on the allocation's first node.
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
head_node=${head_node//[^A-Za-z0-9._-]/}
rdzv_port=$((%d + ${array_task_id:-0}))
# NCCL_* and the rest of the submitting environment reach every node (srun --export=ALL).
`, d.Port)
}

// distributedLaunch replaces the single trainer launch: srun starts one torchrun per
// node. srun forwards TERM and USR1 to its tasks; SIGINT it would take as a request
// for status, so INT is passed on as TERM.
const distributedLaunch = `srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 --export=ALL "${trainer[@]}" &`

// distributedOutcome maps rank 0's account to the script's exit status: under torchrun
// a rank's 75 (checkpointed after a signal) comes back as 1, so the requeue decision
// reads the last end event of this attempt instead. Preemption signals the job's steps,
// not this shell: the ranks checkpoint within the grace time and the script then waits
// for Slurm to requeue the job (see docs/distributed.md).
const distributedOutcome = `
# torchrun reports a worker's 75 as 1: rank 0's end event of this attempt decides.
status=$(tail -c +$((ev_start + 1)) "$run_dir/events.jsonl" 2>/dev/null | grep '"type": *"end"' | tail -n1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
case "$status" in
  completed) rc=0 ;;
  interrupted)
    rc=75
    if [ -z "$got" ]; then
      # Slurm signalled the job's steps itself (preemption, a time limit): it requeues or
      # ends the job once its grace time is over. Ending the batch script first would
      # complete the job before Slurm can requeue it.
      echo "loractl: the trainer checkpointed after Slurm signalled it; waiting for Slurm to requeue or end the job"
      sleep 900 &
      wait $!
    fi
    ;;
esac
`

// distributedEventsMark records where this attempt's events start.
const distributedEventsMark = `ev_start=$(stat -c %s "$run_dir/events.jsonl" 2>/dev/null || echo 0)
`
