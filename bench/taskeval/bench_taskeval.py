#!/usr/bin/env python3
"""Benchmark of the task evaluation: generation speed on the CPU tiny model, and the share of
the quickstart's training wall time that the end-of-run evaluation adds (goal <= 25%).

    $LORACTL_PYTHON bench/taskeval/bench_taskeval.py [--reps 3] [--loractl BIN]

It builds the quickstart's tiny model (scripts/quickstart.sh's sizes) and loractl in a temp
dir, renders configs/quickstart.yaml, and runs python/train_lora.py on it alternately with
eval.generate false (the baseline) and true (the default: up to 200 examples, 256 new tokens),
so machine noise hits both alike. Prints medians: wall time of each, the ratio, the
task_eval event's own seconds as a share of the baseline, and generations per second.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def prepare(tmp, loractl):
    py = sys.executable
    data = os.path.join(ROOT, "examples", "data")
    model = os.path.join(tmp, "model")
    sh([py, os.path.join(ROOT, "python", "make_tiny_model.py"), model, "--hidden", "64", "--intermediate", "128",
        "--data", os.path.join(data, "train.jsonl"), "--data", os.path.join(data, "eval.jsonl")])
    if loractl is None:
        loractl = os.path.join(tmp, "loractl")
        sh(["go", "build", "-o", loractl, "./cmd/loractl"], cwd=ROOT)
    with open(os.path.join(ROOT, "configs", "quickstart.yaml")) as f:
        text = f.read().replace("../.quickstart/model", model).replace("../examples", os.path.join(ROOT, "examples"))
    cfg_path = os.path.join(tmp, "quickstart.yaml")
    with open(cfg_path, "w") as f:
        f.write(text)
    resolved = json.loads(sh([loractl, "render", cfg_path]).stdout)
    return resolved


def train(tmp, resolved, generate, n):
    run_dir = os.path.join(tmp, f"run-{'gen' if generate else 'base'}-{n}")
    os.makedirs(run_dir)
    cfg = json.loads(json.dumps(resolved))
    cfg.setdefault("eval", {})["generate"] = generate
    path = os.path.join(run_dir, "resolved.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_HOME=os.path.join(tmp, "hf"))
    start = time.monotonic()
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        rc = subprocess.run([sys.executable, os.path.join(ROOT, "python", "train_lora.py"), "--config", path,
                             "--run-dir", run_dir], stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.monotonic() - start
    if rc != 0:
        raise SystemExit(f"trainer exited {rc}: see {run_dir}/train.log")
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        events = [json.loads(line) for line in f]
    te = next((e for e in events if e["type"] == "task_eval"), None)
    stops = {}
    if te is not None:
        with open(os.path.join(run_dir, "eval", "generations.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        for side in ("base", "adapter"):
            stops[side] = sum(r[side]["stopped"] == "eos" for r in rows) / len(rows)
            stops[side + "_tokens"] = sum(r[side]["tokens"] for r in rows)
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    return wall, te, stops


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--loractl", help="a built loractl binary (default: go build one)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="loractl-bench-taskeval-")
    try:
        resolved = prepare(tmp, args.loractl)
        base, gen, eval_s, rates, tok_rates = [], [], [], [], []
        stops = None
        for n in range(args.reps):
            base.append(train(tmp, resolved, False, n)[0])
            wall, te, stops = train(tmp, resolved, True, n)
            gen.append(wall)
            eval_s.append(te["seconds"])
            rates.append(2 * te["n"] / te["seconds"])
            tok_rates.append((stops["base_tokens"] + stops["adapter_tokens"]) / te["seconds"])
            print(f"rep {n + 1}: train {base[-1]:.2f}s, train+eval {wall:.2f}s, task_eval {te['seconds']:.2f}s "
                  f"({te['n']} examples x 2)", flush=True)
        b, g, e = statistics.median(base), statistics.median(gen), statistics.median(eval_s)
        print(f"quickstart train, eval.generate false: {b:.2f} s (median of {args.reps})")
        print(f"quickstart train, eval.generate true:  {g:.2f} s  ratio {g / b:.3f}")
        print(f"task_eval seconds: {e:.2f} s = {100 * e / b:.1f}% of the baseline's wall time (goal <= 25%)")
        print(f"generation: {statistics.median(rates):.1f} replies/s, {statistics.median(tok_rates):.0f} new tokens/s "
              f"(both sides, generation batch {4 * resolved['train']['eval_batch_size']}, max_new_tokens 256)")
        print(f"ended their turn (stopped eos): base {100 * stops['base']:.0f}%, adapter {100 * stops['adapter']:.0f}%; "
              f"new tokens: base {stops['base_tokens']}, adapter {stops['adapter_tokens']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
