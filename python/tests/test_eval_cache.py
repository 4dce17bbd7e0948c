"""The base model's evaluation cached across runs (eval_cache.py): keys, and the real trainer
reusing another run's evaluation with the same figures as computing it."""

import json
import os
import shutil

import pytest

import eval_cache
from conftest import Trainer, base_config

EVAL = {"generate": True, "max_examples": 6, "max_new_tokens": 8, "metrics": [{"name": "chrf", "kind": "chrf"}]}
VERSIONS = {"torch": "2", "transformers": "5"}


def cfg_for(model, **overrides):
    cfg = base_config(model, **{"train.max_steps": 3, "train.eval_steps": 0, "train.save_steps": 0, **overrides})
    cfg["eval"] = dict(EVAL)
    return cfg


def key(cfg, **kw):
    return eval_cache.cache_key(cfg, kw.get("versions", VERSIONS), kw.get("device", "cpu"), kw.get("precision", "fp32"))


@pytest.mark.parametrize("change,same", [
    ({"lora.r": 4}, True),
    ({"train.learning_rate": 1e-3}, True),
    ({"train.max_steps": 99}, True),
    ({"train.batch_size": 1}, True),
    ({"train.optim": "sgd"}, True),
    ({"train.seed": 7}, False),  # chooses the examples (and the split)
    ({"train.max_length": 32}, False),
    ({"train.eval_batch_size": 2}, False),
    ({"train.packing": True}, False),
    ({"train.assistant_only_loss": False}, False),
    ({"quantization.mode": "4bit"}, False),
    ({"model.revision": "abc"}, False),
])
def test_key_follows_what_shapes_the_evaluation(tiny_model, change, same):
    assert (key(cfg_for(tiny_model)) == key(cfg_for(tiny_model, **change))) == same


def test_key_follows_files_versions_and_device(tiny_model, tmp_path):
    cfg = cfg_for(tiny_model)
    k = key(cfg)
    assert key(cfg, versions={"torch": "3"}) != k
    assert key(cfg, device="NVIDIA H200") != k and key(cfg, precision="bf16") != k
    # The eval file's contents, not only its name.
    data = tmp_path / "eval.jsonl"
    shutil.copy(cfg["data"]["eval"], data)
    moved = cfg_for(tiny_model, **{"data.eval": str(data)})
    assert key(moved) == k
    with open(data, "a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}) + "\n")
    assert key(moved) != k
    # A model file changed in place (the chat template in tokenizer_config.json).
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    other = cfg_for(str(model))
    k2 = key(other)
    with open(model / "tokenizer_config.json") as f:
        tc = json.load(f)
    tc["chat_template"] = (tc.get("chat_template") or "") + " "
    with open(model / "tokenizer_config.json", "w") as f:
        json.dump(tc, f)
    assert key(other) != k2


def test_a_hub_model_is_keyed_by_its_cached_snapshot(tmp_path):
    """A hub id names files in the local Hugging Face cache: the snapshot's contents key
    the entry, so a model updated in the cache under the same name is a new key."""
    repo = tmp_path / "models--acme--tiny"
    for commit, text in (("aaaa", "{}"), ("bbbb", '{"hidden_size": 8}')):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(text)
    (repo / "refs").mkdir()
    ids = {}
    for commit in ("aaaa", "bbbb"):
        (repo / "refs" / "main").write_text(commit)
        ids[commit] = eval_cache.model_identity("acme/tiny", cache_dir=str(tmp_path))
    assert ids["aaaa"] != ids["bbbb"]
    assert eval_cache.model_identity("acme/tiny", cache_dir=str(tmp_path)) == ids["bbbb"]
    # Not cached: the name alone (no download is attempted).
    assert eval_cache.model_identity("acme/absent", cache_dir=str(tmp_path)) == eval_cache.fingerprint("acme/absent")


def events_of(t, type_):
    return [e for e in t.events() if e["type"] == type_]


def read_generations(t):
    with open(os.path.join(t.run_dir, "eval", "generations.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_runs_share_the_base_evaluation(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    # Without the cache: the reference figures.
    plain = Trainer(tmp_path / "plain", cfg_for(tiny_model, **{"lora.r": 8}))
    assert plain.run() == 0, plain.log()[-3000:]
    assert not events_of(plain, "base_eval_cache")

    monkeypatch.setenv(eval_cache.ENV, str(cache))
    first = Trainer(tmp_path / "first", cfg_for(tiny_model, **{"lora.r": 4}))
    assert first.run() == 0, first.log()[-3000:]
    # The same settings as the plain run, so its adapter must come out the same too.
    second = Trainer(tmp_path / "second", cfg_for(tiny_model, **{"lora.r": 8}))
    assert second.run() == 0, second.log()[-3000:]

    assert [(e["phase"], e["status"]) for e in events_of(first, "base_eval_cache")] == \
        [("before", "stored"), ("generate", "stored")]
    reused = events_of(second, "base_eval_cache")
    assert [(e["phase"], e["status"], e["stored_by"]) for e in reused] == \
        [("before", "reused", "first"), ("generate", "reused", "first")]
    # The second run generated only the adapter's replies.
    assert {e["phase"] for e in events_of(second, "generate")} == {"adapter"}

    def before(t):
        return next(e for e in events_of(t, "eval") if e["phase"] == "before")
    # Reused figures equal computed ones: the eval event, the per-example losses, the replies.
    assert before(second)["eval_loss"] == before(first)["eval_loss"] == pytest.approx(before(plain)["eval_loss"], abs=1e-6)
    assert events_of(second, "end")[-1]["eval_loss_before"] == pytest.approx(before(plain)["eval_loss"], abs=1e-6)
    with open(os.path.join(second.run_dir, "eval", "example_losses.json")) as f, \
            open(os.path.join(plain.run_dir, "eval", "example_losses.json")) as g:
        mine, ref = json.load(f), json.load(g)
    assert mine["before"] == pytest.approx(ref["before"], abs=1e-6)
    assert mine["after"] == pytest.approx(ref["after"], abs=1e-6)  # same LoRA settings: same adapter
    for a, b in zip(read_generations(second), read_generations(plain)):
        assert a["base"] == b["base"]  # text, tokens, stop reason and the scores computed afresh
        assert a["adapter"]["text"] == b["adapter"]["text"]


def test_a_damaged_entry_is_computed_again(tiny_model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(eval_cache.ENV, str(cache))
    cfg = cfg_for(tiny_model)
    cfg["eval"]["generate"] = False
    t = Trainer(tmp_path / "a", cfg)
    assert t.run() == 0, t.log()[-3000:]
    (entry,) = os.listdir(cache)
    with open(cache / entry / "before.json", "w") as f:
        f.write('{"metrics": {"eval_loss"')  # cut off
    t2 = Trainer(tmp_path / "b", cfg)
    assert t2.run() == 0, t2.log()[-3000:]
    assert [w["code"] for w in events_of(t2, "warning") if w["code"].startswith("base_eval")] == \
        ["base_eval_cache_unreadable"]
    assert [e["status"] for e in events_of(t2, "base_eval_cache")] == ["stored"]
    with open(cache / entry / "before.json") as f:
        assert json.load(f)["stored_by"] == "b"


def test_parallel_runs_compute_the_entry_once(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv(eval_cache.ENV, str(tmp_path / "cache"))
    runs = []
    for i, lr in enumerate((0.02, 0.005)):
        cfg = cfg_for(tiny_model, **{"train.learning_rate": lr})
        cfg["eval"]["generate"] = False
        runs.append(Trainer(tmp_path / f"p{i}", cfg))
    for t in runs:
        t.start()
    for t in runs:
        assert t.proc.wait(timeout=300) == 0, t.log()[-3000:]
    statuses = sorted(e["status"] for t in runs for e in events_of(t, "base_eval_cache"))
    assert statuses == ["reused", "stored"]
    losses = {next(e["eval_loss"] for e in events_of(t, "eval") if e["phase"] == "before") for t in runs}
    assert len(losses) == 1


def test_an_unusable_cache_never_fails_the_run(tiny_model, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(eval_cache.ENV, str(blocker / "cache"))  # under a file: cannot be created
    cfg = cfg_for(tiny_model)
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-3000:]
    assert [w["code"] for w in events_of(t, "warning") if w["code"].startswith("base_eval")] == \
        ["base_eval_cache_unavailable"]
    assert not events_of(t, "base_eval_cache")
    assert os.path.exists(os.path.join(t.run_dir, "eval", "generations.jsonl"))
