"""Shared fixtures: a tiny model built from the bundled sample data, resolved configs, and
a helper that runs the real trainer in a subprocess and reads back its events."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PY_DIR)
TRAINER = os.path.join(PY_DIR, "train_lora.py")
TRAIN_DATA = os.path.join(REPO, "examples", "data", "train.jsonl")
EVAL_DATA = os.path.join(REPO, "examples", "data", "eval.jsonl")
sys.path.insert(0, PY_DIR)

import make_tiny_model  # noqa: E402


def base_config(model_dir, **overrides):
    """A small, fast resolved.json (contract version 1); overrides are "section.key": value."""
    cfg = {
        "version": 1,
        "name": "pytest",
        "model": {"name_or_path": model_dir, "revision": "", "trust_remote_code": False},
        "data": {"train": TRAIN_DATA, "eval": EVAL_DATA, "eval_split": 0},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "bias": "none",
                 "use_rslora": False, "use_dora": False},
        "quantization": {"mode": "none", "quant_type": "nf4", "double_quant": True},
        "train": {
            "epochs": 1, "max_steps": 10, "learning_rate": 0.02, "batch_size": 4, "eval_batch_size": 8,
            "grad_accum": 1, "max_length": 64, "warmup": 0.1, "scheduler": "cosine", "seed": 42,
            "gradient_checkpointing": False, "packing": False, "assistant_only_loss": "auto",
            "logging_steps": 2, "eval_steps": 5, "save_steps": 4, "save_total_limit": 0,
            "precision": "auto", "weight_decay": 0.0, "max_grad_norm": 1.0, "optim": "adamw_torch",
            "loss_type": "nll",
        },
        # Most tests are about training: the task evaluation (tested in test_task_eval.py)
        # is off so that they stay fast.
        "eval": {"generate": False},
    }
    for path, value in overrides.items():
        section, key = path.split(".")
        cfg[section][key] = value
    return cfg


def trainer_env(tmp_root):
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": os.path.join(tmp_root, "hf-home"),
        "OMP_NUM_THREADS": "1",  # two cores shared by everything; also keeps runs comparable
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class Trainer:
    """One run directory and the trainer subprocess working in it."""

    def __init__(self, run_dir, cfg):
        self.run_dir = str(run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        self.config = os.path.join(self.run_dir, "resolved.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f, indent=1)
        self.proc = None

    def argv(self, *extra):
        return [sys.executable, TRAINER, "--config", self.config, "--run-dir", self.run_dir, *extra]

    def start(self, *extra):
        log = open(os.path.join(self.run_dir, "train.log"), "ab")
        self.proc = subprocess.Popen(self.argv(*extra), stdout=log, stderr=subprocess.STDOUT,
                                     env=trainer_env(self.run_dir))
        log.close()
        return self.proc

    def run(self, *extra, timeout=300):
        self.start(*extra)
        return self.proc.wait(timeout=timeout)

    def events(self):
        path = os.path.join(self.run_dir, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def log(self):
        with open(os.path.join(self.run_dir, "train.log"), errors="replace") as f:
            return f.read()

    def wait_for(self, predicate, timeout=120):
        """Poll events until predicate(events) holds; fail if the trainer exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if predicate(evs):
                return evs
            if self.proc.poll() is not None:
                pytest.fail(f"trainer exited {self.proc.returncode} while waiting:\n{self.log()[-3000:]}")
            time.sleep(0.02)
        self.proc.send_signal(signal.SIGKILL)
        pytest.fail("timed out waiting for events")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiny-model"))
    make_tiny_model.main([out, "--data", TRAIN_DATA, "--data", EVAL_DATA])
    return out


@pytest.fixture(scope="session")
def tiny_model_no_markers(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiny-model-no-markers"))
    make_tiny_model.main([out, "--data", TRAIN_DATA, "--data", EVAL_DATA, "--no-generation-markers"])
    return out


@pytest.fixture(scope="session")
def completed_run(tmp_path_factory, tiny_model):
    """One full short CPU run that several tests inspect."""
    t = Trainer(tmp_path_factory.mktemp("run-completed"), base_config(tiny_model))
    rc = t.run()
    assert rc == 0, t.log()[-4000:]
    return t


def types(events):
    return [e["type"] for e in events]
