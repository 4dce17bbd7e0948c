"""The task evaluation through the real trainer and eval_task.py on the CPU: generations.jsonl
and example_losses.json, a scorer that raises, bad metrics refused with exit 2, train.select
best and early stopping."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.numpy import load_file

from conftest import PY_DIR, Trainer, base_config, trainer_env, types

SCORER = '''
def score(output, reference):
    if "cancel" in reference.lower():
        raise ValueError("no score for cancellations")
    return 1.0 if output.strip() else 0.5
'''

EVAL_FAST = {"generate": True, "max_examples": 6, "max_new_tokens": 8}


def eval_config(model, tmp_path, **overrides):
    scorer = tmp_path / "score.py"
    scorer.write_text(SCORER)
    cfg = base_config(model, **{"train.max_steps": 4, "train.eval_steps": 4, "train.save_steps": 4, **overrides})
    cfg["eval"] = dict(EVAL_FAST, metrics=[
        {"name": "exact", "kind": "exact"}, {"name": "chrf", "kind": "chrf"},
        {"name": "python:score", "kind": "python", "path": str(scorer), "function": "score"}])
    return cfg


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def eval_run(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-run")
    t = Trainer(tmp / "run", eval_config(tiny_model, tmp))
    assert t.run() == 0, t.log()[-4000:]
    return t


def check_rows(rows, n, eval_rows_total=40):
    assert len(rows) == n
    indices = [r["index"] for r in rows]
    assert indices == sorted(set(indices)) and all(0 <= i < eval_rows_total for i in indices)
    for r in rows:
        assert set(r) == {"index", "messages", "reference", "base", "adapter"}
        assert r["messages"][-1]["role"] == "user" and r["reference"]
        for side in ("base", "adapter"):
            s = r[side]
            assert set(s) == {"text", "tokens", "stopped", "scores", "errors"}
            assert isinstance(s["text"], str) and "<|" not in s["text"]
            assert 1 <= s["tokens"] <= EVAL_FAST["max_new_tokens"]
            assert s["stopped"] in ("eos", "max_tokens")
            assert s["stopped"] == "eos" or s["tokens"] == EVAL_FAST["max_new_tokens"]
            assert 0 <= s["scores"]["exact"] <= 1 and 0 <= s["scores"]["chrf"] <= 100
            # The scorer raises on cancellation answers: an error, never a 0.
            if "cancel" in r["reference"].lower():
                assert "python:score" not in s["scores"]
                assert s["errors"] == {"python:score": "ValueError: no score for cancellations"}
            else:
                assert s["scores"]["python:score"] in (0.5, 1.0) and s["errors"] == {}


def test_end_of_run_generations_and_losses(eval_run):
    rows = read_jsonl(os.path.join(eval_run.run_dir, "eval", "generations.jsonl"))
    check_rows(rows, EVAL_FAST["max_examples"])
    assert any("cancel" in r["reference"].lower() for r in rows)  # the error path is exercised
    evs = eval_run.events()
    ts = types(evs)
    assert ts.index("task_eval") < ts.index("end") and "generate" in ts
    gen = [e for e in evs if e["type"] == "generate"]
    phases = [e["phase"] for e in gen]
    assert phases == ["base"] * phases.count("base") + ["adapter"] * phases.count("adapter")  # base first
    assert gen[-1] == dict(gen[-1], phase="adapter", done=6, total=6)
    te = next(e for e in evs if e["type"] == "task_eval")
    assert te["n"] == 6 and te["path"] == "eval/generations.jsonl" and te["seconds"] > 0
    with open(os.path.join(eval_run.run_dir, "eval", "example_losses.json")) as f:
        losses = json.load(f)
    assert losses["indices"] == list(range(40))
    assert len(losses["before"]) == len(losses["after"]) == 40
    end = evs[-1]
    # Per-example means average to about the token-weighted eval loss.
    for key, side in (("eval_loss_before", "before"), ("eval_loss_after", "after")):
        assert sum(losses[side]) / 40 == pytest.approx(end[key], rel=0.05)
    assert not [f for f in os.listdir(os.path.join(eval_run.run_dir, "eval")) if ".tmp" in f]


def test_eval_task_script_gives_the_same_results(eval_run, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, os.path.join(PY_DIR, "eval_task.py"), "--config", eval_run.config,
            "--run-dir", eval_run.run_dir, "--adapter", os.path.join(eval_run.run_dir, "adapter"), "--out", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, env=trainer_env(str(tmp_path)), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_jsonl(out / "generations.jsonl") == read_jsonl(os.path.join(eval_run.run_dir, "eval",
                                                                            "generations.jsonl"))
    with open(out / "example_losses.json") as f, \
            open(os.path.join(eval_run.run_dir, "eval", "example_losses.json")) as g:
        mine, run = json.load(f), json.load(g)
    assert mine["indices"] == run["indices"]
    for side in ("before", "after"):
        assert mine[side] == pytest.approx(run[side], rel=1e-4)
    assert types(read_jsonl(out / "events.jsonl"))[-1] == "end"

    # Another data file and the metric from the command line.
    data = tmp_path / "held_out.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "how do I upgrade"},
                                             {"role": "assistant", "content": "Go to Settings"}]}) + "\n")
    p = subprocess.run(argv[:-1] + [str(tmp_path / "out2"), "--data", str(data), "--metric",
                                    '{"name": "contains", "kind": "contains"}'],
                       capture_output=True, text=True, env=trainer_env(str(tmp_path)), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_jsonl(tmp_path / "out2" / "generations.jsonl")
    assert len(rows) == 1 and rows[0]["reference"] == "Go to Settings"
    assert set(rows[0]["adapter"]["scores"]) == {"contains"}

    # A bad --metric is exit 2 naming it.
    p = subprocess.run(argv[:-1] + [str(tmp_path / "out3"), "--metric", '{"name": "r", "kind": "regex", '
                                    '"pattern": "(("}'], capture_output=True, text=True,
                       env=trainer_env(str(tmp_path)), timeout=120)
    assert p.returncode == 2 and "eval.metrics[0].pattern" in p.stderr


def test_eval_task_against_another_models_replies(eval_run, tmp_path):
    """`loractl eval --against`'s two script calls: the prompts first (no model loaded),
    then the other model's replies scored as the base side while only the adapter generates."""
    base_argv = [sys.executable, os.path.join(PY_DIR, "eval_task.py"), "--config", eval_run.config,
                 "--run-dir", eval_run.run_dir, "--adapter", os.path.join(eval_run.run_dir, "adapter")]
    env = trainer_env(str(tmp_path))
    prompts = tmp_path / "prompts.jsonl"
    p = subprocess.run(base_argv + ["--out", str(tmp_path / "p"), "--prompts-out", str(prompts)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    chosen = read_jsonl(prompts)
    run_rows = read_jsonl(os.path.join(eval_run.run_dir, "eval", "generations.jsonl"))
    # The same examples, prompts and references the run's own evaluation used.
    assert [(c["index"], c["messages"], c["reference"]) for c in chosen] == \
        [(r["index"], r["messages"], r["reference"]) for r in run_rows]

    replies = tmp_path / "replies.jsonl"
    replies.write_text("".join(json.dumps({"index": c["index"], "text": f"other {c['index']}", "tokens": 3,
                                           "stopped": "max_tokens" if i == 0 else "eos"}) + "\n"
                               for i, c in enumerate(reversed(chosen))))
    out = tmp_path / "out"
    p = subprocess.run(base_argv + ["--out", str(out), "--against-replies", str(replies)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_jsonl(out / "generations.jsonl")
    check_rows([dict(r, base=dict(r["adapter"])) for r in rows], len(chosen))
    for r, mine in zip(rows, run_rows):
        assert r["base"]["text"] == f"other {r['index']}" and r["base"]["tokens"] == 3
        assert r["base"]["stopped"] == ("max_tokens" if r["index"] == chosen[-1]["index"] else "eos")
        assert r["base"]["scores"]["exact"] == 0.0 and "chrf" in r["base"]["scores"]
        assert r["adapter"]["text"] == mine["adapter"]["text"]  # the adapter's replies are unchanged
    # The base model's losses are not the other model's: none are written.
    assert not (out / "example_losses.json").exists()
    assert "base" not in [e.get("phase") for e in read_jsonl(out / "events.jsonl") if e["type"] == "generate"]

    # A replies file that misses an example is refused, exit 2, naming the file.
    replies.write_text("".join(json.dumps({"index": c["index"], "text": "x"}) + "\n" for c in chosen[1:]))
    p = subprocess.run(base_argv + ["--out", str(tmp_path / "out2"), "--against-replies", str(replies)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and f"no reply for eval example(s) [{chosen[0]['index']}]" in p.stderr


@pytest.mark.parametrize("metric,key", [
    ({"name": "r", "kind": "regex", "pattern": "[unclosed"}, "eval.metrics[0].pattern"),
    ({"name": "s", "kind": "json_schema", "path": "SCHEMA"}, "eval.metrics[0].path"),
    ({"name": "m", "kind": "bleu"}, "eval.metrics[0].kind"),
])
def test_bad_metric_exits_2_naming_the_key(tiny_model, tmp_path, metric, key):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": 5}))
    metric = {k: (str(schema) if v == "SCHEMA" else v) for k, v in metric.items()}
    cfg = base_config(tiny_model)
    cfg["eval"] = {"metrics": [metric]}
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 2
    err = [e for e in t.events() if e["type"] == "error"]
    assert len(err) == 1 and key in err[0]["message"] and err[0]["error_type"] == "ConfigError"
    assert not os.path.exists(os.path.join(t.run_dir, "checkpoints"))


def test_select_best_and_early_stopping(tiny_model, tmp_path):
    """A learning rate that overshoots: eval loss falls, then rises. select best keeps the
    lowest-eval-loss checkpoint (which the save limit of 1 must not prune), early stopping
    ends the run at the first evaluation without improvement."""
    cfg = base_config(tiny_model, **{
        "train.learning_rate": 0.3, "train.scheduler": "constant", "train.warmup": 0, "train.max_steps": 20,
        "train.eval_steps": 2, "train.save_steps": 4, "train.save_total_limit": 1, "train.select": "best",
        "train.early_stopping_patience": 1})
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-4000:]
    evs = t.events()
    during = [(e["step"], e["eval_loss"]) for e in evs if e["type"] == "eval" and e["phase"] == "during"]
    best_step, best_loss = min(during, key=lambda d: d[1])
    last_step = during[-1][0]
    assert best_step < last_step < 20  # stopped early, after the best
    assert during[-1][1] > best_loss
    stop = next(e for e in evs if e["type"] == "early_stop")
    assert stop["step"] == last_step and stop["best_step"] == best_step and stop["by"] == "eval_loss"
    sel = next(e for e in evs if e["type"] == "select")
    assert sel["checkpoint"] == f"checkpoint-{best_step}" and sel["by"] == "eval_loss"
    assert sel["value"] == pytest.approx(best_loss)
    end = evs[-1]
    assert end["status"] == "completed" and end["checkpoint"] == f"checkpoint-{best_step}"
    assert end["eval_loss_after"] == pytest.approx(best_loss)
    # Every evaluated step was saved; the best survived the limit; adapter/ holds its weights.
    best_dir = os.path.join(t.run_dir, "checkpoints", f"checkpoint-{best_step}")
    assert os.path.exists(os.path.join(best_dir, "loractl-complete.json"))
    a = load_file(os.path.join(t.run_dir, "adapter", "adapter_model.safetensors"))
    b = load_file(os.path.join(best_dir, "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    last = load_file(os.path.join(t.run_dir, "checkpoints", f"checkpoint-{last_step}", "adapter_model.safetensors"))
    assert any((a[k] != last[k]).any() for k in a)


def test_select_best_needs_an_eval_set(tiny_model, tmp_path):
    cfg = base_config(tiny_model, **{"data.eval": "", "train.select": "best"})
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 2
    assert "train.select: needs an eval set" in [e for e in t.events() if e["type"] == "error"][0]["message"]


def test_at_checkpoints_records_the_metric_and_selects_by_it(tiny_model, tmp_path):
    cfg = eval_config(tiny_model, tmp_path, **{"train.max_steps": 4, "train.eval_steps": 2, "train.save_steps": 2,
                                               "train.select": "best"})
    cfg["eval"].update(at_checkpoints=True, primary="chrf", max_examples=3, generate=False)
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-4000:]
    evs = t.events()
    during = [e for e in evs if e["type"] == "eval" and e["phase"] == "during"]
    assert [e["step"] for e in during] == [2, 4]
    assert all("task/chrf" in e["metrics"] and "task/exact" in e["metrics"] for e in during)
    best = max(during, key=lambda e: e["metrics"]["task/chrf"])
    sel = next(e for e in evs if e["type"] == "select")
    assert sel["by"] == "chrf" and sel["step"] == best["step"] and sel["value"] == best["metrics"]["task/chrf"]
    assert "task_eval" not in types(evs)  # eval.generate false: no end-of-run generations


def test_signal_during_task_eval_completes_the_run(tiny_model, tmp_path):
    import signal
    cfg = base_config(tiny_model, **{"train.max_steps": 2, "train.eval_steps": 2, "train.save_steps": 2,
                                     "train.eval_batch_size": 1})
    cfg["eval"] = {"max_examples": 40, "max_new_tokens": 32}
    t = Trainer(tmp_path / "run", cfg)
    t.start()
    t.wait_for(lambda evs: any(e["type"] == "generate" for e in evs))
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(timeout=120) == 0, t.log()[-3000:]
    evs = t.events()
    assert evs[-1]["type"] == "end" and evs[-1]["status"] == "completed"
    assert "task_eval_interrupted" in [e.get("code") for e in evs if e["type"] == "warning"]
    assert "task_eval" not in types(evs)
    assert os.path.exists(os.path.join(t.run_dir, "adapter", "adapter_model.safetensors"))
    assert not os.path.exists(os.path.join(t.run_dir, "eval", "generations.jsonl"))


def test_best_from_events_keeps_to_usable_checkpoints_before_the_resume_step(tmp_path):
    import task_eval
    path = tmp_path / "events.jsonl"
    evs = [{"type": "eval", "phase": "before", "step": 0, "eval_loss": 0.1},
           {"type": "eval", "phase": "during", "step": 2, "eval_loss": 3.0, "metrics": {"task/chrf": 10}},
           {"type": "eval", "phase": "during", "step": 4, "eval_loss": 2.0, "metrics": {"task/chrf": 30}},
           {"type": "eval", "phase": "during", "step": 6, "eval_loss": 1.0, "metrics": {"task/chrf": 20}},
           {"type": "eval", "phase": "during", "step": 8, "eval_loss": 0.5, "metrics": {"task/chrf": 50}}]
    path.write_text("".join(json.dumps(e) + "\n" for e in evs) + '{"type": "eval", "phase"')
    everything = lambda step: True  # noqa: E731
    assert task_eval.best_from_events(str(path), "eval_loss", 6, everything) == (6, 1.0)
    assert task_eval.best_from_events(str(path), "eval_loss", 6, lambda s: s != 6) == (4, 2.0)
    assert task_eval.best_from_events(str(path), "chrf", 8, everything) == (8, 50)
    assert task_eval.best_from_events(str(path), "chrf", 6, everything) == (4, 30)
    assert task_eval.best_from_events(str(tmp_path / "none.jsonl"), "eval_loss", 6, everything) is None


def test_trained_adapter_stops_at_an_end_of_turn_token_that_is_not_eos(tmp_path):
    """A ChatML tokenizer whose <|im_end|> is not its eos: the adapter learns to end its
    turns with <|im_end|>, and the end-of-run generations stop there ("eos"), where a
    generator stopping at eos alone would run on to max_new_tokens."""
    import generation
    import make_tiny_model
    from conftest import EVAL_DATA, TRAIN_DATA
    model_dir = str(tmp_path / "model")
    make_tiny_model.main([model_dir, "--chatml", "--data", TRAIN_DATA, "--data", EVAL_DATA])
    cfg = base_config(model_dir, **{"train.max_steps": 30, "train.batch_size": 8, "train.eval_steps": 30,
                                    "train.save_steps": 30, "train.max_length": 128})
    cfg["eval"] = {"max_examples": 8, "max_new_tokens": 48}
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-4000:]
    rows = read_jsonl(os.path.join(t.run_dir, "eval", "generations.jsonl"))
    assert len(rows) == 8
    assert all(r["adapter"]["stopped"] == "eos" and r["adapter"]["tokens"] < 48 for r in rows), rows
    # The same adapter, stopping at eos only, does not end its turns.
    model, tok = generation.load_model(cfg, os.path.join(t.run_dir, "adapter"), device="cpu")
    assert tok.eos_token == "<|end|>"
    gen = generation.Generator(model, tok, max_new_tokens=48, batch_size=8)
    gen.stop_ids = [tok.eos_token_id]
    eos_only = gen.generate([r["messages"] for r in rows])
    assert sum(r["stopped"] == "max_tokens" for r in eos_only) >= 6, eos_only
