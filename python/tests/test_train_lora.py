"""The trainer end to end on the CPU: a tiny random Llama, the bundled sample data, real
PEFT + TRL. Each test runs train_lora.py as the controller does (a subprocess with
--config/--run-dir) and checks events.jsonl, checkpoints, the adapter and the exit code."""

import json
import os
import re
import shutil
import signal
import threading
import time

import make_tiny_model
import pytest
from conftest import Trainer, base_config, types
from safetensors.numpy import load_file

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")


def checkpoints(run_dir):
    root = os.path.join(run_dir, "checkpoints")
    return sorted((int(n.split("-")[1]), os.path.join(root, n)) for n in os.listdir(root) if n.startswith("checkpoint-"))


def marker(path):
    with open(os.path.join(path, "loractl-complete.json")) as f:
        return json.load(f)


# ------------------------------------------------------------ a completed run

def test_events_arrive_in_order(completed_run):
    evs = completed_run.events()
    kinds = types(evs)
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert all(RFC3339.match(e["time"]) for e in evs)
    start = evs[0]
    assert start["device"] == "cpu" and start["precision"] == "fp32"
    assert set(start["versions"]) == {"python", "torch", "transformers", "peft", "trl", "accelerate", "datasets"}
    assert start["total_steps"] == 10 and start["resume_step"] == 0 and start["resume_from"] == ""
    assert start["train_examples"] == 300 and start["eval_examples"] == 40
    assert start["assistant_only_loss"] is True
    assert 0 < start["trainable_params"] < start["total_params"]
    # before-eval precedes the first log; after-eval follows the last checkpoint.
    phases = [(i, e["phase"]) for i, e in enumerate(evs) if e["type"] == "eval"]
    assert phases[0][1] == "before" and phases[0][0] < kinds.index("log")
    assert phases[-1][1] == "after" and phases[-1][0] > max(i for i, k in enumerate(kinds) if k == "checkpoint")
    assert {"during"} <= {p for _, p in phases}
    steps = [e["step"] for e in evs if e["type"] == "log"]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 10
    for e in evs:
        if e["type"] == "log":
            assert e["total_steps"] == 10 and e["tokens_per_second"] > 0 and e["num_tokens"] > 0
            assert e["learning_rate"] is not None and e["grad_norm"] is not None


def test_loss_falls_and_eval_improves(completed_run):
    evs = completed_run.events()
    losses = [e["loss"] for e in evs if e["type"] == "log"]
    assert losses[-1] < losses[0]
    end = evs[-1]
    assert end["status"] == "completed" and end["step"] == 10
    assert end["eval_loss_after"] < end["eval_loss_before"]
    before = [e["eval_loss"] for e in evs if e["type"] == "eval" and e["phase"] == "before"]
    assert before == [end["eval_loss_before"]]
    assert end["metrics"]["train_runtime"] > 0 and "train_loss" in end["metrics"]
    assert "peak_memory" not in end  # CUDA only


def test_checkpoints_are_complete(completed_run):
    evs = completed_run.events()
    announced = [(e["step"], e["path"]) for e in evs if e["type"] == "checkpoint"]
    assert [s for s, _ in announced] == [4, 8, 10]
    assert checkpoints(completed_run.run_dir) == announced
    before = evs[-1]["eval_loss_before"]
    for step, path in announced:
        assert os.path.isabs(path)
        m = marker(path)
        assert m["step"] == step and m["eval_loss_before"] == before and RFC3339.match(m["time"])
        assert os.path.exists(os.path.join(path, "adapter_model.safetensors"))
        assert os.path.exists(os.path.join(path, "trainer_state.json"))


def test_adapter_loads_with_peft(completed_run, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = os.path.join(completed_run.run_dir, "adapter")
    assert completed_run.events()[-1]["adapter_path"] == adapter
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert os.path.exists(os.path.join(adapter, name)), name
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, adapter)
    tok = AutoTokenizer.from_pretrained(adapter)
    ids = tok.apply_chat_template([{"role": "user", "content": "How do I reset my password?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        tuned = model(ids).logits
        with model.disable_adapter():
            plain = model(ids).logits
    assert not torch.allclose(tuned, plain), "the adapter changed nothing"


def test_same_config_gives_identical_adapter(completed_run, tiny_model, tmp_path):
    twin = Trainer(tmp_path / "twin", base_config(tiny_model))
    assert twin.run() == 0, twin.log()[-3000:]
    a = load_file(os.path.join(completed_run.run_dir, "adapter", "adapter_model.safetensors"))
    b = load_file(os.path.join(twin.run_dir, "adapter", "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and len(a) > 0
    for name in a:
        assert (a[name] == b[name]).all(), name


def test_tokenizing_while_the_model_loads_trains_the_same_adapter(completed_run, tiny_model, tmp_path, monkeypatch):
    """build() may tokenize in a thread while the model loads (the default with CUDA,
    forced here); it trains the adapter the same as doing them in turn (completed_run, the
    CPU's default). The end event reports the part of the tokenizing the load did not
    hide, and with the overlap the tokenizing's own time."""
    monkeypatch.setenv("LORACTL_OVERLAP_SETUP", "1")
    overlapped = Trainer(tmp_path / "overlapped", base_config(tiny_model))
    assert overlapped.run() == 0, overlapped.log()[-3000:]
    a = load_file(os.path.join(overlapped.run_dir, "adapter", "adapter_model.safetensors"))
    b = load_file(os.path.join(completed_run.run_dir, "adapter", "adapter_model.safetensors"))
    assert sorted(a) == sorted(b) and len(a) > 0
    for name in a:
        assert (a[name] == b[name]).all(), name
    timings = [e["timings"] for t in (overlapped, completed_run) for e in t.events() if e["type"] == "end"]
    assert "tokenize_total" in timings[0] and "tokenize_total" not in timings[1]
    assert timings[0]["tokenize"] <= timings[0]["tokenize_total"]


def test_a_missing_target_module_is_refused_without_waiting_for_the_tokenizing(tiny_model, tmp_path, monkeypatch):
    """check_targets runs as soon as the model is loaded, while the data may still be
    tokenizing (here: a tokenizing that would take 30 s)."""
    import train_lora
    monkeypatch.setenv("LORACTL_OVERLAP_SETUP", "1")
    release = threading.Event()
    prepare = train_lora.Setup.prepare_data

    def slow_prepare(self, rows, tokenizer, name="train"):
        release.wait(30)
        return prepare(self, rows, tokenizer, name)
    monkeypatch.setattr(train_lora.Setup, "prepare_data", slow_prepare)
    cfg = base_config(tiny_model, **{"lora.target_modules": ["nope"]})
    started = time.monotonic()
    try:
        with pytest.raises(train_lora.ConfigError, match="lora.target_modules: nope not found"):
            build_in_process(cfg, tmp_path, monkeypatch)
        assert time.monotonic() - started < 25
    finally:
        release.set()


# ------------------------------------------------------------ interrupt and resume

def test_sigint_saves_checkpoint_then_resume_continues(tiny_model, tmp_path):
    cfg = base_config(tiny_model, **{"train.max_steps": 40, "train.logging_steps": 1,
                                     "train.save_steps": 1000, "train.eval_steps": 1000})
    t = Trainer(tmp_path / "run", cfg)
    proc = t.start()
    t.wait_for(lambda evs: any(e["type"] == "log" and e["step"] >= 3 for e in evs))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # a second Ctrl-C must not break the checkpoint
    assert proc.wait(timeout=120) == 75, t.log()[-3000:]
    evs = t.events()
    end = evs[-1]
    assert end["type"] == "end" and end["status"] == "interrupted" and end["signal"] == "SIGINT"
    ck = [e for e in evs if e["type"] == "checkpoint"]
    assert len(ck) == 1 and ck[0]["step"] == end["step"] and 3 <= end["step"] < 40
    stopped = end["step"]
    assert marker(ck[0]["path"])["step"] == stopped
    assert not os.path.exists(os.path.join(t.run_dir, "adapter"))

    # An incomplete newer checkpoint (a killed save) must be ignored by --resume auto.
    os.makedirs(os.path.join(t.run_dir, "checkpoints", f"checkpoint-{stopped + 5}"))
    assert t.run("--resume", "auto") == 0, t.log()[-3000:]
    evs = t.events()
    second = evs[max(i for i, e in enumerate(evs) if e["type"] == "start"):]
    start = second[0]
    assert start["resume_from"] == ck[0]["path"] and start["resume_step"] == stopped
    assert "before" not in [e["phase"] for e in second if e["type"] == "eval"]
    logs = [e["step"] for e in second if e["type"] == "log"]
    assert logs[0] == stopped + 1 and logs[-1] == 40
    end2 = second[-1]
    assert end2["status"] == "completed" and end2["step"] == 40
    assert end2["eval_loss_before"] == end["eval_loss_before"] is not None

    # Resuming a finished run (a requeue after the last save) trains nothing more.
    assert t.run("--resume", "auto") == 0, t.log()[-3000:]
    evs = t.events()
    third = evs[max(i for i, e in enumerate(evs) if e["type"] == "start"):]
    assert third[0]["resume_step"] == 40 and "log" not in types(third) and "checkpoint" not in types(third)
    assert [(e["phase"], e["step"]) for e in third if e["type"] == "eval"] == [("after", 40)]
    assert third[-1]["status"] == "completed" and third[-1]["step"] == 40
    assert third[-1]["eval_loss_after"] == pytest.approx(end2["eval_loss_after"], rel=1e-5)


def test_resume_path_must_be_complete(tiny_model, tmp_path):
    t = Trainer(tmp_path / "run", base_config(tiny_model))
    incomplete = os.path.join(t.run_dir, "checkpoints", "checkpoint-4")
    os.makedirs(incomplete)
    assert t.run("--resume", incomplete) == 2
    err = [e for e in t.events() if e["type"] == "error"][0]
    assert "incomplete" in err["message"] and t.events()[-1]["status"] == "failed"


def test_fresh_start_refuses_to_mix_with_complete_checkpoints(completed_run, tmp_path, tiny_model):
    t = Trainer(tmp_path / "run", base_config(tiny_model))
    step, src = checkpoints(completed_run.run_dir)[0]
    shutil.copytree(src, os.path.join(t.run_dir, "checkpoints", f"checkpoint-{step}"))
    assert t.run() == 2
    assert "--resume auto" in [e for e in t.events() if e["type"] == "error"][0]["message"]


def test_resume_auto_falls_back_past_a_checkpoint_missing_its_optimizer(completed_run, tmp_path, tiny_model):
    t = Trainer(tmp_path / "run", base_config(tiny_model))
    cks = checkpoints(completed_run.run_dir)
    assert len(cks) >= 2
    for step, src in cks[-2:]:
        shutil.copytree(src, os.path.join(t.run_dir, "checkpoints", f"checkpoint-{step}"))
    (older, _), (newest, _) = cks[-2], cks[-1]
    os.remove(os.path.join(t.run_dir, "checkpoints", f"checkpoint-{newest}", "optimizer.pt"))
    assert t.run("--resume", "auto") == 0, t.log()[-3000:]
    evs = t.events()
    assert evs[0]["type"] == "start" and evs[0]["resume_step"] == older
    warned = [e for e in evs if e["type"] == "warning" and e["code"] == "checkpoint_skipped"]
    assert [w["message"] for w in warned] == [f"checkpoint-{newest} is not used: optimizer.pt is missing"]
    assert evs[-1]["eval_loss_after"] == completed_run.events()[-1]["eval_loss_after"]


# ------------------------------------------------------------ refusals and warnings

@pytest.mark.parametrize("section,key,value,needle", [
    ("lora", "r", 0, "lora.r: must be in [1, 4096], got 0"),
    ("train", "learning_rate", -1, "train.learning_rate: must be in (0, 1), got -1"),
    ("data", "train", "/nonexistent/train.jsonl", "data.train: /nonexistent/train.jsonl: no such file"),
])
def test_invalid_config_exits_2(tiny_model, tmp_path, section, key, value, needle):
    t = Trainer(tmp_path / "run", base_config(tiny_model, **{f"{section}.{key}": value}))
    assert t.run(timeout=60) == 2
    evs = t.events()
    assert types(evs) == ["error", "end"]
    assert evs[0]["error_type"] == "ConfigError" and needle in evs[0]["message"]


def test_qlora_on_cpu_is_refused_before_loading(tiny_model, tmp_path):
    t = Trainer(tmp_path / "run", base_config(tiny_model, **{"quantization.mode": "4bit"}))
    assert t.run(timeout=120) == 2
    err = t.events()[0]
    assert err["type"] == "error" and "quantization.mode 4bit" in err["message"] and "CUDA" in err["message"]
    assert "Loading weights" not in t.log()


def test_template_without_markers_warns_and_trains_whole_sequence(tiny_model_no_markers, tmp_path):
    cfg = base_config(tiny_model_no_markers, **{"data.eval": "", "train.max_steps": 2, "train.save_steps": 0})
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-3000:]
    evs = t.events()
    assert evs[0]["type"] == "start" and evs[0]["assistant_only_loss"] is False and evs[0]["eval_examples"] == 0
    codes = [e["code"] for e in evs if e["type"] == "warning"]
    assert "no_generation_markers" in codes and "no_eval_set" in codes
    end = evs[-1]
    assert end["status"] == "completed" and end["eval_loss_before"] is None and end["eval_loss_after"] is None
    assert [e["step"] for e in evs if e["type"] == "checkpoint"] == [2]


def test_signal_before_training_exits_75_without_checkpoint(tiny_model, tmp_path):
    # A long "before" evaluation (300 rows, one at a time) is where the signal lands.
    cfg = base_config(tiny_model, **{"data.eval": base_config(tiny_model)["data"]["train"],
                                     "train.eval_batch_size": 1})
    t = Trainer(tmp_path / "run", cfg)
    proc = t.start()
    t.wait_for(lambda evs: "start" in types(evs))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 75, t.log()[-3000:]
    evs = t.events()
    assert types(evs) == ["start", "end"]
    assert evs[-1]["status"] == "interrupted" and evs[-1]["signal"] == "SIGTERM" and evs[-1]["step"] == 0
    ckpt_root = os.path.join(t.run_dir, "checkpoints")
    assert not os.path.exists(ckpt_root) or not os.listdir(ckpt_root)


def test_every_knob_on_cpu(tiny_model, tmp_path):
    """Gradient checkpointing, packing, an eval split, per-epoch eval and save, a warmup in
    steps, rsLoRA + DoRA, gradient accumulation and a checkpoint limit, all in one run."""
    cfg = base_config(tiny_model, **{
        "train.gradient_checkpointing": True, "train.packing": True, "data.eval": "", "data.eval_split": 0.1,
        "train.eval_steps": 0, "train.save_steps": 0, "train.warmup": 2, "lora.use_rslora": True,
        "lora.use_dora": True, "train.scheduler": "linear", "train.max_steps": -1, "train.epochs": 2,
        "train.batch_size": 8, "train.max_length": 128, "train.grad_accum": 2, "train.save_total_limit": 1})
    t = Trainer(tmp_path / "run", cfg)
    assert t.run() == 0, t.log()[-3000:]
    evs = t.events()
    start, end = evs[0], evs[-1]
    assert start["train_examples"] == 270 and start["eval_examples"] == 30
    assert end["step"] == start["total_steps"] and end["eval_loss_after"] < end["eval_loss_before"]
    assert [e["phase"] for e in evs if e["type"] == "eval"] == ["before", "during", "during", "after"]
    announced = [e["step"] for e in evs if e["type"] == "checkpoint"]
    assert len(announced) == 2 and announced[-1] == end["step"]
    assert [s for s, _ in checkpoints(t.run_dir)] == [end["step"]]  # save_total_limit 1


def setup_for(cfg, tmp_path):
    """train_lora.Setup in-process, for the checks that need a model or tokenizer but no run."""
    import train_lora
    from train_lora_support import Events
    run = train_lora.Run(None, str(tmp_path), Events(str(tmp_path / "events.jsonl")))
    return train_lora.Setup(run, cfg)


@pytest.mark.parametrize("key,value", [("optim", "adamw_nope"), ("scheduler", "cosine_nope")])
def test_unknown_optimizer_or_scheduler_is_refused(tiny_model, tmp_path, key, value):
    from train_lora_support import ConfigError
    with pytest.raises(ConfigError, match=f"train.{key}: unknown name '{value}'; known: "):
        setup_for(base_config(tiny_model, **{f"train.{key}": value}), tmp_path).check_names()


def test_missing_target_module_lists_the_models_modules(tiny_model, tmp_path):
    from train_lora_support import ConfigError
    from transformers import AutoModelForCausalLM
    setup = setup_for(base_config(tiny_model, **{"lora.target_modules": ["q_proj", "qkv"]}), tmp_path)
    with pytest.raises(ConfigError, match="lora.target_modules: qkv not found .*: down_proj, gate_proj, k_proj"):
        setup.check_targets(AutoModelForCausalLM.from_pretrained(tiny_model))


@pytest.mark.parametrize("want,markers,effective,warned", [
    ("auto", True, True, False),
    ("auto", False, False, True),
    (False, True, False, False),
    (True, True, True, False),
    (True, False, "error", False),
])
def test_assistant_only_loss_decision(tiny_model, tiny_model_no_markers, tmp_path, want, markers, effective, warned):
    from train_lora_support import ConfigError
    from transformers import AutoTokenizer
    model = tiny_model if markers else tiny_model_no_markers
    setup = setup_for(base_config(model, **{"train.assistant_only_loss": want}), tmp_path)
    tok = AutoTokenizer.from_pretrained(model)
    if effective == "error":
        with pytest.raises(ConfigError, match="train.assistant_only_loss is true .* no {% generation %} markers"):
            setup.decide_assistant_only(tok)
        return
    assert setup.decide_assistant_only(tok) is effective
    assert [c for c, _ in setup.events.pending] == (["no_generation_markers"] if warned else [])


# ------------------------------------------------------------ per-turn weights

def chat(*turns, weights=(), system=None):
    """A chat row: turns alternate user/assistant; weights[i] (None: no key) goes on the i-th answer."""
    msgs = [{"role": "system", "content": system}] if system else []
    answers = iter(weights)
    for i, text in enumerate(turns):
        m = {"role": "user" if i % 2 == 0 else "assistant", "content": text}
        if i % 2:
            w = next(answers, None)
            if w is not None:
                m["weight"] = w
        msgs.append(m)
    return json.dumps({"messages": msgs})


WEIGHTED_ROWS = [
    chat("q one", "AAAA AAAA", "q two", "BBBB BBBB", weights=[0, 1], system="be brief"),
    chat("q three", "BBBB", "q four", "AAAA", weights=[None, 0]),
    chat("q five", "BBBB BBBB BBBB"),
    chat("q six", "AAAA", "q seven", "AAAA AAAA", "q eight", "BBBB", weights=[0, 0.0, 1]),
]


@pytest.fixture(scope="module")
def weighted_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("weighted")
    (d / "train.jsonl").write_text("\n".join(WEIGHTED_ROWS) + "\n")
    # The eval file with a BOM and CRLF line ends, which the trainer must read like the data check.
    (d / "eval.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(WEIGHTED_ROWS[:2]).encode() + b"\r\n")
    return d


@pytest.fixture(scope="module")
def weighted_models(tmp_path_factory, weighted_data):
    out = {}
    for name, extra in (("markers", []), ("plain", ["--no-generation-markers"])):
        d = str(tmp_path_factory.mktemp(f"weighted-model-{name}"))
        make_tiny_model.main([d, "--data", str(weighted_data / "train.jsonl"), *extra])
        out[name] = d
    return out


def weighted_config(model, data, **overrides):
    return base_config(model, **{"data.train": str(data / "train.jsonl"), "data.eval": str(data / "eval.jsonl"),
                                 "train.max_steps": 2, "train.batch_size": 2, "train.save_steps": 0, **overrides})


def build_in_process(cfg, tmp_path, monkeypatch):
    """Setup.build() in this process, without enable_full_determinism's process-wide switches."""
    import transformers.trainer_utils
    monkeypatch.setattr(transformers.trainer_utils, "enable_full_determinism", transformers.trainer_utils.set_seed)
    setup = setup_for(cfg, tmp_path)
    return setup, setup.build()


def trained_words(dataset, tok):
    """Per row, the sorted tokens that carry loss (labels other than -100)."""
    out = []
    for row in dataset:
        words = tok.convert_ids_to_tokens(row["input_ids"])
        out.append(sorted(w for w, label in zip(words, row["labels"]) if label != -100))
    return out


def test_weight0_turns_carry_no_loss(weighted_models, weighted_data, tmp_path, monkeypatch):
    setup, trainer = build_in_process(weighted_config(weighted_models["markers"], weighted_data), tmp_path, monkeypatch)
    assert setup.assistant_only_loss is True and setup.weight0 == 4 + 2
    tok = trainer.processing_class
    end = "<|end|>"
    # Only the weight-1 answers (BBBB ...) and their end tokens are labelled; every AAAA is -100.
    want = [sorted(["BBBB", "BBBB", end]), sorted(["BBBB", end]), sorted(["BBBB"] * 3 + [end]),
            sorted(["BBBB", end])]
    assert sorted(trained_words(trainer.train_dataset, tok)) == sorted(want)
    context = 0
    for row in trainer.train_dataset:
        words = tok.convert_ids_to_tokens(row["input_ids"])
        context += "AAAA" in words  # the weight-0 turns are still there, only not targets
        for i, (w, label) in enumerate(zip(words, row["labels"])):
            if w == "AAAA":
                assert label == -100 and row["labels"][i + 1] == -100  # the next AAAA or its end token
    assert context == 3
    # Evaluation scores the same tokens (the eval file has a BOM and CRLF line ends).
    assert sorted(trained_words(trainer.eval_dataset, tok)) == sorted(want[:2])
    assert [c for c, _ in setup.events.pending] == []


def messages_only(rows):
    """Rows as the trainer gave them to TRL before it tokenized every mode itself: a dataset
    of role/content messages, which SFTTrainer tokenizes on its own."""
    from datasets import Dataset
    return Dataset.from_list([{"messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]]}
                              for r in rows])


@pytest.mark.parametrize("markers,overrides,aol", [
    (True, {}, True),
    (True, {"train.assistant_only_loss": False}, False),
    (False, {}, False),
    (True, {"train.packing": True, "train.max_length": 128, "data.eval": "", "data.eval_split": 0.1}, True),
    (True, {"train.packing": True, "train.max_length": 128, "data.eval": "", "data.eval_split": 0.1,
            "train.assistant_only_loss": False}, False),
])
def test_pretokenized_data_matches_trl_own_tokenization(tiny_model, tiny_model_no_markers, tmp_path, monkeypatch,
                                                        markers, overrides, aol):
    """Without tool keys or weights the rows tokenized by the trainer equal what SFTTrainer
    makes of the plain messages itself, in both loss modes, truncated or packed: the same
    input_ids and labels (and packed lengths), in the same order, so runs are unchanged. The
    eval split picks the rows that train_test_split of the whole file picked."""
    from datasets import Dataset
    from train_lora_support import read_chat_jsonl
    from trl import SFTTrainer
    cfg = base_config(tiny_model if markers else tiny_model_no_markers, **{"train.max_length": 40, **overrides})
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    assert setup.assistant_only_loss is aol
    rows_train, rows_eval = setup.load_data()
    raw_train, raw_eval = messages_only(rows_train), messages_only(rows_eval)
    if cfg["data"]["eval_split"]:
        whole = Dataset.from_list([{"messages": r["messages"]} for r in read_chat_jsonl(cfg["data"]["train"])])
        parts = whole.train_test_split(test_size=cfg["data"]["eval_split"], seed=cfg["train"]["seed"], shuffle=True)
        assert parts["train"]["messages"] == raw_train["messages"] and parts["test"]["messages"] == raw_eval["messages"]
    own = SFTTrainer(model=trainer.model, args=setup.sft_config(), train_dataset=raw_train, eval_dataset=raw_eval,
                     processing_class=trainer.processing_class)
    for ours, theirs in ((trainer.train_dataset, own.train_dataset), (trainer.eval_dataset, own.eval_dataset)):
        assert len(ours) == len(theirs) > 0
        assert ours["input_ids"] == theirs["input_ids"] and ours["labels"] == theirs["labels"]
        if cfg["train"]["packing"]:
            assert ours["seq_lengths"] == theirs["seq_lengths"]
        # assistant-only: prompts carry no loss; whole sequence: every token does
        assert any(-100 in labels for labels in ours["labels"]) is aol


@pytest.mark.parametrize("aol,chunk_rows", [("auto", None), (False, None), ("auto", 7)])
def test_plain_data_trains_the_adapter_trl_would(tiny_model, tmp_path, monkeypatch, aol, chunk_rows):
    """The trainer's own tokenization trains the very adapter that SFTTrainer trains from the
    plain messages (how the trainer ran before it tokenized the rows itself), bit for bit;
    also when the rows go to Arrow in many chunks."""
    import torch
    import train_lora
    if chunk_rows:
        monkeypatch.setattr(train_lora, "CHUNK_ROWS", chunk_rows)
    from peft import get_peft_model_state_dict
    from transformers import set_seed
    from trl import SFTTrainer
    cfg = base_config(tiny_model, **{"train.max_steps": 4, "train.eval_steps": 0, "train.save_steps": 1000,
                                     "data.eval": "", "train.assistant_only_loss": aol})
    os.makedirs(tmp_path / "ours"), os.makedirs(tmp_path / "theirs")
    setup, ours = build_in_process(cfg, tmp_path / "ours", monkeypatch)
    ours.train()
    other = setup_for(cfg, tmp_path / "theirs")
    other.resolve_device()
    set_seed(cfg["train"]["seed"])
    rows, _ = other.load_data()
    tok, model = other.load_tokenizer(), other.load_weights()
    other.has_eval, other.assistant_only_loss = False, setup.assistant_only_loss
    theirs = SFTTrainer(model=model, args=other.sft_config(), train_dataset=messages_only(rows), processing_class=tok,
                        peft_config=ours.model.peft_config["default"])
    assert ours.train_dataset["input_ids"] == theirs.train_dataset["input_ids"]
    theirs.train()
    a, b = get_peft_model_state_dict(ours.model), get_peft_model_state_dict(theirs.model)
    assert sorted(a) == sorted(b) and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_weights_without_generation_markers_warn_once(weighted_models, weighted_data, tmp_path, monkeypatch):
    setup, trainer = build_in_process(weighted_config(weighted_models["plain"], weighted_data), tmp_path, monkeypatch)
    assert setup.assistant_only_loss is False
    warnings = [(c, m) for c, m in setup.events.pending if c == "weights_ignored"]
    assert len(warnings) == 1
    # Train and eval turns alike: the eval turns are scored, not trained on.
    assert warnings[0][1].startswith("6 assistant turn(s) with weight 0 are trained or scored like the rest of the "
                                     "sequence (4 trained on in the training set, 2 scored in the eval loss): ")
    assert "no {% generation %} markers" in warnings[0][1]
    # The whole sequence is trained, AAAA included.
    assert all("AAAA" in words for words in trained_words(trainer.eval_dataset, trainer.processing_class))


def test_weights_with_assistant_only_loss_off_warn(weighted_models, weighted_data, tmp_path, monkeypatch):
    cfg = weighted_config(weighted_models["markers"], weighted_data, **{"train.assistant_only_loss": False})
    setup, _ = build_in_process(cfg, tmp_path, monkeypatch)
    msgs = [m for c, m in setup.events.pending if c == "weights_ignored"]
    assert len(msgs) == 1 and "train.assistant_only_loss is false" in msgs[0]


def test_no_warning_without_weight0_turns(tiny_model_no_markers, tmp_path, monkeypatch):
    setup, _ = build_in_process(base_config(tiny_model_no_markers), tmp_path, monkeypatch)
    assert [c for c, _ in setup.events.pending] == ["no_generation_markers"]


def test_weighted_run_end_to_end(weighted_models, weighted_data, tmp_path):
    t = Trainer(tmp_path / "run", weighted_config(weighted_models["markers"], weighted_data))
    assert t.run() == 0, t.log()[-3000:]
    evs = t.events()
    assert evs[0]["train_examples"] == 4 and evs[0]["eval_examples"] == 2
    assert "warning" not in types(evs) and evs[-1]["status"] == "completed"
    assert evs[-1]["eval_loss_after"] is not None


def test_row_without_assistant_tokens_names_its_line(weighted_models, tmp_path, monkeypatch):
    from train_lora_support import TrainerError
    p = tmp_path / "train.jsonl"
    p.write_text(WEIGHTED_ROWS[0] + "\n" + json.dumps({"messages": [{"role": "user", "content": "q one"}]}) + "\n")
    cfg = base_config(weighted_models["markers"], **{"data.train": str(p), "data.eval": ""})
    with pytest.raises(TrainerError, match=f"{p}:2: no token of the example falls inside"):
        build_in_process(cfg, tmp_path, monkeypatch)


# ------------------------------------------------------------ tool calling

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOL_ROW = {"tools": TOOLS, "messages": [
    {"role": "user", "content": "weather in Paris please"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "done"}]}
TOOL_ROWS = [
    TOOL_ROW,
    # The same call with its arguments as a JSON string, no tools and no id: shapes an Arrow
    # table would have to merge with the first row's.
    {"messages": [{"role": "user", "content": "weather in Rome please"},
                  {"role": "assistant", "content": "", "reasoning_content": "look it up",
                   "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                    "arguments": '{"city": "Rome"}'}}]},
                  {"role": "tool", "name": "get_weather", "content": "rain"},
                  {"role": "assistant", "content": "done"}]},
    {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]},
    # A weight-0 tool call: context, not a target.
    {"tools": TOOLS, "messages": [*TOOL_ROW["messages"][:1], dict(TOOL_ROW["messages"][1], weight=0),
                                  *TOOL_ROW["messages"][2:]]},
]
# <|assistant|> call get_weather {"city": "Paris"} <|end|>, as the tool template renders it
PARIS_CALL = ["call", "get_weather", '{"', "city", '":', '"', "Paris", '"}', "<|end|>"]


@pytest.fixture(scope="module")
def tool_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("tools")
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TOOL_ROWS))
    (d / "eval.jsonl").write_text(json.dumps(TOOL_ROW) + "\n")
    return d


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tool_data):
    d = str(tmp_path_factory.mktemp("tool-model"))
    make_tiny_model.main([d, "--data", str(tool_data / "train.jsonl"), "--tool-template"])
    return d


def tool_config(model, data, **overrides):
    return base_config(model, **{"data.train": str(data / "train.jsonl"), "data.eval": str(data / "eval.jsonl"),
                                 "train.max_steps": 2, "train.batch_size": 2, "train.save_steps": 0, **overrides})


def test_tool_calls_and_tools_are_rendered_and_trained(tool_model, tool_data, tmp_path, monkeypatch):
    setup, trainer = build_in_process(tool_config(tool_model, tool_data), tmp_path, monkeypatch)
    assert setup.assistant_only_loss is True
    tok = trainer.processing_class
    rendered = []  # (text, trained words) per row
    for row in trainer.train_dataset:
        words = tok.convert_ids_to_tokens(row["input_ids"])
        rendered.append((" ".join(words), [w for w, label in zip(words, row["labels"]) if label != -100]))
    assert not any("<unk>" in text for text, _ in rendered)
    paris = [(text, trained) for text, trained in rendered if "Paris" in text]
    assert len(paris) == 2  # the row and its weight-0 twin
    for text, _ in paris:
        # The tools in the system area, the call in the first assistant turn.
        assert text == ("<|system|> tools : get_weather <|end|> <|user|> weather in Paris please <|end|> "
                        "<|assistant|> " + " ".join(PARIS_CALL) + " <|tool|> sunny <|end|> <|assistant|> done <|end|>")
    assert sorted(trained for _, trained in paris) == sorted([["done", "<|end|>"], PARIS_CALL + ["done", "<|end|>"]])
    rome = [(text, trained) for text, trained in rendered if "Rome" in text][0]
    assert "<|system|>" not in rome[0]  # no tools in that row
    assert rome[1] == ["think", ":", "look", "it", "up", "call", "get_weather", '{"', "city", '":', '"', "Rome",
                       '"}', "<|end|>", "done", "<|end|>"]
    # The eval set is prepared the same way.
    eval_row = trainer.eval_dataset[0]
    assert [w for w, label in zip(tok.convert_ids_to_tokens(eval_row["input_ids"]), eval_row["labels"])
            if label != -100] == PARIS_CALL + ["done", "<|end|>"]


def test_tool_calls_are_in_the_whole_sequence_too(tool_model, tool_data, tmp_path, monkeypatch):
    cfg = tool_config(tool_model, tool_data, **{"train.assistant_only_loss": False})
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    assert setup.assistant_only_loss is False
    tok = trainer.processing_class
    ids = trainer.eval_dataset[0]["input_ids"]
    assert trainer.eval_dataset[0]["labels"] == ids
    assert " ".join(PARIS_CALL) in " ".join(tok.convert_ids_to_tokens(ids))
    assert tok.convert_ids_to_tokens(ids)[:4] == ["<|system|>", "tools", ":", "get_weather"]


def test_token_stats_counts_what_the_trainer_trains(tool_model, tool_data, tmp_path, monkeypatch, capsys):
    import token_stats
    max_length = 24  # cuts the Paris rows after the call: "done" is lost
    cfg = tool_config(tool_model, tool_data, **{"data.eval": "", "train.max_length": max_length})
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    rows, _ = setup.load_data()
    full = setup.prepare_data(rows, trainer.processing_class)  # before truncation
    capsys.readouterr()
    assert token_stats.main(["--tokenizer", tool_model, "--max-length", str(max_length),
                             str(tool_data / "train.jsonl")]) == 0
    examples = [json.loads(line) for line in capsys.readouterr().out.splitlines()][1:]
    assert [e["line"] for e in examples] == [1, 2, 3, 4]
    for e, whole in zip(examples, full):
        assert e["total"] == len(whole["input_ids"]) and e["assistant"] == sum(whole["assistant_masks"])
    # The weight-0 twin keeps no label within max_length: TRL drops it, and token_stats says so.
    assert [e["assistant_kept"] > 0 for e in examples] == [True, True, True, False]
    kept = [e for e in examples if e["assistant_kept"]]
    assert len(trainer.train_dataset) == len(kept)
    for e, row in zip(kept, trainer.train_dataset):
        assert e["assistant_kept"] == sum(label != -100 for label in row["labels"])
    assert examples[0]["assistant"] > examples[0]["assistant_kept"] > 0


def test_tool_run_end_to_end(tool_model, tool_data, tmp_path):
    t = Trainer(tmp_path / "run", tool_config(tool_model, tool_data))
    assert t.run() == 0, t.log()[-3000:]
    evs = t.events()
    assert evs[0]["train_examples"] == 4 and evs[0]["assistant_only_loss"] is True
    assert "warning" not in types(evs) and evs[-1]["status"] == "completed"


def test_bad_tools_exit_2_naming_the_line(tool_model, tool_data, tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text(json.dumps(TOOL_ROW) + "\n" + json.dumps(dict(TOOL_ROW, tools=TOOLS[0])) + "\n")
    t = Trainer(tmp_path / "run", tool_config(tool_model, tool_data, **{"data.train": str(p)}))
    assert t.run(timeout=120) == 2
    err = [e for e in t.events() if e["type"] == "error"][0]
    assert err["error_type"] == "ConfigError" and err["message"].startswith(f"{p}:2: tools: must be a list of objects")


def test_template_error_names_the_line(tool_model, tool_data, tmp_path, monkeypatch):
    from train_lora_support import TrainerError
    p = tmp_path / "train.jsonl"
    bad = {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "", "tool_calls": [{"type": "function"}]}]}
    p.write_text(json.dumps(TOOL_ROW) + "\n" + json.dumps(bad) + "\n")
    cfg = tool_config(tool_model, tool_data, **{"data.train": str(p)})
    with pytest.raises(TrainerError, match=f"{p}:2: the chat template cannot render this example"):
        build_in_process(cfg, tmp_path, monkeypatch)


# ------------------------------------------------------------ examples that lose every label to truncation

LONG_PROMPT = " ".join(["please"] * 80)  # alone longer than max_length 40
SHORT_ROW = {"messages": [{"role": "user", "content": "how do i help"},
                          {"role": "assistant", "content": "you can do it"}]}
LONG_ROW = {"messages": [{"role": "user", "content": LONG_PROMPT}, {"role": "assistant", "content": "you can do it"}]}


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def lost_config(model, tmp_path, train, evalset, **overrides):
    return base_config(model, **{"data.train": jsonl(tmp_path / "train.jsonl", train),
                                 "data.eval": jsonl(tmp_path / "eval.jsonl", evalset) if evalset else "",
                                 "train.max_length": 40, "train.max_steps": 2, "train.batch_size": 2,
                                 "train.save_steps": 0, **overrides})


def test_eval_set_that_loses_every_row_exits_2(tiny_model, tmp_path):
    """TRL drops the eval rows left with no label; with none left the trainer used to crash
    on the "before" evaluation (KeyError: 'eval_loss'). It is a config error, as for train."""
    cfg = lost_config(tiny_model, tmp_path, [SHORT_ROW] * 4, [LONG_ROW, LONG_ROW])
    t = Trainer(tmp_path / "run", cfg)
    assert t.run(timeout=180) == 2, t.log()[-3000:]
    evs = t.events()
    err = [e for e in evs if e["type"] == "error"][0]
    assert err["error_type"] == "ConfigError"
    assert err["message"].startswith("no eval example keeps an assistant token within train.max_length 40 "
                                     f"(all 2 of data.eval {cfg['data']['eval']} lose every label")
    assert types(evs)[-1] == "end" and evs[-1]["status"] == "failed"


def test_eval_rows_lost_to_truncation_warn_and_are_not_counted(tiny_model, tmp_path, monkeypatch):
    cfg = lost_config(tiny_model, tmp_path, [SHORT_ROW] * 4, [SHORT_ROW, LONG_ROW, LONG_ROW])
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    assert len(trainer.eval_dataset) == 1
    assert (setup.train_examples, setup.eval_examples) == (4, 1)  # the start event's counts
    assert setup.events.pending == [("labels_truncated_away", f"2 of 3 eval examples (data.eval {cfg['data']['eval']}) "
                                     "have no assistant token within train.max_length 40 and are skipped")]


def test_packing_leaves_out_rows_without_labels(tiny_model, tmp_path, monkeypatch):
    """With packing TRL neither truncates nor drops before packing: a row whose labels all lie
    past max_length was packed as tokens that carry no loss, whole bins of them trained on
    nothing (loss 0.0 steps). The trainer leaves such rows out and warns, as without packing."""
    train, evalset = [SHORT_ROW, LONG_ROW] * 10, [LONG_ROW, SHORT_ROW]
    cfg = lost_config(tiny_model, tmp_path, train, evalset, **{"train.packing": True})
    os.makedirs(tmp_path / "packed"), os.makedirs(tmp_path / "plain")
    setup, trainer = build_in_process(cfg, tmp_path / "packed", monkeypatch)
    assert (setup.train_examples, setup.eval_examples) == (10, 1)
    assert setup.events.pending == [
        ("labels_truncated_away", f"10 of 20 training examples (data.train {cfg['data']['train']}) have no assistant "
                                  "token within train.max_length 40 and are skipped"),
        ("labels_truncated_away", f"1 of 2 eval examples (data.eval {cfg['data']['eval']}) have no assistant "
                                  "token within train.max_length 40 and are skipped")]
    for dataset in (trainer.train_dataset, trainer.eval_dataset):
        assert all(any(label != -100 for label in labels) for labels in dataset["labels"])
        assert all(len(ids) <= 40 for ids in dataset["input_ids"])
    # The same labels as without packing, where TRL drops those rows itself.
    _, plain = build_in_process(dict(cfg, train=dict(cfg["train"], packing=False)), tmp_path / "plain", monkeypatch)
    for packed, unpacked in ((trainer.train_dataset, plain.train_dataset), (trainer.eval_dataset, plain.eval_dataset)):
        assert (sorted(x for labels in packed["labels"] for x in labels if x != -100) ==
                sorted(x for labels in unpacked["labels"] for x in labels if x != -100))


@pytest.mark.parametrize("lost", ["train", "eval"])
def test_packing_refuses_a_set_that_loses_every_row(tiny_model, tmp_path, monkeypatch, lost):
    from train_lora_support import ConfigError
    train, evalset = ([LONG_ROW] * 3, [SHORT_ROW]) if lost == "train" else ([SHORT_ROW] * 3, [LONG_ROW])
    cfg = lost_config(tiny_model, tmp_path, train, evalset, **{"train.packing": True})
    label = "training" if lost == "train" else "eval"
    with pytest.raises(ConfigError, match=f"^no {label} example keeps an assistant token within train.max_length 40 "):
        build_in_process(cfg, tmp_path, monkeypatch)


def test_eval_split_too_small_is_a_config_error(tiny_model, tmp_path):
    from train_lora_support import ConfigError
    cfg = lost_config(tiny_model, tmp_path, [SHORT_ROW], None, **{"data.eval_split": 0.2})
    with pytest.raises(ConfigError, match=r"^data.eval_split 0.2: the 1 example\(s\) of .*train.jsonl are too few"):
        setup_for(cfg, tmp_path).load_data()


def test_prepare_data_goes_to_arrow_in_chunks(tiny_model, tmp_path, monkeypatch):
    """Rows go to Arrow a chunk at a time (by rows or by tokens), never all at once as Python
    lists, and the result is the dataset one chunk gives; the raw rows are released."""
    import datasets
    import train_lora
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model)
    setup = setup_for(base_config(tiny_model), tmp_path)
    setup.kept = {}
    sizes = []
    from_list = datasets.Dataset.from_list.__func__

    def spy(cls, mapping, *args, **kwargs):
        sizes.append(len(mapping))
        return from_list(cls, mapping, *args, **kwargs)

    for aol in (True, False):
        setup.assistant_only_loss = aol
        whole = setup.prepare_data(setup.load_data()[0], tok)
        monkeypatch.setattr(datasets.Dataset, "from_list", classmethod(spy))
        for rows_limit, tokens_limit in ((7, 10 ** 9), (10 ** 9, 300)):
            monkeypatch.setattr(train_lora, "CHUNK_ROWS", rows_limit)
            monkeypatch.setattr(train_lora, "CHUNK_TOKENS", tokens_limit)
            sizes.clear()
            rows = setup.load_data()[0]
            chunked = setup.prepare_data(rows, tok)
            assert len(rows) == len(whole) and all(r is None for r in rows)
            assert len(sizes) > 10 and max(sizes) <= min(rows_limit, 10), sizes
            assert chunked.features == whole.features and chunked.to_list() == whole.to_list()
        monkeypatch.undo()
    assert str(whole.features["input_ids"].feature.dtype) == "int32"


# ------------------------------------------------------------ token_stats with TRL's training template

QWEN_TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "find",
                                                "parameters": {"type": "object", "properties": {}}}}]
QWEN_ROWS = [
    {"tools": QWEN_TOOLS, "messages": [
        {"role": "user", "content": "how do i help"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "lookup",
                                                                                           "arguments": {"a": 1}}}]},
        {"role": "tool", "name": "lookup", "content": "you can"},
        {"role": "assistant", "content": "you can do it"},
        {"role": "user", "content": "and then"},
        {"role": "assistant", "content": "please help me"}]},
    {"messages": [{"role": "user", "content": "how do i help"}, {"role": "assistant", "content": "you can"},
                  {"role": "user", "content": "and then"}, {"role": "assistant", "content": "please help me"}]},
    {"messages": [{"role": "user", "content": "please help"}, {"role": "assistant", "content": "you can do it"}]},
]


@pytest.fixture(scope="module")
def qwen_template_model(tmp_path_factory, tiny_model):
    """The tiny model with Qwen3's chat template, which has no generation markers: TRL swaps
    in its training template for it. (The word-level vocabulary has no <|im_start|> and the
    like, so the masks are rough; the point is that trainer and token_stats agree.)"""
    import shutil
    from trl.chat_template_utils import qwen3_chat_template
    d = tmp_path_factory.mktemp("qwen-template") / "model"
    shutil.copytree(tiny_model, d)
    (d / "chat_template.jinja").write_text(qwen3_chat_template)
    return str(d)


def test_token_stats_counts_with_trls_training_template(qwen_template_model, tmp_path, monkeypatch, capsys):
    """Where TRL swaps its training template in, token_stats counts with it too: the totals and
    assistant tokens are those the trainer trains, not those of the tokenizer's own template."""
    import token_stats
    max_length = 60
    train = jsonl(tmp_path / "train.jsonl", QWEN_ROWS)
    cfg = base_config(qwen_template_model, **{"data.train": train, "data.eval": "", "train.max_length": max_length,
                                             "lora.target_modules": ["q_proj"]})
    setup, trainer = build_in_process(cfg, tmp_path, monkeypatch)
    assert setup.assistant_only_loss is True
    full = setup.prepare_data(setup.load_data()[0], trainer.processing_class)
    capsys.readouterr()
    assert token_stats.main(["--tokenizer", qwen_template_model, "--max-length", str(max_length), train]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["generation_markers"] is False and out[0]["training_template"] is True
    examples = out[1:]
    assert [(e["total"], e["assistant"]) for e in examples] == [
        (len(row["input_ids"]), sum(row["assistant_masks"])) for row in full]
    kept = [e for e in examples if e["assistant_kept"]]
    assert len(kept) == len(trainer.train_dataset)
    assert [e["assistant_kept"] for e in kept] == [sum(x != -100 for x in row["labels"])
                                                   for row in trainer.train_dataset]
    assert examples[0]["total"] > max_length and examples[0]["assistant"] > examples[0]["assistant_kept"]
