#!/usr/bin/env python3
"""Evaluate a trained adapter on demand: base vs adapter replies, task metrics, per-example losses.

    python eval_task.py --config RUN/resolved.json --run-dir RUN --adapter PATH --out DIR
        [--data FILE] [--metric JSON]... [--max-examples N]
        [--prompts-out FILE | --against-replies FILE]

`loractl eval` runs this beside the trainer (same directory, same venv). It writes, in DIR:
generations.jsonl, example_losses.json and events.jsonl, in the formats of the end-of-run
evaluation (docs/trainer-contract.md), through the same code: the trainer's Setup loads the
model (with the adapter at PATH: RUN/adapter or a checkpoint directory) and tokenizes the
eval set exactly as training did, and task_eval generates and scores.

--data FILE       a chat JSONL file to evaluate on instead of the run's eval set
--metric JSON     a metric as resolved.json's eval.metrics holds it, e.g.
                  '{"name": "exact", "kind": "exact"}'; repeatable; replaces eval.metrics
                  (and the primary becomes the first one given)
--max-examples N  how many examples to generate for (default eval.max_examples), chosen
                  with the run's seed
--prompts-out F   write the chosen prompts ({"index", "messages", "tools", "reference"}
                  per line) to F and stop: no model is loaded. `loractl eval --against`
                  sends them to the other model.
--against-replies F
                  the other model's replies ({"index", "text", "tokens", "stopped"} per
                  line, one per chosen prompt): they take the base side, only the adapter
                  generates, and no per-example losses are written (they would be the
                  base model's, not the other model's)

Exit codes: 0 done, 1 failed, 2 invalid arguments, config or data, 130 interrupted.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import task_eval  # noqa: E402
import task_metrics  # noqa: E402
from train_lora import Run, Setup  # noqa: E402
from train_lora_support import (  # noqa: E402
    EXIT_FAILED, EXIT_INVALID, EXIT_OK, ConfigError, Events, TrainerError, exit_now, load_config, read_chat_jsonl,
)

EXIT_SIGNAL = 130


def parse_args(argv):
    p = argparse.ArgumentParser(description="Evaluate an adapter: base vs adapter replies, metrics, losses")
    p.add_argument("--config", required=True, help="the run's resolved.json")
    p.add_argument("--run-dir", required=True, help="the run directory")
    p.add_argument("--adapter", required=True, help="adapter directory (RUN/adapter or a checkpoint)")
    p.add_argument("--out", required=True, help="directory for generations.jsonl, example_losses.json, events.jsonl")
    p.add_argument("--data", help="chat JSONL to evaluate on instead of the run's eval set")
    p.add_argument("--metric", action="append", default=[], metavar="JSON",
                   help="a metric object as in resolved.json's eval.metrics (repeatable)")
    p.add_argument("--max-examples", type=int, help="examples to generate for (default eval.max_examples)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--prompts-out", metavar="FILE", help="write the chosen prompts to FILE and stop")
    mode.add_argument("--against-replies", metavar="FILE", help="another model's replies, scored as the base side")
    return p.parse_args(argv)


def read_replies(path, examples):
    """The replies in path, in the order of examples; every example needs exactly one."""
    by_index = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
                key = int(r["index"])
                reply = {"text": str(r["text"]), "tokens": int(r.get("tokens") or 0),
                         "stopped": r.get("stopped") if r.get("stopped") in ("eos", "max_tokens") else "eos"}
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{path}:{n}: not a reply record ({e})") from None
            by_index[key] = reply
    missing = [e["index"] for e in examples if e["index"] not in by_index]
    if missing:
        raise ConfigError(f"{path}: no reply for eval example(s) {missing[:10]}")
    return [by_index[e["index"]] for e in examples]


def apply_overrides(cfg, args):
    """The run's eval section with the command line's metrics and example count."""
    raw = dict(cfg["eval"])
    if args.metric:
        specs = []
        for i, text in enumerate(args.metric):
            try:
                specs.append(json.loads(text))
            except ValueError as e:
                raise ConfigError(f"--metric {i + 1} ({text!r}): not JSON: {e}") from None
        raw["metrics"], raw["primary"] = specs, ""
    if args.max_examples is not None:
        if args.max_examples < 1:
            raise ConfigError(f"--max-examples: must be >= 1, got {args.max_examples}")
        raw["max_examples"] = args.max_examples
    raw["generate"] = True
    cfg["eval"] = task_metrics.validate_eval(raw)
    return cfg


def evaluate(args, events):
    if not os.path.isdir(args.run_dir):
        raise ConfigError(f"--run-dir {args.run_dir}: no such directory")
    cfg, unknown = load_config(args.config)
    for message in unknown:
        events.warn("unknown_config_key", message)
    cfg = apply_overrides(cfg, args)
    metrics = task_metrics.build_metrics(cfg["eval"]["metrics"])
    if not os.path.isdir(args.adapter) or not os.path.isfile(os.path.join(args.adapter, "adapter_config.json")):
        raise ConfigError(f"--adapter {args.adapter}: not an adapter directory (no adapter_config.json)")
    rows = read_chat_jsonl(args.data) if args.data else None
    out = os.path.abspath(args.out)
    run = Run(argparse.Namespace(config=args.config, resume=None), out, events)
    run.cfg, run.metrics = cfg, metrics
    run.ckpt_root = os.path.join(out, f".trainer-{os.getpid()}")  # SFTConfig's output_dir; nothing is saved
    no_eval = (f"{args.config}: the run has no eval set (no data.eval or data.eval_split): pass --data FILE")
    if args.prompts_out:
        # Only the data: the prompts are chosen before any model is loaded.
        setup = Setup(run, cfg, adapter=os.path.abspath(args.adapter), eval_rows=rows)
        setup.load_data()
        if not setup.has_eval:
            raise ConfigError(no_eval)
        task_eval.write_jsonl_atomic(os.path.abspath(args.prompts_out), setup.task_examples)
        events.emit("end", status="completed", prompts=len(setup.task_examples))
        return
    before = after = None
    try:
        setup = Setup(run, cfg, adapter=os.path.abspath(args.adapter), eval_rows=rows)
        trainer = setup.build()
        if not setup.has_eval:
            raise ConfigError(no_eval)
        given = None
        if args.against_replies:
            given = {"base": read_replies(args.against_replies, setup.task_examples)}
        events.start(kind="task_eval", adapter=os.path.abspath(args.adapter), data=args.data or "",
                     device=setup.device_name, precision=setup.precision, eval_examples=setup.eval_examples,
                     pid=os.getpid())
        if given is None:
            cb = setup.callback
            cb.phase = "before"
            with trainer.model.disable_adapter():
                before = trainer.evaluate()["eval_loss"]
            cb.phase = "after"
            after = trainer.evaluate()["eval_loss"]
            cb.phase = None
            if setup.eval_loss_indices is not None and run.losses_before is not None and run.losses_after is not None:
                task_eval.write_example_losses(out, run.losses_before, run.losses_after, setup.eval_loss_indices)
        if setup.task_examples:
            task_eval.run(trainer.model, setup.tokenizer, setup.task_examples, cfg["eval"], metrics, out,
                          cfg["train"]["eval_batch_size"], events=events, rel_to=out, given=given)
        else:
            events.warn("no_task_examples", "no eval example has an assistant turn after a prompt: nothing to generate")
    finally:
        shutil.rmtree(run.ckpt_root, ignore_errors=True)
    events.emit("end", status="completed", eval_loss_before=before, eval_loss_after=after)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)  # exits 2 on bad arguments
    os.makedirs(args.out, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_signal)
    events = Events(os.path.join(args.out, "events.jsonl"))
    start = time.monotonic()
    try:
        evaluate(args, events)
        print(f"eval_task: done in {time.monotonic() - start:.1f}s; results in {args.out}", file=sys.stderr)
        return EXIT_OK
    except ConfigError as e:
        print(f"eval_task: {e}", file=sys.stderr)
        code, kind, message, hint = EXIT_INVALID, "ConfigError", str(e), ""
    except TrainerError as e:
        print(f"eval_task: {e}", file=sys.stderr)
        code, kind, message, hint = EXIT_FAILED, type(e).__name__, str(e), e.hint
    except KeyboardInterrupt:
        events.flush_pending()
        events.emit("end", status="interrupted")
        return EXIT_SIGNAL
    except Exception as e:  # noqa: BLE001 - every failure must reach events.jsonl
        traceback.print_exc()
        code, kind, message, hint = EXIT_FAILED, type(e).__name__, str(e), ""
    events.flush_pending()
    events.emit("error", error_type=kind, message=message, hint=hint)
    events.emit("end", status="failed")
    return code


if __name__ == "__main__":
    exit_now(main())  # without the 1.3 s module teardown
