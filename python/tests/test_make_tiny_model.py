"""make_tiny_model: fast, deterministic, and loadable by transformers with a chat template
whose assistant turns carry generation markers and end with the end token."""

import hashlib
import os
import subprocess
import sys
import time

import pytest
from conftest import PY_DIR, TRAIN_DATA

import make_tiny_model


def digest(d):
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def test_same_inputs_give_identical_files(tmp_path):
    make_tiny_model.main([str(tmp_path / "a"), "--data", TRAIN_DATA])
    make_tiny_model.main([str(tmp_path / "b"), "--data", TRAIN_DATA])
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_tiny_model.main([str(tmp_path / "c"), "--data", TRAIN_DATA, "--seed", "1"])
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_cli_is_fast(tmp_path):
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.join(PY_DIR, "make_tiny_model.py"), str(tmp_path / "m"),
                    "--data", TRAIN_DATA, "--hidden", "64", "--layers", "2"], check=True, capture_output=True)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("args,needle", [
    (["--hidden", "30"], "multiple of --heads"),
    (["--kv-heads", "3"], "multiple of --kv-heads"),
    (["--layers", "0"], "--layers must be > 0"),
    (["--tool-template", "--no-generation-markers"], "not with --no-generation-markers"),
])
def test_bad_shapes_are_refused(tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as e:
        make_tiny_model.main([str(tmp_path / "m"), *args])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_bad_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"nope": 1}\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: not a chat row"):
        make_tiny_model.main([str(tmp_path / "m"), "--data", str(bad)])


@pytest.mark.parametrize("markers", [True, False])
def test_loads_with_transformers_and_masks_assistant_turns(tmp_path, markers):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    out = str(tmp_path / "m")
    make_tiny_model.main([out, "--data", TRAIN_DATA] + ([] if markers else ["--no-generation-markers"]))
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<pad>"
    assert model.config.eos_token_id == tok.eos_token_id and model.config.vocab_size == len(tok)
    msgs = [{"role": "system", "content": "You are a customer support bot for Acme."},
            {"role": "user", "content": "How do I reset my password?"},
            {"role": "assistant", "content": "Go to /forgot-password."}]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=markers)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert "<unk>" not in tokens and tokens[-1] == "<|end|>"
    assert has_generation_markers(tok.chat_template) is markers
    if markers:
        masked = [t for t, m in zip(tokens, enc["assistant_masks"]) if m]
        assert masked == ["Go", "to", "/", "forgot", "-", "password", ".", "<|end|>"]
        assert is_chat_template_stop_token_trained(tok)


def test_tool_template_and_tool_words(tmp_path):
    """Tool keys add their words (the JSON of each object and list inside them) to the
    vocabulary; --tool-template only swaps the template and adds its own words."""
    import json
    tool_row = {"tools": [{"type": "function", "function": {"name": "lookup"}}],
                "messages": [{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "", "tool_calls": [
                                 {"function": {"name": "lookup", "arguments": {"q": "zebra"}}}]}]}
    data = tmp_path / "tools.jsonl"
    data.write_text(json.dumps(tool_row) + "\n")
    make_tiny_model.main([str(tmp_path / "t"), "--data", str(data), "--tool-template"])
    make_tiny_model.main([str(tmp_path / "a"), "--data", TRAIN_DATA])
    with open(tmp_path / "t" / "tokenizer.json") as f:
        vocab = json.load(f)["model"]["vocab"]
    assert {"lookup", "zebra", '{"', '"}', "call", "tools"} <= set(vocab)
    with open(tmp_path / "a" / "chat_template.jinja") as fa, open(tmp_path / "t" / "chat_template.jinja") as ft:
        assert fa.read() == make_tiny_model.TEMPLATE_WITH_MARKERS and ft.read() == make_tiny_model.TEMPLATE_WITH_TOOLS


def test_bpe_tokenizer_is_byte_level_deterministic_and_loads(tmp_path):
    from transformers import AutoTokenizer
    make_tiny_model.main([str(tmp_path / "a"), "--data", TRAIN_DATA, "--tokenizer", "bpe", "--chatml"])
    make_tiny_model.main([str(tmp_path / "b"), "--data", TRAIN_DATA, "--tokenizer", "bpe", "--chatml"])
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    text = "Ünïcode and emoji 🙂 never seen in training"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text  # every byte has a token
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert tok.convert_tokens_to_ids("<|im_end|>") in enc["input_ids"] and 1 in enc["assistant_masks"]
