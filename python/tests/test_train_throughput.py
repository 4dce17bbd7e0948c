"""The trainer's throughput settings on the CPU with the tiny model: the pre-flight's
micro-batch, padding-free batches (rows truncated by the trainer, since TRL refuses
max_length with them) and the start event that reports what was used."""

from conftest import Trainer, base_config
from test_train_lora import build_in_process


def test_auto_micro_batch_and_padding_free_run(tiny_model, tmp_path, monkeypatch):
    cfg = base_config(tiny_model, **{
        "train.batch_size_auto": True, "train.batch_size": 2, "train.grad_accum": 4, "train.effective_batch_size": 8,
        "train.padding_free": True, "train.max_length": 40, "train.max_steps": 4, "train.save_steps": 0})
    monkeypatch.setenv("LORACTL_MICRO_BATCH", "8")
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-3000:]
    evs = t.events()
    start, end = evs[0], evs[-1]
    assert (start["batch_size"], start["grad_accum"]) == (8, 1)
    assert (start["padding_free"], start["liger"], start["attn_implementation"]) == (True, False, "default")
    assert end["status"] == "completed" and end["eval_loss_after"] < end["eval_loss_before"]


def test_padding_free_rows_are_truncated_to_max_length(tiny_model, tmp_path, monkeypatch):
    cfg = base_config(tiny_model, **{"train.padding_free": True, "train.max_length": 24})
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    assert setup.padding_free and trainer.args.padding_free and trainer.args.max_length is None
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert max(lengths) == 24 and len(lengths) == setup.train_examples
