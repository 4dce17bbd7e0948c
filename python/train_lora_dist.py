"""Several training processes under torchrun (docs/distributed.md).

torchrun starts one trainer per GPU (or per CPU process with gloo) and tells each its
place through RANK, LOCAL_RANK and WORLD_SIZE. Every rank trains; rank 0 alone writes
events, checkpoint markers and the adapter. A signal reaches the ranks at slightly
different moments (torchrun forwards it to each worker in turn), so a rank never acts on
its own flag during training: at every step end the ranks agree, with one all-reduce,
on whether any of them was signalled, and all of them save the same checkpoint and stop
after the same step. No rank is left waiting in a collective the others never reach.
"""

import os
import signal

from train_lora_support import STOP

# Signals the trainer stops on, by number: the all-reduce takes the largest, so every
# rank ends with the same signal name whatever reached it first.
_SIGNALS = {s.value: s.name for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)}


def rank():
    return int(os.environ.get("RANK", "0"))


def local_rank():
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size():
    return int(os.environ.get("WORLD_SIZE", "1"))


def active():
    """Whether this trainer is one of several processes."""
    return world_size() > 1


def is_main():
    return rank() == 0


def backend(cuda):
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if cuda else "gloo"


def _initialized():
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def barrier():
    """Wait for every rank (a no-op for one process)."""
    if active() and _initialized():
        import torch.distributed as dist
        dist.barrier()


def agree_stop():
    """All ranks learn whether any was signalled; each sets STOP.signame to the same name.

    Called by every rank at the same points (each step end, after training); returns
    whether to stop."""
    if not (active() and _initialized()):
        return STOP.signame is not None
    import torch
    import torch.distributed as dist
    mine = signal.Signals[STOP.signame].value if STOP.signame else 0
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([mine], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    agreed = int(flag.item())
    if agreed:
        STOP.signame = _SIGNALS.get(agreed, STOP.signame or "SIGTERM")
    return agreed != 0


def grad_accum(train, world):
    """train.grad_accum for `world` processes. With train.effective_batch_size set and the
    process count known only now (nproc_per_node auto), grad_accum = effective ÷
    (micro-batch × processes); otherwise the value the controller resolved."""
    effective = train.get("effective_batch_size") or 0
    # Unset, the effective batch is micro × grad_accum × processes: grad_accum stands.
    if world <= 1 or not effective or not train.get("effective_batch_size_set"):
        return train["grad_accum"]
    per = train["batch_size"] * world
    if effective % per:
        from train_lora_support import ConfigError
        raise ConfigError(f"train.effective_batch_size {effective} is not a multiple of train.batch_size "
                          f"{train['batch_size']} x {world} processes: choose a multiple of {per}")
    return effective // per


def trainer_args(cuda, strategy):
    """The TrainingArguments that make the HF Trainer distributed: the backend (the Trainer
    would pick NCCL from a CUDA device; on the CPU it must be told gloo), and FSDP2's
    full sharding of the base with each decoder layer wrapped on its own."""
    if not active():
        return {}
    args = {"ddp_backend": backend(cuda)}
    if strategy == "ddp":
        args["ddp_find_unused_parameters"] = False  # LoRA: every adapter weight gets a gradient
    if strategy == "fsdp":
        args["fsdp"] = "full_shard auto_wrap"
        args["fsdp_config"] = {"fsdp_version": 2, "reshard_after_forward": True,
                               "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                               "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False}
    return args


def describe(cfg, cuda):
    """The start event's `distributed` field: the layout of a run with a distributed section
    (also when `auto` found one GPU), None for a plain single-process run."""
    d = cfg.get("distributed")
    if not active() and not d:
        return None
    d = d or {}
    return {"world_size": world_size(), "nodes": int(os.environ.get("GROUP_WORLD_SIZE", d.get("nodes", 1))),
            "nproc_per_node": int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            "strategy": d.get("strategy", "ddp"), "backend": backend(cuda)}
