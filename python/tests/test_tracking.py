"""train.report_to with the real trackers: each one's files are read back with its own library.

The trackers are an extras set (python/requirements-tracking.txt); a tracker that is not
installed is skipped here, and CI installs the set (scripts/test.sh)."""

import glob
import importlib.util
import os

import pytest

from conftest import Trainer, base_config


def needs(module):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} not installed (python/requirements-tracking.txt)")


def train_with(tmp_path, tiny_model, trackers, env=None):
    cfg = base_config(tiny_model, **{"train.report_to": trackers, "train.max_steps": 4, "train.eval_steps": 2,
                                     "train.save_steps": 4})
    t = Trainer(tmp_path / "run", cfg)
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        code = t.run()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code == 0, t.log()[-3000:]
    return t


def wandb_records(path):
    """Reads W&B's offline transaction log (run-*.wandb): a 7-byte header (":W&B", magic,
    version), then LevelDB-log records (crc32, length, type) in 32 KiB blocks holding
    Record protobufs. wandb 0.31 ships no Python reader of its own."""
    import struct
    from wandb.proto import wandb_internal_pb2 as pb
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", data[:8]
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        buf += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


@needs("tensorboard")
def test_tensorboard_event_files(tmp_path, tiny_model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    t = train_with(tmp_path, tiny_model, ["tensorboard"])
    logdir = os.path.join(t.run_dir, "tensorboard")
    files = glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)
    assert files, f"no event file under {logdir}"
    acc = EventAccumulator(os.path.dirname(files[0]))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/loss" in tags, tags
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps and max(steps) <= 4


@needs("mlflow")
def test_mlflow_file_store(tmp_path, tiny_model, monkeypatch):
    store = tmp_path / "mlruns"
    uri = "file://" + str(store)
    # MLflow 3 keeps the file store behind an opt-out; it is the store that works offline
    # with mlflow-skinny alone.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    t = train_with(tmp_path, tiny_model, ["mlflow"], env={"MLFLOW_TRACKING_URI": uri})
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("loractl")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.run_name == os.path.basename(t.run_dir)
    assert "loss" in r.data.metrics and "eval_loss" in r.data.metrics, r.data.metrics
    history = client.get_metric_history(r.info.run_id, "loss")
    assert len(history) >= 2


@needs("wandb")
def test_wandb_offline_files(tmp_path, tiny_model):
    t = train_with(tmp_path, tiny_model, ["wandb"], env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    runs = glob.glob(os.path.join(t.run_dir, "wandb", "offline-run-*"))
    assert len(runs) == 1, os.listdir(t.run_dir)
    files = glob.glob(os.path.join(runs[0], "run-*.wandb"))
    assert files and os.path.getsize(files[0]) > 0
    keys = set()
    for rec in wandb_records(files[0]):
        if rec.WhichOneof("record_type") == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in rec.history.item)
    assert "train/loss" in keys, keys


def test_tracker_not_installed_is_a_config_error(tmp_path, tiny_model, monkeypatch):
    import train_lora
    cfg = base_config(tiny_model, **{"train.report_to": ["tensorboard"]})

    class FakeRun:
        run_dir = str(tmp_path)

    setup = train_lora.Setup.__new__(train_lora.Setup)
    setup.run, setup.cfg = FakeRun(), cfg
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(train_lora.ConfigError, match="requirements-tracking.txt"):
        setup.trackers()


def test_report_to_validated():
    import train_lora_support as s
    base = {"version": 1}
    cfg = base_config("/nonexistent", **{"train.report_to": ["tensorboard", "comet"]})
    with pytest.raises(s.ConfigError, match="train.report_to"):
        s.validate_config({**base, **cfg})
    cfg = base_config("/nonexistent")
    s.validate_config(cfg)  # absent: no tracker, and valid
