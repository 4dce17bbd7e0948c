"""train_lora_support: config validation, checkpoint bookkeeping, events and signals,
exercised in-process (no torch needed)."""

import copy
import hashlib
import json
import os
import re
import signal

import pytest
import train_lora_support as sup
from conftest import base_config


@pytest.fixture
def cfg(tmp_path):
    return base_config(str(tmp_path))


def with_value(cfg, path, value):
    c = copy.deepcopy(cfg)
    section, key = path.split(".")
    if value is DELETE:
        del c[section][key]
    else:
        c[section][key] = value
    return c


DELETE = object()


def test_valid_config_passes(cfg):
    out, warnings = sup.validate_config(cfg)
    assert out is cfg and warnings == []


@pytest.mark.parametrize("path,value,message", [
    ("lora.r", 0, "lora.r: must be in [1, 4096], got 0"),
    ("lora.r", 1.5, "lora.r: must be an integer, got 1.5"),
    ("lora.r", True, "lora.r: must be an integer, got true"),
    ("lora.alpha", 0, "lora.alpha: must be > 0"),
    ("lora.dropout", 1.0, "lora.dropout: must be in [0, 1), got 1.0"),
    ("lora.dropout", -0.1, "lora.dropout: must be in [0, 1)"),
    ("lora.target_modules", "q_proj", 'lora.target_modules: must be a non-empty list of module names or "all-linear"'),
    ("lora.target_modules", [], "lora.target_modules: must be a non-empty list"),
    ("lora.target_modules", ["q_proj", ""], "lora.target_modules: must be a non-empty list"),
    ("lora.bias", "some", "lora.bias: must be none, all or lora_only"),
    ("lora.use_dora", "yes", "lora.use_dora: must be a boolean"),
    ("quantization.mode", "2bit", "quantization.mode: must be none, 4bit or 8bit"),
    ("quantization.quant_type", "int4", "quantization.quant_type: must be nf4 or fp4"),
    ("model.name_or_path", "", "model.name_or_path: must be a model directory or hub id"),
    ("model.name_or_path", DELETE, "model.name_or_path: missing"),
    ("data.train", "/nonexistent.jsonl", "data.train: /nonexistent.jsonl: no such file"),
    ("data.eval_split", 1.0, "data.eval_split: must be in [0, 1), got 1.0"),
    ("data.eval_split", 0.1, "data.eval and data.eval_split: set only one"),
    ("train.learning_rate", 0, "train.learning_rate: must be in (0, 1), got 0"),
    ("train.epochs", 0, "train.epochs: must be > 0"),
    ("train.batch_size", 0, "train.batch_size: must be in [1, 1048576]"),
    ("train.grad_accum", 0, "train.grad_accum: must be in [1, 1048576]"),
    ("train.max_length", 0, "train.max_length: must be in [1, 1048576]"),
    ("train.warmup", -0.5, "train.warmup: must be >= 0"),
    ("train.seed", -1, "train.seed: must be in [0, 4294967295]"),
    ("train.assistant_only_loss", "yes", "train.assistant_only_loss: must be true, false or auto"),
    ("train.precision", "fp8", "train.precision: must be auto, bf16, fp16 or fp32"),
    ("train.save_total_limit", -1, "train.save_total_limit: must be >= 0"),
    ("train.loss_type", "mse", "train.loss_type: must be nll, dft or chunked_nll"),
    ("train.logging_steps", 0, "train.logging_steps: must be in [1, 1048576]"),
    # JSON Schema counts 1.0 as an integer; the trainer's libraries would not.
    ("train.batch_size", 1.0, "train.batch_size: must be an integer, got 1.0"),
    ("train.max_steps", 0, "train.max_steps: must be -1 (not set) or a step count from 1, got 0"),
    ("train.report_to", ["mlflow", "mlflow"], "train.report_to: must be a list without repeats"),
    ("train.report_to", ["comet"], 'train.report_to[0]: must be tensorboard, mlflow or wandb, got "comet"'),
    ("train.select", "first", "train.select: must be last or best"),
    ("train.attn_implementation", "flash", "train.attn_implementation: must be auto, sdpa, flash_attention_2 or eager"),
    ("model.name_or_path", "  ", "model.name_or_path: must be a model directory or hub id"),
    ("data.train", "", "data.train: must be a file path"),
    ("eval.max_new_tokens", 0, "eval.max_new_tokens: must be in [1, "),
])
def test_invalid_values_name_the_key(cfg, path, value, message):
    with pytest.raises(sup.ConfigError) as e:
        sup.validate_config(with_value(cfg, path, value))
    assert message in str(e.value)


def test_every_error_is_reported_at_once(cfg):
    bad = with_value(with_value(cfg, "lora.r", 0), "train.learning_rate", -1)
    with pytest.raises(sup.ConfigError) as e:
        sup.validate_config(bad)
    assert "lora.r" in str(e.value) and "train.learning_rate" in str(e.value)


def test_wrong_version_and_missing_section(cfg):
    c = copy.deepcopy(cfg)
    c["version"] = 2
    del c["lora"]
    with pytest.raises(sup.ConfigError) as e:
        sup.validate_config(c)
    assert "version: must be 1, got 2" in str(e.value) and "lora: missing" in str(e.value)


def test_unknown_keys_are_warnings(cfg):
    c = copy.deepcopy(cfg)
    c["driver"] = {}
    c["train"]["lora_rank"] = 4
    _, warnings = sup.validate_config(c)
    assert warnings == ["driver: unknown key, ignored", "train.lora_rank: unknown key, ignored"]


def test_load_config_names_the_file(tmp_path):
    p = tmp_path / "resolved.json"
    p.write_text("{not json")
    with pytest.raises(sup.ConfigError, match=r"resolved.json: not valid JSON"):
        sup.load_config(str(p))
    with pytest.raises(sup.ConfigError, match="cannot read"):
        sup.load_config(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("content,needle", [
    ('{"messages": []}\n', "non-empty \"messages\" list"),
    ('not json\n', "not valid JSON"),
    ('{"messages": [{"role": "user"}]}\n', "messages[0] needs string role and content"),
    ('\n\n', "no examples"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 2}]}\n',
     "messages[1].weight: must be the number 0 or 1, got 2"),
    ('{"messages": [{"role": "assistant", "content": "a", "weight": true}]}\n',
     "messages[0].weight: must be the number 0 or 1, got true"),
    ('{"messages": [{"role": "assistant", "content": "a", "weight": "1"}]}\n',
     'messages[0].weight: must be the number 0 or 1, got "1"'),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}\n',
     "every assistant message has weight 0"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x\\ud800y"}]}\n',
     "messages[1].content: not valid UTF-8 (a lone surrogate"),
    ('{"messages": [{"role": "\\udfff", "content": "q"}]}\n', "messages[0].role: not valid UTF-8"),
])
def test_bad_chat_rows_name_file_and_line(tmp_path, content, needle):
    p = tmp_path / "d.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}]}\n'
    p.write_text(good + content if needle != "no examples" else content)
    with pytest.raises(sup.ConfigError) as e:
        sup.read_chat_jsonl(str(p))
    assert needle in str(e.value)
    if needle != "no examples":
        assert f"{p}:2:" in str(e.value)


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "user", "content": "\xff"}]}\n')
    with pytest.raises(sup.ConfigError, match=r"d.jsonl:2: not valid UTF-8 \(byte 43\)"):
        sup.read_chat_jsonl(str(p))


def test_chat_rows_keep_template_keys_and_weights(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "hi", "weight": 0}, {"role": "assistant", "content": "a", '
                 '"weight": 0.0, "name": "x", "extra": 1}, {"role": "user", "content": "q"}, {"role": "assistant", '
                 '"content": "b", "weight": 1e0}], "id": 7}\n')
    rows = sup.read_chat_jsonl(str(p))
    assert rows == [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "name": "x"},
                                  {"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
                     "tools": None, "weights": [0, 0, 1, 1], "where": f"{p}:1"}]
    assert sup.weight0_turns(rows) == 1  # the user message's weight counts for nothing


def test_tool_calling_keys_and_tools_are_kept_as_written(tmp_path):
    """Tool calls keep their own shape per row (arguments a string here, an object there):
    nothing is merged or filled in, as an Arrow table would."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    first = {"tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call], "reasoning_content": "look it up"},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"},
        {"role": "assistant", "content": "sunny", "thinking": "easy"}]}
    call2 = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    second = {"messages": [{"role": "user", "content": "rome?"}, {"role": "assistant", "content": "", "tool_calls": [call2]}],
              "tools": []}
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    rows = sup.read_chat_jsonl(str(p))
    assert [r["messages"] for r in rows] == [first["messages"], second["messages"]]
    assert [r["tools"] for r in rows] == [tools, []]


@pytest.mark.parametrize("tools", ['null', '{"type": "function"}', '"get_weather"', '[{"type": "function"}, "x"]',
                                   '[[]]'])
def test_bad_tools_name_file_line_and_key(tmp_path, tools):
    p = tmp_path / "d.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}]}\n'
    p.write_text(good + '{"messages": [{"role": "user", "content": "hi"}], "tools": %s}\n' % tools)
    with pytest.raises(sup.ConfigError, match=r"d.jsonl:2: tools: must be a list of objects"):
        sup.read_chat_jsonl(str(p))


@pytest.mark.parametrize("row,path", [
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f\ud800"}}]}]},
     "messages[0].tool_calls[0].function.name"),
    ({"messages": [{"role": "user", "content": "q"}], "tools": [{"description": "\udc00"}]}, "tools[0].description"),
])
def test_lone_surrogates_in_tool_keys_name_the_path(tmp_path, row, path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(row) + "\n")
    with pytest.raises(sup.ConfigError) as e:
        sup.read_chat_jsonl(str(p))
    assert str(e.value) == f"{p}:1: {path}: not valid UTF-8 (a lone surrogate escape such as \\ud800)"


@pytest.mark.parametrize("blankish", ["\u00a0", "\u2003", "\x1c", " \u00a0\t"])
def test_only_ascii_whitespace_makes_a_line_blank(tmp_path, blankish):
    """As in the data check, a line is blank when it holds ASCII whitespace only (space, tab,
    CR, LF, VT, FF); one holding an NBSP, an em space or U+001C is a JSON error at its line,
    not a skipped line (str.strip() would take all of them for blank)."""
    good = '{"messages": [{"role": "user", "content": "hi"}]}\n'
    p = tmp_path / "d.jsonl"
    p.write_bytes((good + " \t\x0b\x0c\r\n" + good).encode())
    assert [r["where"] for r in sup.read_chat_jsonl(str(p))] == [f"{p}:1", f"{p}:3"]
    p.write_bytes((good + " \t\x0b\x0c\r\n" + blankish + "\n" + good).encode())
    with pytest.raises(sup.ConfigError, match=rf"^{re.escape(str(p))}:3: not valid JSON"):
        sup.read_chat_jsonl(str(p))


def test_bom_crlf_and_lone_cr_number_lines_as_the_data_check(tmp_path):
    """Lines end at "\n" only: a BOM is skipped, CRLF and a lone CR between tokens are JSON
    whitespace. Universal newlines would split line 2 in two and break line numbering."""
    row = '{"messages": [{"role": "user", "content": "%s"}]}'
    data = (b"\xef\xbb\xbf" + (row % "one").encode() + b"\r\n"
            + b'{"messages":\r[{"role": "user",\r"content": "two"}]}\r\n'
            + (row % "three").encode() + b"\n")
    p = tmp_path / "d.jsonl"
    p.write_bytes(data)
    rows = sup.read_chat_jsonl(str(p))
    assert [(r["messages"][0]["content"], r["where"]) for r in rows] == [
        ("one", f"{p}:1"), ("two", f"{p}:2"), ("three", f"{p}:3")]
    p.write_bytes(data + b"{\rbroken\n")
    with pytest.raises(sup.ConfigError, match=r"d.jsonl:4: not valid JSON"):
        sup.read_chat_jsonl(str(p))


def test_unweight_mask_zeroes_the_spans_of_weight0_turns():
    msgs = [{"role": r, "content": "x"} for r in ("system", "user", "assistant", "user", "assistant", "user", "assistant")]
    mask = [0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1]
    assert sup.unweight_mask(mask, msgs, [1] * 7, "f:1") == mask
    assert sup.unweight_mask(mask, msgs, [1, 1, 0, 1, 1, 1, 0], "f:1") == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert sup.unweight_mask(mask, msgs, [1, 1, 1, 1, 0, 1, 1], "f:1") == [0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    # Two spans that touch look like one: the weights cannot be placed, so the row is refused.
    with pytest.raises(sup.TrainerError, match=r"f:1: the chat template marks 2 .* for 3 assistant turn"):
        sup.unweight_mask([0, 1, 1, 1, 0, 1], msgs, [1, 1, 0, 1, 1, 1, 1], "f:1")


# ------------------------------------------------------------ checkpoints

def make_ckpt(root, step, complete=True):
    path = os.path.join(root, "checkpoints", f"checkpoint-{step}")
    os.makedirs(path)
    for name in sup.REQUIRED_CHECKPOINT_FILES:
        with open(os.path.join(path, name), "w") as f:
            f.write(f"{name} at {step}\n")
    if complete:
        sup.mark_complete(path, step, 1.5, "abc")
    return path


def test_marker_lists_every_file_with_size_and_hash(tmp_path):
    path = make_ckpt(str(tmp_path), 7)
    os.makedirs(os.path.join(path, "sub"))
    with open(os.path.join(path, "sub", "x.bin"), "wb") as f:
        f.write(b"xyz")
    sup.mark_complete(path, 7, None, "abc")
    marker = sup.verify_checkpoint(path)
    files = {f["path"]: f for f in marker["files"]}
    assert set(files) == set(sup.REQUIRED_CHECKPOINT_FILES) | {"sub/x.bin"}
    assert files["sub/x.bin"]["size"] == 3
    assert files["sub/x.bin"]["sha256"] == hashlib.sha256(b"xyz").hexdigest()
    assert marker["version"] == sup.MARKER_VERSION and marker["step"] == 7


@pytest.mark.parametrize("damage, reason", [
    (lambda p: os.remove(os.path.join(p, "optimizer.pt")), "optimizer.pt is missing"),
    (lambda p: open(os.path.join(p, "scheduler.pt"), "a").write("x"), "scheduler.pt has"),
    (lambda p: open(os.path.join(p, "trainer_state.json"), "r+").write("X"), "trainer_state.json: sha256"),
    (lambda p: open(os.path.join(p, sup.MARKER), "w").close(), "not a JSON object"),
    (lambda p: open(os.path.join(p, sup.MARKER), "w").write("\x00garbage"), "not a JSON object"),
    (lambda p: open(os.path.join(p, sup.MARKER), "w").write('{"step": true, "files": []}'), "step"),
])
def test_damaged_checkpoint_does_not_verify(tmp_path, damage, reason):
    path = make_ckpt(str(tmp_path), 3)
    damage(path)
    with pytest.raises(sup.CheckpointIncomplete, match=re.escape(reason)):
        sup.verify_checkpoint(path)
    assert sup.read_marker(path, deep=True) is None


def test_resume_auto_falls_back_past_a_damaged_checkpoint_and_says_why(tmp_path):
    run = str(tmp_path)
    older = make_ckpt(run, 4)
    newest = make_ckpt(run, 8)
    os.remove(os.path.join(newest, "optimizer.pt"))
    warnings = []
    path, marker = sup.choose_resume(run, "auto", lambda code, msg: warnings.append((code, msg)))
    assert path == older and marker["step"] == 4
    assert warnings == [("checkpoint_skipped", "checkpoint-8 is not used: optimizer.pt is missing")]
    with pytest.raises(sup.ConfigError, match="optimizer.pt is missing"):
        sup.choose_resume(run, newest)


def test_legacy_marker_counts_only_when_files_load(tmp_path):
    import zipfile
    run = str(tmp_path)
    path = make_ckpt(run, 2, complete=False)
    for name in ("optimizer.pt", "scheduler.pt"):
        with zipfile.ZipFile(os.path.join(path, name), "w") as z:
            z.writestr("archive/data.pkl", b"pickle bytes")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    with open(os.path.join(path, "adapter_model.safetensors"), "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + b"\0\0\0\0")
    for name in ("adapter_config.json", "trainer_state.json"):
        with open(os.path.join(path, name), "w") as f:
            f.write("{}")
    with open(os.path.join(path, sup.MARKER), "w") as f:
        f.write('{"step": 2, "eval_loss_before": 1.0}')
    warnings = []
    got, marker = sup.choose_resume(run, "auto", lambda code, msg: warnings.append(code))
    assert got == path and marker["legacy"] and warnings == ["legacy_checkpoint"]
    # Flip one byte inside the optimizer archive: its CRC no longer matches.
    opt = os.path.join(path, "optimizer.pt")
    data = bytearray(open(opt, "rb").read())
    data[data.index(b"pickle bytes")] ^= 1
    open(opt, "wb").write(bytes(data))
    with pytest.raises(sup.CheckpointIncomplete, match="optimizer.pt does not load"):
        sup.verify_checkpoint(path)
    os.remove(opt)
    with pytest.raises(sup.CheckpointIncomplete, match="optimizer.pt is missing"):
        sup.verify_checkpoint(path)


def test_marker_through_a_symlink_is_refused(tmp_path):
    path = make_ckpt(str(tmp_path), 5)
    os.rename(os.path.join(path, sup.MARKER), os.path.join(str(tmp_path), "m.json"))
    os.symlink(os.path.join(str(tmp_path), "m.json"), os.path.join(path, sup.MARKER))
    assert sup.read_marker(path) is None


def test_resume_auto_picks_newest_complete(tmp_path):
    run = str(tmp_path)
    make_ckpt(run, 4)
    newest = make_ckpt(run, 12)
    make_ckpt(run, 16, complete=False)
    path, marker = sup.choose_resume(run, "auto")
    assert path == newest and marker["step"] == 12 and marker["eval_loss_before"] == 1.5


def test_resume_auto_without_checkpoints_starts_fresh(tmp_path):
    make_ckpt(str(tmp_path), 3, complete=False)
    assert sup.choose_resume(str(tmp_path), "auto") == (None, None)


def test_resume_path_requires_complete(tmp_path):
    run = str(tmp_path)
    bad = make_ckpt(run, 5, complete=False)
    with pytest.raises(sup.ConfigError, match="incomplete"):
        sup.choose_resume(run, bad)
    with pytest.raises(sup.ConfigError, match="no such checkpoint"):
        sup.choose_resume(run, os.path.join(run, "nope"))
    # A corrupt marker does not count either.
    with open(os.path.join(bad, sup.MARKER), "w") as f:
        f.write('{"step": "5"}')
    with pytest.raises(sup.ConfigError, match="incomplete"):
        sup.choose_resume(run, bad)


def test_fresh_start_refuses_complete_checkpoints(tmp_path):
    make_ckpt(str(tmp_path), 8)
    with pytest.raises(sup.ConfigError, match="--resume auto"):
        sup.choose_resume(str(tmp_path), None)


def test_prune_keeps_limit_and_drops_debris(tmp_path):
    run = str(tmp_path)
    for step in (2, 4, 6):
        make_ckpt(run, step)
    make_ckpt(run, 5, complete=False)
    make_ckpt(run, 9, complete=False)  # newer than the current save: maybe in progress, kept
    make_ckpt(run, 8)
    sup.prune_checkpoints(os.path.join(run, "checkpoints"), 8, keep=2)
    left = [(s, m is not None) for s, _, m in sup.list_checkpoints(os.path.join(run, "checkpoints"))]
    assert left == [(6, True), (8, True), (9, False)]


def test_prune_zero_keeps_all(tmp_path):
    run = str(tmp_path)
    for step in (2, 4, 6):
        make_ckpt(run, step)
    sup.prune_checkpoints(os.path.join(run, "checkpoints"), 6, keep=0)
    assert [s for s, _, _ in sup.list_checkpoints(os.path.join(run, "checkpoints"))] == [2, 4, 6]


# ------------------------------------------------------------ events and signals

def test_events_are_json_lines_without_nan(tmp_path):
    ev = sup.Events(str(tmp_path / "events.jsonl"))
    ev.warn("early", "held until start")
    ev.start(pid=1)
    ev.emit("log", loss=float("nan"), grad_norm=float("inf"), nested={"x": [float("-inf"), 1.0]})
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # strict JSON: no NaN tokens
    assert [e["type"] for e in parsed] == ["start", "warning", "log"]
    assert parsed[2]["loss"] is None and parsed[2]["nested"] == {"x": [None, 1.0]}
    assert "NaN" not in (tmp_path / "events.jsonl").read_text()


def test_events_from_threads_are_whole_lines_and_none_follow_the_end(tmp_path):
    """The data is tokenized in a thread while the model loads: its events interleave with
    the main thread's as whole lines, and one that comes after the end event (the run
    failed meanwhile) is dropped: the end is the attempt's last word."""
    import threading
    ev = sup.Events(str(tmp_path / "events.jsonl"))
    ev.start(pid=1)
    big = "x" * 200_000
    threads = [threading.Thread(target=lambda i=i: [ev.emit("log", n=i, pad=big) for _ in range(20)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ev.emit("end", status="failed")
    ev.emit("warning", code="late", message="after the end")
    parsed = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in parsed] == ["start"] + ["log"] * 80 + ["end"]
    assert all(e["pad"] == big for e in parsed if e["type"] == "log")


def test_signals_raise_before_training_then_only_flag(monkeypatch):
    monkeypatch.setattr(sup.STOP, "signame", None)
    monkeypatch.setattr(sup.STOP, "immediate", True)
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    try:
        sup.install_signal_handlers()
        with pytest.raises(sup.Interrupted, match="SIGUSR1"):
            os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # now training: only noted
        assert sup.STOP.signame == "SIGUSR1"
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@pytest.mark.parametrize("exc,needle", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "lower train.batch_size"),
    (OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the "
             "cached files."), "HF_HOME"),
    (ValueError("something else"), ""),
])
def test_failure_hints(exc, needle):
    import train_lora
    hint = train_lora.failure_hint(exc)
    assert needle in hint and (needle or hint == "")


# ------------------------------------------------------------ disk full

def test_disk_full_message(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, (1 << 30) - 4096, 4096))
    torch_err = RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                             "data/3: file write failed; unexpected pos 40896 vs 40784")
    msg = sup.disk_full_message(torch_err, str(tmp_path))
    assert msg.startswith(f"the disk holding {tmp_path} is full (4.0 KiB free)") and "--resume" in msg
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert "is full" in sup.disk_full_message(wrapped, str(tmp_path))
    assert sup.disk_full_message(ValueError("bad value"), str(tmp_path)) == ""
    # A torch write error with plenty of room is some other problem: no disk-full claim.
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 40))
    assert sup.disk_full_message(torch_err, str(tmp_path)) == ""
    assert "is full (1.0 TiB free)" in sup.disk_full_message(OSError(errno.ENOSPC, "No space left"), str(tmp_path))


def test_events_after_a_torn_line_start_on_their_own_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"log","step":1}\n{"type":"log","st')
    ev = sup.Events(str(path))
    ev.start(resume_step=16)
    lines = path.read_text().split("\n")
    assert lines[1] == '{"type":"log","st' and json.loads(lines[2])["type"] == "start"


def test_distributed_section_optional_and_validated():
    import train_lora_support as s
    from conftest import base_config
    cfg = base_config("/nonexistent")
    s.validate_config(cfg)  # absent: one process
    cfg["distributed"] = {"nproc_per_node": 2, "nodes": 1, "strategy": "ddp", "port": 29500}
    # The effective batch counts both processes (as the controller resolves it).
    with pytest.raises(s.ConfigError, match="× 2 processes"):
        s.validate_config(cfg)
    cfg["train"]["effective_batch_size"] = 2 * cfg["train"]["batch_size"] * cfg["train"]["grad_accum"]
    s.validate_config(cfg)
    cfg["distributed"]["strategy"] = "deepspeed"
    with pytest.raises(s.ConfigError, match="distributed.strategy: must be ddp or fsdp"):
        s.validate_config(cfg)
    cfg["distributed"] = {"nproc_per_node": 2}
    with pytest.raises(s.ConfigError, match="distributed.nodes: missing"):
        s.validate_config(cfg)


def test_the_schema_is_the_generated_one_and_knows_every_default():
    """The trainer validates with resolved_schema.py, which a Go test keeps equal to the
    schema generated from the Go type that writes resolved.json. Every default this side
    fills in for an older resolved.json is a key of that schema."""
    import resolved_schema
    import task_metrics
    props = resolved_schema.SCHEMA["properties"]
    assert resolved_schema.SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for section, defaults in sup._OPTIONAL.items():
        assert set(defaults) <= set(props[section]["properties"]), section
    assert set(task_metrics.EVAL_DEFAULTS) == set(props["eval"]["properties"])


def test_an_old_resolved_json_without_the_optional_keys_trains(cfg):
    c = copy.deepcopy(cfg)
    for key in sup._OPTIONAL["train"]:
        c["train"].pop(key, None)
    c.pop("eval", None)
    out, warnings = sup.validate_config(c)
    assert warnings == [] and out["train"]["select"] == "last" and out["eval"]["generate"] is True


EXIT_NOW_SCRIPT = r"""
import atexit, sys, threading, time
sys.path.insert(0, {here!r})
from train_lora_support import exit_now

out = {out!r}
def late():
    time.sleep(0.3)
    open(out + "/thread", "w").write("joined")
threading.Thread(target=late).start()
atexit.register(lambda: open(out + "/atexit", "w").write("ran"))
sys.stdout.write("buffered, no newline")
exit_now({code})
raise SystemExit("exit_now returned")
"""


@pytest.mark.parametrize("code,want", [(None, 0), (0, 0), (3, 3), (130, 130)])
def test_exit_now_keeps_what_a_normal_exit_does(tmp_path, code, want):
    """The fast exit skips only the module teardown: the exit code, stdout still in its
    buffer (a pipe is block-buffered), a non-daemon thread's work and the atexit handlers
    all survive it."""
    import subprocess
    import sys

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = EXIT_NOW_SCRIPT.format(here=here, out=str(tmp_path), code=code)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == want, p.stderr
    assert p.stdout == "buffered, no newline"
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "atexit").read_text() == "ran"
