#!/usr/bin/env python3
"""loractl's trainer: LoRA / QLoRA fine-tuning of a causal LM on chat JSONL with PEFT + TRL.

    python train_lora.py --config RUN_DIR/resolved.json --run-dir RUN_DIR [--resume auto|PATH]

docs/trainer-contract.md is the contract with the controller: what resolved.json holds, the
events written to RUN_DIR/events.jsonl, the checkpoint layout and the exit codes
(0 completed, 1 failed, 2 invalid config or arguments, 75 interrupted and resumable).
train_lora_support.py (same directory) holds the parts that need no torch.

Signals (SIGTERM, SIGINT, SIGUSR1) only ever set a flag once training has begun: the step
in progress finishes, a checkpoint is saved and marked complete, and the trainer exits 75.
Repeated signals change nothing, so a second Ctrl-C cannot corrupt the checkpoint being
written; the controller's last resort is SIGKILL, which at worst leaves an incomplete
checkpoint that resume ignores. Before the first training step (loading, tokenizing, the
"before" evaluation) there is nothing new to save, so a signal stops the trainer at once
with exit 75 and no new checkpoint; the run stays resumable from where it started.
"""

import argparse
import contextlib
import importlib.util
import math
import os
import platform
import shutil
import sys
import time
import traceback

# The support module sits beside this file; under `python -I` or -P the script directory
# is not on sys.path by itself.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_lora_support import (  # noqa: E402
    CHECKPOINT_PREFIX, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, STOP,
    ConfigError, Events, Interrupted, TrainerError, apply_micro_batch, choose_resume, disk_full_message, file_sha256,
    install_signal_handlers, load_config, mark_complete, prune_checkpoints, read_chat_jsonl, read_marker,
    remove_checkpoint, resolve_kernels, unweight_mask,
    weight0_turns,
)
from train_lora_support import exit_now, with_defaults, write_json_atomic  # noqa: E402
import eval_cache  # noqa: E402
import task_eval  # noqa: E402
import task_metrics  # noqa: E402
import train_lora_dist as dist  # noqa: E402

# prepare_data hands the tokenized rows to Arrow in chunks of at most this many rows or tokens,
# so a large dataset is never held whole as Python lists (about 50 bytes a token).
CHUNK_ROWS = 10_000
CHUNK_TOKENS = 4_000_000


def main(argv=None):
    install_signal_handlers()
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description="loractl's LoRA/QLoRA trainer (see docs/trainer-contract.md)")
    parser.add_argument("--config", required=True, help="RUN_DIR/resolved.json")
    parser.add_argument("--run-dir", required=True, help="directory for events, checkpoints and the adapter")
    parser.add_argument("--resume", help='"auto" (newest complete checkpoint, else fresh) or a checkpoint path')
    args = parser.parse_args(argv)  # exits 2 on bad arguments
    run_dir = os.path.abspath(args.run_dir)
    if not os.path.isdir(run_dir):
        print(f"train_lora: --run-dir {args.run_dir}: no such directory", file=sys.stderr)
        return EXIT_INVALID
    # Under torchrun rank 0 alone writes events; the others' warnings go to stderr (train.log).
    events_path = os.path.join(run_dir, "events.jsonl") if dist.is_main() else os.devnull
    run = Run(args, run_dir, Events(events_path))
    try:
        return run.execute()
    except ConfigError as e:
        return run.fail(e, EXIT_INVALID, "ConfigError")
    except TrainerError as e:
        return run.fail(e, EXIT_FAILED, hint=e.hint)
    except Interrupted as e:
        return run.interrupted_early(str(e))
    except Exception as e:  # noqa: BLE001 - every failure must reach events.jsonl
        full = disk_full_message(e, run_dir)
        if full:  # say so, not torch's "unexpected pos 40896 vs 40784"
            return run.fail(TrainerError(full).with_traceback(e.__traceback__), EXIT_FAILED, "DiskFull")
        return run.fail(e, EXIT_FAILED, hint=failure_hint(e))


def overlap_setup(cuda):
    """Whether build() tokenizes while the model loads: with CUDA, where loading copies the
    weights from disk to the GPU (waits outside the GIL); not on the CPU, where the weights
    are mapped, not read (0.15 s for 252M parameters), and a thread only contends for the
    GIL (bench/train: load + tokenize 1.12× slower overlapped). LORACTL_OVERLAP_SETUP=1 or
    0 decides instead."""
    forced = os.environ.get("LORACTL_OVERLAP_SETUP", "")
    return forced == "1" if forced in ("0", "1") else cuda


class Background:
    """fn run in a daemon thread: result() waits for it and returns its value or raises its
    exception; seconds is how long it ran. A daemon, so a run that fails meanwhile (its
    model, a signal) exits without waiting for it."""

    def __init__(self, fn):
        import threading
        self.seconds = 0.0
        self._done = threading.Event()
        self._value = self._error = None
        threading.Thread(target=self._run, args=(fn,), name="tokenize", daemon=True).start()

    def _run(self, fn):
        start = time.monotonic()
        try:
            self._value = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller of result()
            self._error = e
        finally:
            self.seconds = time.monotonic() - start
            self._done.set()

    def result(self):
        while not self._done.wait(0.5):  # a timed wait: signal handlers run in between
            pass
        if self._error is not None:
            raise self._error
        return self._value


def import_light():
    """The first of the heavy imports: what the pre-flight's token count also needs, which
    warm_start.py runs it after (transformers' import structure, ~0.9 s of it)."""
    import transformers  # noqa: F401


def import_heavy():
    """The trainer's heavy imports (torch comes with them), which build() times as
    "imports" and warm_start.py does while the pre-flight runs. None of them starts CUDA:
    CUDA_VISIBLE_DEVICES may still change after them."""
    # torch before datasets, as resolve_device imports it in a fresh trainer: imported
    # after datasets, PEFT's isinstance checks against its tuner layers' ABC (in
    # get_peft_model) took 0.2 s more in SFTTrainer's construction (measured on the CPU).
    import torch  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    import transformers.trainer_utils  # noqa: F401
    import trl  # noqa: F401
    from trl import SFTTrainer  # noqa: F401


def read_losses_before(run_dir):
    """The base model's per-example eval losses saved by an earlier attempt, or None."""
    import json
    try:
        with open(os.path.join(run_dir, "eval", ".losses-before.json"), encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, list) else None


@contextlib.contextmanager
def rng_preserved():
    """Run the block without moving the random number generators: the evaluation before
    training draws from torch's generator (each DataLoader iterator takes a seed), so
    training would otherwise depend on whether the base model's evaluation was computed
    or reused from the cache."""
    import random

    import numpy as np
    import torch
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def device_kind(device_name):
    """The device's kind without its index ("cuda:1 NVIDIA H200" -> "NVIDIA H200"): the
    same evaluation on another GPU of the same kind gives the same numbers."""
    head, _, rest = device_name.partition(" ")
    return rest if head.startswith("cuda:") and rest else device_name


def failure_hint(exc):
    text = f"{type(exc).__name__}: {exc}".lower()
    if "out of memory" in text:
        return ("CUDA out of memory: lower train.batch_size (raise train.grad_accum to keep the effective batch), "
                "lower train.max_length, turn on train.gradient_checkpointing, use quantization.mode 4bit, "
                "or lower train.eval_batch_size if it failed while evaluating")
    if isinstance(exc, OSError) and any(w in text for w in ("offline", "huggingface", "connect", "repo")):
        return ("the model was not found locally: give a local directory as model.name_or_path, or download it "
                "into the Hugging Face cache (HF_HOME) first when HF_HUB_OFFLINE=1")
    return ""


class Run:
    """One attempt of one run: set up, train, evaluate, save, report."""

    def __init__(self, args, run_dir, events):
        self.args = args
        self.run_dir = run_dir
        self.events = events
        self.ckpt_root = os.path.join(run_dir, "checkpoints")
        self.config_sha256 = None
        self.resume_path = None
        self.resume_step = 0
        self.step = 0
        self.eval_before = None
        self.eval_after = None
        self.saved_steps = set()  # checkpoints this attempt completed (or resumed from)
        self.save_total_limit = 0
        self.cfg = None  # the validated resolved.json
        self.metrics = []  # task_metrics.Metric of eval.metrics (judge left out)
        self.loss_rows = None  # per-example eval losses while an evaluation runs, else None
        self.losses_before = None  # per-example eval losses of the base model
        self.losses_after = None  # ... and of the adapter that becomes adapter/
        self.selected = None  # (step, value) chosen by train.select best
        self.cache = None  # eval_cache.BaseEvalCache: the base model's evaluation shared by runs
        self.timings = {}  # seconds per phase of this attempt, reported in the end event

    # ---- outcomes

    def fail(self, exc, code, error_type=None, hint=""):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        print(f"train_lora: {exc}" if code == EXIT_INVALID else tb, file=sys.stderr, flush=True)
        self.events.flush_pending()
        self.events.emit("error", error_type=error_type or type(exc).__name__, message=str(exc),
                         traceback="" if code == EXIT_INVALID else tb[-4000:], hint=hint)
        self.events.emit("end", status="failed", step=self.step, eval_loss_before=self.eval_before,
                         eval_loss_after=None, metrics={})
        return code

    def interrupted_early(self, signame):
        self.events.flush_pending()
        self.events.emit("end", status="interrupted", step=self.step, signal=signame,
                         eval_loss_before=self.eval_before, eval_loss_after=None, metrics={})
        print(f"train_lora: interrupted by {signame} before training began; nothing new to save", file=sys.stderr)
        return EXIT_INTERRUPTED

    @contextlib.contextmanager
    def timed(self, phase):
        """Add the block's wall time to timings[phase] (bench/train prints them)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.monotonic() - start, 3)

    # ---- the run

    def execute(self):
        cfg, unknown = load_config(self.args.config)
        apply_micro_batch(cfg, os.environ)
        self.config_sha256 = file_sha256(self.args.config)
        # Regexes, schema files and python scorers are checked before the model loads.
        self.metrics = task_metrics.build_metrics(cfg["eval"]["metrics"])
        for message in unknown:
            self.events.warn("unknown_config_key", message)
        self.resume_path, marker = choose_resume(self.run_dir, self.args.resume, self.events.warn)
        if marker:
            self.resume_step = self.step = marker["step"]
            self.eval_before = marker.get("eval_loss_before")
            self.saved_steps.add(self.resume_step)
            if marker.get("resolved_sha256") not in (None, self.config_sha256):
                self.events.warn("config_changed", f"{self.args.config} differs from the config checkpoint "
                                 f"{marker['step']} was trained with")
        self.cfg = cfg
        setup = Setup(self, cfg)
        trainer = setup.build()
        return self.train(setup, trainer)

    def train(self, setup, trainer):
        import torch

        cb = setup.callback
        self.events.start(
            versions=setup.versions(), device=setup.device_name, precision=setup.precision,
            trainable_params=setup.trainable, total_params=setup.total, total_steps=setup.total_steps,
            train_examples=setup.train_examples, eval_examples=setup.eval_examples,
            assistant_only_loss=setup.assistant_only_loss, resume_from=self.resume_path or "",
            resume_step=self.resume_step, pid=os.getpid(),
            batch_size=setup.cfg["train"]["batch_size"], grad_accum=setup.cfg["train"]["grad_accum"],
            attn_implementation=setup.attn or "default", padding_free=setup.padding_free, liger=setup.liger,
            **({"distributed": setup.distributed} if setup.distributed else {}),
        )
        if setup.has_eval and not dist.active():  # ranks would each decide alone: no cache
            self.cache = eval_cache.BaseEvalCache.from_env(self.cfg, setup.versions(), device_kind(setup.device_name),
                                                           setup.precision, self.run_dir)
        if setup.has_eval and self.resume_path is None:
            with self.timed("eval_before"):
                self._evaluate_before(trainer, cb)
            if self.losses_before is not None and dist.is_main():  # kept for an attempt that resumes
                os.makedirs(os.path.join(self.run_dir, "eval"), exist_ok=True)
                write_json_atomic(os.path.join(self.run_dir, "eval", ".losses-before.json"), self.losses_before)
        elif setup.has_eval:
            self.losses_before = read_losses_before(self.run_dir)
        if self.resume_path:
            setup.restore_token_count(trainer, self.resume_path)
        if self.resume_path and self.resume_step >= setup.total_steps:
            # Resumed at the end (say a requeue after the last save): the Trainer would take
            # one step past max_steps, so only load the weights and go on to the evaluation.
            trainer._load_from_checkpoint(self.resume_path)
            metrics = {}
        else:
            with self.timed("train"):
                out = trainer.train(resume_from_checkpoint=self.resume_path)
            self.step = trainer.state.global_step
            metrics = dict(out.metrics)
        if dist.active() and dist.agree_stop():
            self._save_now(trainer, cb)  # a signal after the last step's agreement
        if STOP.signame is None and setup.has_eval and self.cfg["train"]["select"] == "best":
            self._select_best(trainer, cb)
        if STOP.signame is None and setup.has_eval:
            with self.timed("eval_after"):
                self.eval_after = self._evaluate_after(trainer, cb)
        if dist.active() and dist.agree_stop():
            self._save_now(trainer, cb)
        if STOP.signame is not None:
            return self._end_interrupted(metrics)
        with self.timed("save_adapter"):
            adapter = self._save_adapter(trainer)
        if setup.has_eval:
            # One process writes the task evaluation; the others wait for it. With FSDP every
            # forward is a collective, so rank 0 cannot generate alone: loractl eval can.
            if dist.active() and (self.cfg.get("distributed") or {}).get("strategy") == "fsdp":
                self.events.warn("task_eval_skipped", "the end-of-run task evaluation does not run under FSDP: "
                                 "evaluate the adapter with `loractl eval RUN`")
            elif dist.is_main():
                with self.timed("task_eval"):
                    self._task_eval(setup, trainer)
            dist.barrier()
        end = dict(status="completed", step=self.step, eval_loss_before=self.eval_before,
                   eval_loss_after=self.eval_after, adapter_path=adapter, metrics=metrics, timings=self.timings)
        if self.selected is not None:
            end["checkpoint"] = f"{CHECKPOINT_PREFIX}{self.selected[0]}"
        if torch.cuda.is_available():
            end["peak_memory"] = {"allocated_bytes": torch.cuda.max_memory_allocated(),
                                  "reserved_bytes": torch.cuda.max_memory_reserved()}
        self.events.emit("end", **end)
        return EXIT_OK

    def _evaluate_before(self, trainer, cb):
        """The base model's evaluation before training, from the cache when another run with
        the same base model and eval set stored it (eval_cache.py), else computed (and
        stored). The eval event is the same either way; a base_eval_cache event says which."""
        def compute():
            cb.phase = "before"
            with rng_preserved():
                metrics = trainer.evaluate()
            cb.phase = None
            self.eval_before = metrics["eval_loss"]
            return metrics

        if self.cache is None or not self._cache_usable():
            compute()
            return
        with self.cache.locked("before"):
            cached, problem = self.cache.load_before()
            if problem:
                self.events.warn("base_eval_cache_unreadable", f"{problem}: evaluating the base model again")
            if cached is not None:
                self.eval_before, self.losses_before = cached["metrics"]["eval_loss"], cached.get("losses")
                cb.emit_eval("before", trainer.state.global_step, cached["metrics"])
                status = "reused"
            else:
                metrics = compute()
                status, cached = ("stored" if self._cache_store(self.cache.store_before, metrics, self.losses_before)
                                  else "not_stored"), {}
        self.events.emit("base_eval_cache", phase="before", status=status, key=self.cache.key,
                         stored_by=cached.get("stored_by") or os.path.basename(self.run_dir))

    def _cache_usable(self):
        """Whether the cache directory can be used; a run never fails for its cache (a
        remote driver may not see the controller's path): it warns once and goes without."""
        try:
            os.makedirs(self.cache.dir, exist_ok=True)
            with self.cache.locked("probe"):
                pass
            return True
        except OSError as e:
            self.events.warn("base_eval_cache_unavailable", f"the base model's evaluation cache {self.cache.dir} "
                             f"cannot be used ({e}): evaluating without it")
            self.cache = None
            return False

    def _cache_store(self, store, *args):
        try:
            store(*args)
            return True
        except (OSError, ValueError) as e:  # ValueError: a NaN loss cannot be written as JSON
            self.events.warn("base_eval_cache_not_stored", f"the base model's evaluation was not cached: {e}")
            return False

    def _base_replies(self, setup):
        """The base model's replies for the task evaluation from the cache, generating (and
        storing) them when absent; None without a cache."""
        if self.cache is None or not self._cache_usable():
            return None
        examples, batch = setup.task_examples, task_eval.generation_batch(self.cfg["train"]["eval_batch_size"])
        gen_key = eval_cache.generation_key(self.cfg["eval"], examples, batch)
        with self.cache.locked(f"replies-{gen_key}"):
            replies, stored_by, problem = self.cache.load_replies(gen_key, len(examples))
            if problem:
                self.events.warn("base_eval_cache_unreadable", f"{problem}: generating the base replies again")
            status = "reused"
            if replies is None:
                sides = task_eval.generate_and_score(
                    self.trainer.model, setup.tokenizer, examples, self.cfg["eval"], [],
                    self.cfg["train"]["eval_batch_size"], events=self.events,
                    should_stop=lambda: STOP.signame is not None, sides=("base",))
                replies, stored_by = sides["base"], os.path.basename(self.run_dir)
                status = "stored" if self._cache_store(self.cache.store_replies, gen_key, replies) else "not_stored"
        self.events.emit("base_eval_cache", phase="generate", status=status, key=self.cache.key,
                         stored_by=stored_by or "")
        return {"base": replies}

    def _select_best(self, trainer, cb):
        """train.select best: load the best evaluated checkpoint's weights into the model
        (its evaluation stands as "after"), record the choice in a select event."""
        if cb.best is None:
            self.events.warn("select_best_none", "train.select is best but no evaluation during training gave a "
                             f"{cb.select_by} value: the last weights become the adapter")
            return
        step, value = cb.best
        self.selected = (step, value)
        if step != self.step:
            trainer._load_from_checkpoint(os.path.join(self.ckpt_root, f"{CHECKPOINT_PREFIX}{step}"))
            cb.last_eval = (step, cb.best_eval[0]) if cb.best_eval else None
            cb.last_losses = cb.best_eval[1] if cb.best_eval else None
        self.events.emit("select", checkpoint=f"{CHECKPOINT_PREFIX}{step}", by=cb.select_by, value=value, step=step)

    def _evaluate_after(self, trainer, cb):
        # Training often ends on an evaluation step (the last epoch, or a multiple of
        # eval_steps): report that result as "after" instead of evaluating twice. With
        # train.select best the best checkpoint's evaluation is the "after" one.
        step = self.selected[0] if self.selected else self.step
        if cb.last_eval is not None and cb.last_eval[0] == step:
            metrics = cb.last_eval[1]
            cb.emit_eval("after", step, metrics)
            self.losses_after = cb.last_losses
            return metrics.get("eval_loss")
        cb.phase = "after"
        trainer.state.global_step = self.step  # so the event carries the step when nothing was trained
        return trainer.evaluate()["eval_loss"]

    def _task_eval(self, setup, trainer):
        """The end-of-run task evaluation: example_losses.json from the before and after
        evaluations, then, with eval.generate, the base and adapter replies to the chosen
        eval prompts, scored, in eval/generations.jsonl. A stop signal here ends the
        evaluation early (the adapter is already saved); the run still completes."""
        out_dir = os.path.join(self.run_dir, "eval")
        before, after, indices = self.losses_before, self.losses_after, setup.eval_loss_indices
        if indices is not None and before is not None and after is not None \
                and len(before) == len(after) == len(indices):
            task_eval.write_example_losses(out_dir, before, after, indices)
        elif indices is not None:
            self.events.warn("example_losses_missing", "per-example eval losses are incomplete "
                             f"({len(before or [])} before, {len(after or [])} after, {len(indices)} examples): "
                             "eval/example_losses.json is not written")
        if not self.cfg["eval"]["generate"]:
            return
        if not setup.task_examples:
            self.events.warn("no_task_examples", "no eval example has an assistant turn after a prompt: "
                             "nothing to generate")
            return
        try:
            given = self._base_replies(setup)
            task_eval.run(trainer.model, setup.tokenizer, setup.task_examples, self.cfg["eval"], self.metrics,
                          out_dir, self.cfg["train"]["eval_batch_size"], events=self.events,
                          should_stop=lambda: STOP.signame is not None, rel_to=self.run_dir, given=given)
        except task_eval.StopEvaluation:  # the run completes; loractl eval can redo the evaluation
            self.events.warn("task_eval_interrupted", "stopped during the task evaluation: the adapter is saved; "
                             "eval/generations.jsonl is not written (run loractl eval on this run)")

    def checkpoint_scores(self):
        """eval.at_checkpoints: the adapter's mean task metrics on the eval prompts now,
        as {"task/<metric>": mean} for the eval event."""
        sides = task_eval.generate_and_score(self.trainer.model, self.setup.tokenizer, self.setup.task_examples,
                                             self.cfg["eval"], self.metrics, self.cfg["train"]["eval_batch_size"],
                                             sides=("adapter",))
        return {f"task/{k}": v for k, v in task_eval.mean_scores(sides["adapter"], self.metrics).items()}

    def _save_now(self, trainer, cb):
        """Every rank saves the checkpoint of the current step, unless it is complete already."""
        if self.step in self.saved_steps:
            return
        trainer._save_checkpoint(trainer.model, trial=None)
        cb.on_save(trainer.args, trainer.state, trainer.control)

    def _end_interrupted(self, metrics):
        ckpt = os.path.join(self.ckpt_root, f"{CHECKPOINT_PREFIX}{self.step}")
        if read_marker(ckpt) is None:
            raise TrainerError(f"interrupted by {STOP.signame} but checkpoint {ckpt} is not complete")
        self.events.emit("end", status="interrupted", step=self.step, signal=STOP.signame,
                         eval_loss_before=self.eval_before, eval_loss_after=None, metrics=metrics)
        print(f"train_lora: interrupted by {STOP.signame}; resume from {ckpt}", file=sys.stderr)
        return EXIT_INTERRUPTED

    def _save_adapter(self, trainer):
        """Write RUN_DIR/adapter via a temporary directory so it appears whole or not at all."""
        final = os.path.join(self.run_dir, "adapter")
        # Under torchrun every rank takes part in save_model (FSDP gathers the sharded
        # weights) and rank 0 writes, so the ranks must agree on the directory.
        tmp = f"{final}.tmp-{'dist' if dist.active() else os.getpid()}"
        if dist.is_main():
            shutil.rmtree(tmp, ignore_errors=True)
        dist.barrier()
        trainer.save_model(tmp)  # adapter_config.json, adapter_model.safetensors, the tokenizer
        dist.barrier()
        if not dist.is_main():
            return final
        old = f"{final}.old-{os.getpid()}"
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final


class Setup:
    """Everything before training: device and precision, data, model, LoRA, the SFTTrainer."""

    def __init__(self, run, cfg, adapter=None, eval_rows=None):
        # Evaluation only (eval_task.py): the trained adapter at `adapter` is loaded instead
        # of a new one, and eval_rows (when given) replace the run's eval set.
        self.adapter, self.eval_rows = adapter, eval_rows
        run.cfg = cfg
        self.run = run
        self.cfg = with_defaults(cfg)
        self.events = run.events
        # Kernel choices: resolve_device decides them once the device is known.
        self.attn, self.padding_free, self.liger = None, False, False

    def versions(self):
        import accelerate
        import datasets
        import peft
        import torch
        import transformers
        import trl
        return {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__,
                "accelerate": accelerate.__version__, "datasets": datasets.__version__}

    def resolve_device(self):
        """Refuse impossible device/precision/quantization combinations before loading anything."""
        import torch
        t, q = self.cfg["train"], self.cfg["quantization"]
        self.cuda = torch.cuda.is_available()
        if self.cuda and dist.active():
            torch.cuda.set_device(dist.local_rank())  # torchrun's LOCAL_RANK: one GPU per process
        self.distributed = dist.describe(self.cfg, self.cuda)
        if q["mode"] != "none" and not self.cuda:
            raise ConfigError(f"quantization.mode {q['mode']} (QLoRA) needs a CUDA GPU and this machine has none: "
                              "set quantization.mode to none to train on the CPU")
        bf16_ok = self.cuda and torch.cuda.is_bf16_supported()
        precision = t["precision"]
        if precision == "auto":
            precision = ("bf16" if bf16_ok else "fp16") if self.cuda else "fp32"
        if precision == "fp16" and not self.cuda:
            raise ConfigError("train.precision fp16 needs a CUDA GPU: use fp32 (or auto) on the CPU")
        if precision == "bf16" and self.cuda and not bf16_ok:
            raise ConfigError("train.precision bf16: this GPU does not support bf16; use fp16 or auto")
        self.precision = precision
        self.device_name = f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}" if self.cuda else "cpu"
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
        import importlib.util

        def installed(name):
            return importlib.util.find_spec(name) is not None
        self.attn, self.padding_free, self.liger = resolve_kernels(t, self.cuda, installed)
        if q["mode"] != "none":
            if importlib.util.find_spec("bitsandbytes") is None:
                raise TrainerError("quantization needs the bitsandbytes package, which is not installed",
                                   hint="install the GPU extras: LORACTL_GPU_EXTRAS=1 scripts/setup-python.sh")

    def check_names(self):
        """Optimizer and scheduler names are checked against transformers' lists before
        the model is loaded, rather than by SFTConfig afterwards."""
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames
        t = self.cfg["train"]
        for key, enum in (("optim", OptimizerNames), ("scheduler", SchedulerType)):
            known = [e.value for e in enum]
            if t[key] not in known:
                raise ConfigError(f"train.{key}: unknown name {t[key]!r}; known: {', '.join(known)}")

    def load_data(self):
        """The train and eval rows (read_chat_jsonl's dicts), split as before: data.eval_split
        picks the same rows as datasets' train_test_split of the whole file with the run's seed."""
        from datasets import Dataset
        d, t = self.cfg["data"], self.cfg["train"]
        if self.eval_rows is not None:
            train, evalset = list(self.eval_rows), list(self.eval_rows)
        else:
            train = read_chat_jsonl(d["train"])
            evalset = read_chat_jsonl(d["eval"]) if d["eval"] else None
        if d["eval_split"] > 0 and self.eval_rows is None:
            # Split row numbers, not rows: the rows never go through an Arrow table (see prepare_data).
            try:
                parts = Dataset.from_dict({"row": list(range(len(train)))}).train_test_split(
                    test_size=d["eval_split"], seed=t["seed"], shuffle=True)
            except ValueError as e:  # one side would be empty
                raise ConfigError(f"data.eval_split {d['eval_split']}: the {len(train)} example(s) of {d['train']} are "
                                  "too few to split into a training and an eval set: use a data.eval file or more "
                                  f"examples ({e})") from None
            train, evalset = [train[i] for i in parts["train"]["row"]], [train[i] for i in parts["test"]["row"]]
        if self.adapter and evalset is not None:
            train = evalset[:1]  # evaluation only: nothing is trained, but SFTTrainer wants a training set
        self.weight0_train, self.weight0_eval = weight0_turns(train), weight0_turns(evalset or [])
        self.weight0 = self.weight0_train + self.weight0_eval
        if evalset is None:
            self.events.warn("no_eval_set", "no data.eval and no data.eval_split: the run cannot report whether "
                             "the adapter improved the eval loss")
        self.train_examples, self.eval_examples = len(train), len(evalset) if evalset is not None else 0
        self.has_eval = evalset is not None
        e = self.cfg["eval"]
        for key, on in (("select", t["select"] == "best"), ("early_stopping_patience", t["early_stopping_patience"] > 0)):
            if on and not self.has_eval:
                raise ConfigError(f"train.{key}: needs an eval set to compare checkpoints on: "
                                  "set data.eval or data.eval_split")
        # The prompts of the task evaluation, chosen now: prepare_data consumes the rows.
        self.task_examples = []
        if self.has_eval and (e["generate"] or e["at_checkpoints"]):
            chosen = task_eval.choose_indices(len(evalset), e["max_examples"], t["seed"])
            self.task_examples = task_eval.examples_from_rows(evalset, chosen)
        return train, evalset

    def load_tokenizer(self):
        from transformers import AutoTokenizer
        m = self.cfg["model"]
        return AutoTokenizer.from_pretrained(m["name_or_path"], revision=m["revision"] or None,
                                             trust_remote_code=m["trust_remote_code"])

    def load_weights(self):
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        m, q = self.cfg["model"], self.cfg["quantization"]
        common = {"revision": m["revision"] or None, "trust_remote_code": m["trust_remote_code"]}
        kwargs = dict(common, dtype=self.dtype)
        if self.attn:
            kwargs["attn_implementation"] = self.attn
        if q["mode"] != "none":
            compute = torch.bfloat16 if self.precision == "bf16" else torch.float16
            # FSDP shards parameters of one dtype: QLoRA's packed 4-bit weights are then stored
            # in the compute dtype (bitsandbytes' FSDP support) so they can be sharded.
            fsdp = (self.cfg.get("distributed") or {}).get("strategy") == "fsdp"
            storage = {"bnb_4bit_quant_storage": compute} if fsdp else {}
            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q["quant_type"],
                                   bnb_4bit_use_double_quant=q["double_quant"], bnb_4bit_compute_dtype=compute,
                                   **storage)
                if q["mode"] == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
            kwargs["device_map"] = {"": torch.cuda.current_device()}
        return AutoModelForCausalLM.from_pretrained(m["name_or_path"], **kwargs)

    def decide_assistant_only(self, tokenizer):
        """Effective assistant-only loss: on when the template has {% generation %} markers or
        TRL ships a training template for it (Llama 3, Qwen, Gemma, Phi-3, ...)."""
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers
        want = self.cfg["train"]["assistant_only_loss"]
        name = self.cfg["model"]["name_or_path"]
        if not tokenizer.chat_template:
            raise TrainerError(f"the tokenizer of {name} has no chat template, which chat (messages) data needs",
                               hint="use an instruct/chat model, or add a chat_template to its tokenizer_config")
        if want is False:
            return False
        supported = has_generation_markers(tokenizer.chat_template)
        if not supported:
            try:
                supported = get_training_chat_template(tokenizer) is not None
            except ValueError:
                supported = False
        if supported:
            return True
        if want is True:
            raise ConfigError(f"train.assistant_only_loss is true but the chat template of {name} has no "
                              "{% generation %} markers (and TRL has no training template for it): set it to "
                              "auto or false, or add the markers around assistant content")
        self.events.warn("no_generation_markers", f"the chat template of {name} has no {{% generation %}} markers: "
                         "training on the whole sequence (prompts included), not only the assistant turns")
        return False

    def prepare_data(self, rows, tokenizer, name="train"):
        """The dataset as SFTTrainer is given it: the rows tokenized here, from the dicts
        read_chat_jsonl returns, with the same apply_chat_template call SFTTrainer makes for
        conversational data (tokenize=True, return_dict=True, the training template TRL would
        swap in, return_assistant_tokens_mask=assistant-only loss; no extra special tokens or
        EOS: the template has them), except that the row's `tools` go to tools= and the
        messages keep their tool-calling and reasoning keys. An Arrow table of the raw rows
        would merge their shapes (tool calls whose arguments are a string in one row and an
        object in another, keys in some messages only, nulls added to the rest), and TRL
        passes tools=None unless a `tools` column exists.

        A dataset with `input_ids` counts as processed for TRL: it builds the labels from
        `assistant_masks` (-100 where the mask is 0; labels = input_ids without one),
        truncates, drops fully masked rows and packs as usual, for training and evaluation
        alike. With assistant-only loss the spans of weight-0 assistant turns are zeroed in
        the mask, and a `messages` column of role and content only is kept because SFTTrainer
        refuses assistant_only_loss unless the first row looks conversational; the Trainer
        drops it from the batches. Without assistant-only loss every token is trained and
        weights cannot apply (see build).

        With train.packing TRL does not drop anything: a row with no label within the first
        max_length tokens would be packed as tokens that carry no loss (a bin of them trains
        on nothing). Those rows are left out here, with the labels_truncated_away warning that
        check_dropped gives without packing. `name` is "train" or "eval".

        Memory: the rows go to Arrow in chunks (CHUNK_ROWS rows or CHUNK_TOKENS tokens) that
        are concatenated, so only one chunk is ever held as Python lists; input_ids are int32
        and the mask int8 (what datasets would infer is int32 and int64; the labels TRL builds
        are the same). `rows` is consumed: each entry is set to None once tokenized."""
        from datasets import Dataset, Features, List, Value, concatenate_datasets
        aol = self.assistant_only_loss
        t = self.cfg["train"]
        max_length, packing = t["max_length"], t["packing"]
        template = None
        if aol:
            from trl.chat_template_utils import get_training_chat_template, has_generation_markers
            template = None if has_generation_markers(tokenizer.chat_template) else get_training_chat_template(tokenizer)
            features = Features({"messages": List({"role": Value("string"), "content": Value("string")}),
                                 "input_ids": List(Value("int32")), "assistant_masks": List(Value("int8"))})
        else:
            features = Features({"input_ids": List(Value("int32"))})
        parts, chunk, chunk_tokens, lost, total = [], [], 0, 0, len(rows)
        kept_rows = []  # rows that keep a label: the order of the per-example eval losses
        for i in range(total):
            row, rows[i] = rows[i], None
            try:
                enc = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                    return_assistant_tokens_mask=aol, chat_template=template,
                                                    tools=row["tools"])
            except Exception as e:  # a template may raise anything (jinja2 errors, its own raise_exception)
                text = str(e).strip().splitlines()
                raise TrainerError(f"{row['where']}: the chat template cannot render this example: "
                                   f"{text[0] if text else type(e).__name__}",
                                   hint="run loractl data check --tokenizer on the data, which reports "
                                        "chat_template_error per line") from e
            ids = enc["input_ids"]
            if self.padding_free and not packing:
                # TRL refuses padding-free batches with max_length set (it would not
                # truncate them): the rows are truncated here instead, keeping the start.
                ids = ids[:max_length]
            if not aol:
                if packing and not ids:  # nothing at all to train on
                    lost += 1
                    continue
                item = {"input_ids": ids}
            else:
                if 1 not in enc["assistant_masks"]:
                    raise TrainerError(
                        f"{row['where']}: no token of the example falls inside the chat template's "
                        "{% generation %} markers, so assistant-only loss has nothing to train on",
                        hint="give every example an assistant turn (loractl data check reports those without one), "
                             "or set train.assistant_only_loss to false")
                mask = unweight_mask(list(enc["assistant_masks"]), row["messages"], row["weights"], row["where"])
                if self.padding_free and not packing:
                    mask = mask[:max_length]
                if (packing or self.padding_free) and 1 not in mask[:max_length]:  # truncation keeps the start
                    lost += 1
                    continue
                item = {"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]],
                        "input_ids": ids, "assistant_masks": mask}
                if 1 in mask[:max_length]:  # else TRL drops the row (see check_dropped)
                    kept_rows.append(i)
            if not aol:
                kept_rows.append(i)
            chunk.append(item)
            chunk_tokens += len(ids)
            if len(chunk) >= CHUNK_ROWS or chunk_tokens >= CHUNK_TOKENS:
                parts.append(Dataset.from_list(chunk, features=features))
                chunk, chunk_tokens = [], 0
        if lost:
            self.report_lost(name, lost, total)
        if name == "eval":
            # Packed eval sequences mix examples: no per-example loss then.
            self.eval_loss_indices = None if packing else kept_rows
        if chunk or not parts:
            parts.append(Dataset.from_list(chunk, features=features))
        self.kept[name] = total - lost
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)

    def report_lost(self, name, lost, total):
        """Refuse a dataset ("train" or "eval") none of whose examples keeps a label within
        train.max_length; warn when some do not (TRL skips them, or prepare_data does)."""
        d, max_length = self.cfg["data"], self.cfg["train"]["max_length"]
        token = "an assistant token" if self.assistant_only_loss else "a token"
        if name == "train":
            label, source = "training", f"data.train {d['train']}"
        else:
            label = "eval"
            source = f"data.eval {d['eval']}" if d["eval"] else f"the data.eval_split {d['eval_split']} of data.train"
        if lost >= total:
            raise ConfigError(f"no {label} example keeps {token} within train.max_length {max_length} "
                              f"(all {total} of {source} lose every label to truncation): raise max_length")
        self.events.warn("labels_truncated_away", f"{lost} of {total} {label} examples ({source}) have no "
                         f"{token.split(' ', 1)[1]} within train.max_length {max_length} and are skipped")

    def check_targets(self, model):
        """Name the missing module, with the model's own Linear names, before PEFT says less."""
        import torch
        targets = self.cfg["lora"]["target_modules"]
        if targets == "all-linear":
            return
        names = [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
            raise ConfigError(f"lora.target_modules: {', '.join(missing)} not found in {self.cfg['model']['name_or_path']}; "
                              f"its Linear modules are: {', '.join(leaves)}")

    def trackers(self):
        """train.report_to for the HF Trainer, with each tracker's files placed in the run dir.

        The environment wins where the user set it: TENSORBOARD_LOGGING_DIR, MLFLOW_TRACKING_URI
        and MLFLOW_EXPERIMENT_NAME, WANDB_MODE / WANDB_DIR / WANDB_PROJECT (a key only ever by
        name, through env.pass)."""
        report_to = list(self.cfg["train"].get("report_to") or [])
        if not report_to:
            return "none"
        missing = [t for t, module in (("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb"))
                   if t in report_to and importlib.util.find_spec(module) is None]
        if missing:
            raise ConfigError(f"train.report_to: {', '.join(missing)} is not installed in the trainer's environment; "
                              f"install python/requirements-tracking.txt (LORACTL_TRACKING_EXTRAS=1 scripts/setup-python.sh)")
        if "tensorboard" in report_to:
            os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.join(self.run.run_dir, "tensorboard"))
        if "wandb" in report_to:
            os.environ.setdefault("WANDB_DIR", self.run.run_dir)
            os.environ.setdefault("WANDB_PROJECT", "loractl")
        if "mlflow" in report_to:
            os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "loractl")
        return report_to

    def sft_config(self):
        from trl import SFTConfig
        t = self.cfg["train"]
        eval_strategy = "no" if not self.has_eval else ("epoch" if t["eval_steps"] == 0 else "steps")
        kwargs = dict(
            output_dir=self.run.ckpt_root,
            num_train_epochs=t["epochs"], max_steps=t["max_steps"] if t["max_steps"] > 0 else -1,
            learning_rate=t["learning_rate"], lr_scheduler_type=t["scheduler"], warmup_steps=t["warmup"],
            per_device_train_batch_size=t["batch_size"], per_device_eval_batch_size=t["eval_batch_size"],
            gradient_accumulation_steps=dist.grad_accum(t, dist.world_size()), weight_decay=t["weight_decay"],
            max_grad_norm=t["max_grad_norm"], optim=t["optim"],
            seed=t["seed"], data_seed=t["seed"], full_determinism=not self.cuda,
            activation_checkpointing=t["gradient_checkpointing"], gradient_checkpointing=t["gradient_checkpointing"],
            max_length=None if self.padding_free and not t["packing"] else t["max_length"],
            packing=t["packing"], padding_free=self.padding_free and not t["packing"],
            use_liger_kernel=self.liger, assistant_only_loss=self.assistant_only_loss,
            loss_type="nll" if t["loss_type"] == "chunked_nll" else t["loss_type"],
            logging_strategy="steps", logging_steps=t["logging_steps"], logging_first_step=True,
            eval_strategy=eval_strategy, eval_steps=t["eval_steps"] or None,
            save_strategy="epoch" if t["save_steps"] == 0 else "steps", save_steps=t["save_steps"] or 500,
            save_total_limit=None,  # pruned by loractl once a newer checkpoint is complete
            bf16=self.precision == "bf16", fp16=self.precision == "fp16", use_cpu=not self.cuda,
            report_to=self.trackers(), run_name=os.path.basename(self.run.run_dir),
            disable_tqdm=True, dataloader_num_workers=0,
            **dist.trainer_args(self.cuda, (self.cfg.get("distributed") or {}).get("strategy", "ddp")),
        )
        try:
            return SFTConfig(**kwargs)
        except ValueError as e:  # unknown optimizer or scheduler names, impossible combinations
            raise ConfigError(f"train: {e}")

    def build(self):
        timed = self.run.timed
        with timed("imports"):
            self.resolve_device()  # before the heavy imports: a refusal should come fast
            import_heavy()  # what warm_start.py may have done already; the names below are then bound at once
            import datasets
            import transformers
            from peft import LoraConfig
            from transformers import set_seed
            from transformers.trainer_utils import enable_full_determinism
            from trl import SFTTrainer

        # train.log is for people: no progress bars redrawn with carriage returns.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        t, lora = self.cfg["train"], self.cfg["lora"]
        self.run.save_total_limit = t["save_total_limit"]
        self.check_names()
        (enable_full_determinism if not self.cuda else set_seed)(t["seed"])
        with timed("read_data"):
            train, evalset = self.load_data()
        with timed("load_model"):
            tokenizer = self.load_tokenizer()
        self.tokenizer = tokenizer
        self.eval_loss_indices = None
        self.assistant_only_loss = self.decide_assistant_only(tokenizer)
        if self.weight0 and not self.assistant_only_loss:
            why = ("train.assistant_only_loss is false" if t["assistant_only_loss"] is False else
                   f"the chat template of {self.cfg['model']['name_or_path']} has no {{% generation %}} markers")
            where = []
            if self.weight0_train:
                where.append(f"{self.weight0_train} trained on in the training set")
            if self.weight0_eval:
                where.append(f"{self.weight0_eval} scored in the eval loss")
            self.events.warn("weights_ignored", f"{self.weight0} assistant turn(s) with weight 0 are trained or scored "
                             f"like the rest of the sequence ({', '.join(where)}): {why}, so the loss covers every "
                             "token and per-turn weights cannot apply")
        self.kept = {}  # examples per dataset that keep a label (see prepare_data and check_dropped)

        def tokenize():
            return (self.prepare_data(train, tokenizer, "train"),
                    self.prepare_data(evalset, tokenizer, "eval") if evalset is not None else None)
        # On a GPU the data is tokenized while the model loads: reading weights (disk, then
        # host to GPU) mostly waits outside the GIL, tokenizing is Python and Rust on the CPU.
        tokenizing = Background(tokenize) if overlap_setup(self.cuda) else None
        with timed("load_model"):
            model = self.load_weights()
        self.check_targets(model)  # refused at once, without waiting for the tokenizing
        with timed("tokenize"):  # what the model load did not hide
            train, evalset = tokenizing.result() if tokenizing else tokenize()
        if tokenizing:
            self.run.timings["tokenize_total"] = round(tokenizing.seconds, 3)
        peft_config = LoraConfig(
            r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"], bias=lora["bias"], use_rslora=lora["use_rslora"],
            use_dora=lora["use_dora"], task_type="CAUSAL_LM")
        if self.adapter:
            from peft import PeftModel
            model, peft_config = PeftModel.from_pretrained(model, self.adapter, is_trainable=False), None
        self.callback = make_callback(self.run)
        trainer_cls = make_trainer_class(SFTTrainer, self.run)
        with timed("build_trainer"):
            trainer = trainer_cls(model=model, args=self.sft_config(), train_dataset=train, eval_dataset=evalset,
                                  processing_class=tokenizer, peft_config=peft_config, callbacks=[self.callback])
        self.check_dropped(trainer)
        self.run.trainer, self.run.setup = trainer, self

        def record_losses(_module, _args, output):
            # TRL's fused forward gives per-token log-probs and the label mask: the
            # per-example losses come from the evaluation's own forward passes.
            if self.run.loss_rows is not None:
                per = task_eval.per_example_losses(output)
                if per is not None:
                    self.run.loss_rows.extend(per)
        trainer.model.register_forward_hook(record_losses)
        self.trainable, self.total = trainer.model.get_nb_trainable_parameters()
        self.total_steps = self.count_steps(len(trainer.train_dataset))
        return trainer

    def check_dropped(self, trainer):
        """TRL silently drops examples left with no label after truncation, from the training
        and the eval set alike (without packing; with it prepare_data has left them out).
        The start event reports the examples kept."""
        if not self.cfg["train"]["packing"]:
            for name, dataset in (("train", trainer.train_dataset), ("eval", trainer.eval_dataset)):
                if dataset is not None and len(dataset) < self.kept[name]:
                    self.report_lost(name, self.kept[name] - len(dataset), self.kept[name])
                    self.kept[name] = len(dataset)
        self.train_examples, self.eval_examples = self.kept["train"], self.kept.get("eval", 0)

    def count_steps(self, rows):
        """Optimizer steps of the whole run, as the Trainer computes them."""
        t = self.cfg["train"]
        if t["max_steps"] > 0:
            return t["max_steps"]
        batches = math.ceil(rows / (t["batch_size"] * dist.world_size()))  # each rank's share
        accum = dist.grad_accum(t, dist.world_size())
        per_epoch = max(batches // accum + int(batches % accum > 0), 1)
        return math.ceil(t["epochs"] * per_epoch)

    def restore_token_count(self, trainer, ckpt):
        """Continue SFT's cumulative num_tokens from the checkpoint instead of from zero."""
        from transformers.trainer_callback import TrainerState
        try:
            state = TrainerState.load_from_json(os.path.join(ckpt, "trainer_state.json"))
        except (OSError, ValueError):
            return
        tokens = [h["num_tokens"] for h in state.log_history if "num_tokens" in h and "loss" in h]
        if tokens and hasattr(trainer, "_total_train_tokens"):
            trainer._total_train_tokens = int(tokens[-1])
            self.callback.tokens_at_start = int(tokens[-1])


def make_trainer_class(base, run):
    class LoractlSFTTrainer(base):
        """SFTTrainer that never writes into a checkpoint dir that still claims to be complete."""

        def _save_checkpoint(self, model, trial):
            step = self.state.global_step
            path = os.path.join(self.args.output_dir, f"{CHECKPOINT_PREFIX}{step}")
            if step in run.saved_steps and read_marker(path) is not None:
                return  # already saved and complete (e.g. an epoch end right after a stop)
            if dist.is_main() and os.path.exists(path):
                remove_checkpoint(path)  # debris or a stale copy from an abandoned attempt
            dist.barrier()  # no rank writes into it before the removal
            try:
                with run.timed("save_checkpoints"):  # within "train"; the marker is written on_save
                    super()._save_checkpoint(model, trial)
            except BaseException:
                # A save that failed (a full disk, a signal) leaves files no resume would
                # take (there is no marker); removing them gives back the space, so the
                # controller can still record what happened.
                if dist.is_main() and os.path.exists(path) and read_marker(path) is None:
                    remove_checkpoint(path)
                raise

        def evaluate(self, *args, **kwargs):
            run.loss_rows = []  # filled by the forward hook Setup.build registers
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                run.loss_rows = None

    return LoractlSFTTrainer


def make_callback(run):
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        """Turns the Trainer's hooks into events, checkpoint markers and graceful stops."""

        def __init__(self):
            self.phase = None  # "before" / "after" while the run evaluates outside training
            self.last_eval = None  # (step, metrics) of the last evaluation during training
            self.tokens_at_start = 0
            self.last_time = self.mark = time.monotonic()
            self.last_tokens = 0
            self.paused = 0.0  # seconds spent evaluating and saving since the last log
            self.last_losses = None  # per-example losses of last_eval
            t, e = run.cfg["train"], run.cfg["eval"]
            self.select_best = t["select"] == "best"
            self.patience = t["early_stopping_patience"]
            # Checkpoints are compared by the primary task metric when it is scored at every
            # evaluation (higher is better), else by eval loss (lower is better).
            self.select_by = e["primary"] if e["at_checkpoints"] else "eval_loss"
            self.best = None  # (step, value) of the best evaluation so far
            self.best_eval = None  # (metrics, per-example losses) of that evaluation
            self.worse = 0  # evaluations since the best one, for early stopping
            self.agreed = False  # the ranks' shared stop decision (several processes)

        def _stop_if_asked(self, control):
            # Several ranks act only on the flag they agreed on at the step end (on_step_end).
            if (self.agreed if dist.active() else STOP.signame is not None):
                control.should_save = True
                control.should_training_stop = True

        def on_train_begin(self, args, state, control, **kw):
            if self.select_best and self.best is None and run.resume_path:
                self.best = task_eval.best_from_events(
                    os.path.join(run.run_dir, "events.jsonl"), self.select_by, run.resume_step,
                    lambda step: read_marker(os.path.join(run.ckpt_root, f"{CHECKPOINT_PREFIX}{step}")) is not None)
            STOP.immediate = False  # from now on a signal means: finish the step, checkpoint, exit 75
            self.last_time = self.mark = time.monotonic()
            self.last_tokens = self.tokens_at_start
            self.paused = 0.0

        def on_step_end(self, args, state, control, **kw):
            self.mark = time.monotonic()
            run.step = state.global_step
            if dist.active():
                self.agreed = dist.agree_stop()
            self._stop_if_asked(control)

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            now = time.monotonic()
            tokens = logs.get("num_tokens")
            elapsed = now - self.last_time - self.paused
            tps = (tokens - self.last_tokens) / elapsed if tokens is not None and elapsed > 0 else None
            self.last_time, self.paused = now, 0.0
            if tokens is not None:
                self.last_tokens = tokens
            known = {"loss", "learning_rate", "grad_norm", "epoch", "num_tokens"}
            run.events.emit("log", step=state.global_step, total_steps=state.max_steps, epoch=logs.get("epoch"),
                            loss=logs["loss"], learning_rate=logs.get("learning_rate"),
                            grad_norm=logs.get("grad_norm"), tokens_per_second=tps, num_tokens=tokens,
                            metrics={k: v for k, v in logs.items() if k not in known})
            self._stop_if_asked(control)

        def emit_eval(self, phase, step, metrics):
            run.events.emit("eval", step=step, phase=phase, eval_loss=metrics.get("eval_loss"),
                            metrics={k: v for k, v in metrics.items() if k != "eval_loss"})

        def track(self, step, metrics, losses, control):
            """train.select best and early stopping: is this evaluation the best so far?"""
            key = "eval_loss" if self.select_by == "eval_loss" else f"task/{self.select_by}"
            value = metrics.get(key)
            if value is not None and (self.best is None or (
                    value < self.best[1] if self.select_by == "eval_loss" else value > self.best[1])):
                self.best, self.best_eval, self.worse = (step, value), (metrics, losses), 0
            else:
                self.worse += 1
            if self.select_best:
                control.should_save = True  # every evaluated step can be chosen
            if self.patience and self.worse >= self.patience and not control.should_training_stop:
                control.should_training_stop = True
                run.events.emit("early_stop", step=step, patience=self.patience, by=self.select_by,
                                best_step=self.best[0] if self.best else None,
                                best_value=self.best[1] if self.best else None)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            metrics = dict(metrics or {})
            losses = list(run.loss_rows) if run.loss_rows is not None else None
            phase = self.phase or "during"
            if phase == "during" and run.cfg["eval"]["at_checkpoints"] and run.setup.task_examples:
                metrics.update(run.checkpoint_scores())
            self.emit_eval(phase, state.global_step, metrics)
            if phase == "before":
                run.losses_before = losses
            elif phase == "after":
                run.losses_after = losses
            if phase == "during":
                self.last_eval = (state.global_step, metrics)
                self.last_losses = losses
                self.track(state.global_step, metrics, losses, control)
                now = time.monotonic()
                self.paused += now - self.mark
                self.mark = now
                self._stop_if_asked(control)

        def on_save(self, args, state, control, **kw):
            step = state.global_step
            if step in run.saved_steps:
                return  # the save was skipped: see LoractlSFTTrainer._save_checkpoint
            path = os.path.join(args.output_dir, f"{CHECKPOINT_PREFIX}{step}")
            dist.barrier()  # every rank's files (its RNG state, FSDP shards) are written
            run.saved_steps.add(step)
            if dist.is_main():
                mark_complete(path, step, run.eval_before, run.config_sha256)
                run.events.emit("checkpoint", step=step, path=os.path.abspath(path))
                prune_checkpoints(args.output_dir, step, run.save_total_limit,
                                  protect=self.best[0] if self.best else None)
            now = time.monotonic()
            self.paused += now - self.mark
            self.mark = now

    return EventsCallback()


if __name__ == "__main__":
    exit_now(main())  # without the 1.3 s module teardown
