#!/usr/bin/env python3
"""Throughput cells on the sample data (docs/performance.md): tokens/s, GPU utilisation and
peak memory of `loractl train` with (a) today's defaults, (b) batch_size auto, (c) +
padding-free, (d) + Liger, and (e) plain TRL SFTTrainer with (d)'s settings, all at the
same effective batch. Every cell runs in its own process with its own time limit; the
results (JSON and a table) are rewritten after every cell.

    bench/train/gpu_cells.py --loractl bin/loractl --model DIR --out OUT       # on a GPU
    bench/train/gpu_cells.py --loractl bin/loractl --model DIR --out OUT --cpu # dry run

Tokens/s counts the rows' own tokens (the data check's per-epoch count × epochs, no
padding) over the trainer's train_runtime, so padding a cell wastes shows as a loss.
"""
import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "examples", "data")
EFFECTIVE = 32

# (name, YAML train settings). (a) is today's default micro-batch 4, accumulating to the
# same effective batch; (b) lets the pre-flight pick the micro-batch and, as the estimate
# allows on this data, turns checkpointing off.
CELLS = [
    ("a defaults (batch 4 x accum 8, checkpointing)", {"batch_size": 4, "grad_accum": 8, "padding_free": False, "liger": False,
                                                       "attn_implementation": "sdpa"}),
    ("b batch auto", {"batch_size": "auto", "effective_batch_size": EFFECTIVE, "gradient_checkpointing": False,
                      "padding_free": False, "liger": False, "attn_implementation": "sdpa"}),
    ("c + padding-free", {"batch_size": "auto", "effective_batch_size": EFFECTIVE, "gradient_checkpointing": False,
                          "padding_free": True, "liger": False, "attn_implementation": "sdpa"}),
    ("d + Liger", {"batch_size": "auto", "effective_batch_size": EFFECTIVE, "gradient_checkpointing": False,
                   "padding_free": True, "liger": True, "attn_implementation": "sdpa"}),
]


class NVML:
    """GPU utilisation and memory through libnvidia-ml (ctypes), sampled in a thread."""

    class _Util(ctypes.Structure):
        _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]

    class _Mem(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

    def __init__(self):
        self.lib = None
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            if lib.nvmlInit_v2() == 0:
                self.handle = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(self.handle)) == 0:
                    self.lib = lib
        except OSError:
            pass

    def sample(self):
        if self.lib is None:
            return None, None
        u, m = self._Util(), self._Mem()
        if self.lib.nvmlDeviceGetUtilizationRates(self.handle, ctypes.byref(u)) != 0:
            return None, None
        self.lib.nvmlDeviceGetMemoryInfo(self.handle, ctypes.byref(m))
        return u.gpu, m.used


class Sampler(threading.Thread):
    def __init__(self, nvml):
        super().__init__(daemon=True)
        self.nvml, self.stop, self.util, self.used = nvml, threading.Event(), [], []

    def run(self):
        while not self.stop.wait(0.2):
            u, used = self.nvml.sample()
            if u is not None:
                self.util.append(u)
                self.used.append(used)

    def result(self, base_used):
        busy = [u for u in self.util if u > 0]
        return {"util_mean": round(sum(busy) / len(busy), 1) if busy else None,
                "util_max": max(self.util) if self.util else None,
                "nvml_peak_bytes": (max(self.used) - base_used) if self.used else None}


def yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def loractl_cell(args, name, settings, work):
    cfg = os.path.join(work, "cell.yaml")
    train = dict(settings, epochs=args.epochs, max_length=args.max_length, learning_rate=2e-4,
                 save_steps=0, logging_steps=5)
    if args.cpu:
        train.update(liger=False, max_steps=args.cpu_steps)
    lines = [f"name: bench-{name.split()[0]}", f"model: {args.model}", "data:",
             f"  train: {os.path.join(DATA, 'train.jsonl')}", f"  eval: {os.path.join(DATA, 'eval.jsonl')}",
             "lora:", "  r: 16", "  target_modules: all-linear", "train:"]
    lines += [f"  {k}: {yaml_value(v)}" for k, v in train.items()]
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    runs = os.path.join(work, "runs")
    env = dict(os.environ)
    cmd = [args.loractl, "--runs-dir", runs, "train", cfg, "--json", "--force"]
    proc = run_group(cmd, env, args.cell_timeout)
    result = None
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "run_id" in obj and ("state" in obj or "result" in obj):
            result = obj
    run_id = result["run_id"] if result else None
    manifest = find_manifest(runs, run_id)
    res = manifest.get("result") or {}
    stats = (manifest.get("data_check") or {}).get("stats", {}).get("tokens", {})
    est = manifest.get("estimate") or {}
    runtime = (res.get("metrics") or {}).get("train_runtime")
    epochs = (res.get("metrics") or {}).get("epoch") or args.epochs
    tokens = stats.get("per_epoch", 0) * epochs
    return {"train_runtime": runtime, "tokens": tokens, "tokens_per_s": round(tokens / runtime) if runtime else None,
            "peak_allocated_bytes": res.get("peak_allocated_bytes"), "batch_size": est.get("batch_size"),
            "grad_accum": est.get("grad_accum"), "estimate_peak_bytes": est.get("peak_bytes"),
            "estimate_basis": est.get("basis"), "eval_loss_after": res.get("eval_loss_after"),
            "wall_seconds": res.get("wall_seconds")}


def run_group(cmd, env, timeout):
    """Run cmd in its own process group; on timeout the group is stopped (the trainer
    loractl started with it), so that it cannot hold the GPU into the next cell."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # loractl forwards SIGTERM to its trainer (which also gets it when loractl dies:
        # the local driver sets Pdeathsig) and waits for it to stop.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise RuntimeError(f"timed out after {timeout} s: {' '.join(cmd[:4])} ...") from None
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {(err or out)[-800:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def find_manifest(runs, run_id):
    for root, _, files in os.walk(runs):
        if "manifest.json" in files and (run_id is None or os.path.basename(root) == run_id):
            with open(os.path.join(root, "manifest.json")) as f:
                return json.load(f)
    raise RuntimeError(f"no manifest for run {run_id} under {runs}")


def trl_cell(args, d_result, work):
    """Plain TRL SFTTrainer with (d)'s settings, in its own process."""
    batch = d_result.get("batch_size") or (8 if args.cpu else EFFECTIVE)
    cmd = [sys.executable, os.path.join(HERE, "plain_trl.py"), "--model", args.model,
           "--train", os.path.join(DATA, "train.jsonl"), "--batch", str(batch), "--accum", str(EFFECTIVE // batch),
           "--epochs", str(args.epochs), "--out", os.path.join(work, "trl.json")]
    if args.cpu:
        cmd += ["--cpu", "--max-steps", str(args.cpu_steps)]
    run_group(cmd, dict(os.environ), args.cell_timeout)
    with open(os.path.join(work, "trl.json")) as f:
        return json.load(f)


def write(out, results):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cells.json"), "w") as f:
        json.dump(results, f, indent=2)
    base = next((r for r in results if r["cell"].startswith("a ") and r.get("tokens_per_s")), None)
    lines = [f"{'cell':<48} {'tokens/s':>9} {'vs a':>6} {'util%':>6} {'peak alloc':>11} {'NVML peak':>10} {'batch':>7} {'est/alloc':>9}"]
    for r in results:
        if r.get("error"):
            lines.append(f"{r['cell']:<48} error: {r['error'][:200]}")
            continue
        tps = r.get("tokens_per_s")
        ratio = f"{tps / base['tokens_per_s']:.2f}x" if base and tps else "-"
        gib = lambda b: f"{b / 2**30:.2f}G" if b else "-"  # noqa: E731
        est = r.get("estimate_peak_bytes")
        alloc = r.get("peak_allocated_bytes")
        lines.append(f"{r['cell']:<48} {tps or '-':>9} {ratio:>6} {r.get('util_mean') or '-':>6} {gib(alloc):>11} "
                     f"{gib(r.get('nvml_peak_bytes')):>10} {str(r.get('batch_size')) + 'x' + str(r.get('grad_accum')):>7} "
                     f"{(f'{est / alloc:.2f}' if est and alloc else '-'):>9}")
    with open(os.path.join(out, "cells.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loractl", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--cell-timeout", type=int, default=120)
    p.add_argument("--budget", type=int, default=240, help="seconds for all cells; later cells are skipped")
    p.add_argument("--cpu", action="store_true", help="dry run on the CPU: a few steps, no Liger")
    p.add_argument("--cpu-steps", type=int, default=2)
    args = p.parse_args()
    args.model = os.path.abspath(args.model)
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"loractl-cells-{os.getpid()}")
    os.makedirs(work, exist_ok=True)
    nvml = NVML()
    results, start = [], time.monotonic()
    cells = [(n, s, None) for n, s in CELLS] + [("e plain TRL SFTTrainer, (d)'s settings", None, "trl")]
    for name, settings, kind in cells:
        if time.monotonic() - start > args.budget:
            results.append({"cell": name, "error": "skipped: over the time budget"})
            write(args.out, results)
            continue
        base_used = nvml.sample()[1] or 0
        sampler = Sampler(nvml)
        sampler.start()
        t0 = time.monotonic()
        try:
            if kind == "trl":
                d = next((r for r in results if r["cell"].startswith("d ") and not r.get("error")), {})
                r = trl_cell(args, d, work)
            else:
                r = loractl_cell(args, name, settings, work)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
            r = {"error": str(e).strip().replace("\n", " | ")}
        sampler.stop.set()
        sampler.join()
        r.update(sampler.result(base_used), cell=name, seconds=round(time.monotonic() - t0, 1))
        results.append(r)
        write(args.out, results)
    return 0 if all(not r.get("error") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
