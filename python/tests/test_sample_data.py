"""The bundled Acme sample data: reproducible from its generator, one system prompt, no
duplicate or leaked user turns, and small enough for a CPU quickstart."""

import json
import os
import subprocess
import sys

from conftest import EVAL_DATA, REPO, TRAIN_DATA


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def norm(text):
    return " ".join(text.split())


def test_generator_reproduces_the_committed_files(tmp_path):
    subprocess.run([sys.executable, os.path.join(REPO, "examples", "data", "generate.py"), "--out-dir",
                    str(tmp_path)], check=True, capture_output=True)
    for name, committed in (("train.jsonl", TRAIN_DATA), ("eval.jsonl", EVAL_DATA)):
        with open(committed, "rb") as a, open(tmp_path / name, "rb") as b:
            assert a.read() == b.read(), f"{name} is stale: run examples/data/generate.py"


def test_shape_and_hygiene():
    train, evalset = rows(TRAIN_DATA), rows(EVAL_DATA)
    assert len(train) == 300 and len(evalset) == 40
    systems = set()
    for r in train + evalset:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant"] and all(m["content"].strip() for m in r["messages"])
        systems.add(r["messages"][0]["content"])
    assert systems == {"You are a customer support bot for Acme."}
    train_users = [norm(r["messages"][1]["content"]) for r in train]
    eval_users = [norm(r["messages"][1]["content"]) for r in evalset]
    assert len(set(train_users)) == len(train_users) and len(set(eval_users)) == len(eval_users)
    assert not set(train_users) & set(eval_users)
