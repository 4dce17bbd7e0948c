"""generation.py with real tiny models: stop tokens found from the template, batched greedy
generation with left padding, adapter on/off, streaming."""

import json
import os

import pytest
import torch

import generation
import make_tiny_model
from conftest import EVAL_DATA, TRAIN_DATA, base_config

CONVERSATIONS = [
    [{"role": "user", "content": "how do I upgrade to Acme Plus?"}],
    [{"role": "system", "content": "You are a customer support bot for Acme."},
     {"role": "user", "content": "Hi, can I cancel my order? Please help."}],
    [{"role": "user", "content": "what is my order"}],
]


@pytest.fixture(scope="session")
def chatml_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiny-model-chatml"))
    make_tiny_model.main([out, "--data", TRAIN_DATA, "--data", EVAL_DATA, "--chatml"])
    return out


def load(model_dir):
    model, tok = generation.load_model(base_config(model_dir), None, device="cpu")
    return model, tok


def force_token(model, token_id):
    """Give the output head a bias that makes token_id the argmax at every step: a real
    model whose next token is known, to test where generation stops."""
    head = model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[token_id] = 1e4
    model.lm_head = new


def test_stop_tokens_include_template_end_of_turn(tiny_model, chatml_model):
    _, tok = load(tiny_model)
    assert tok.convert_ids_to_tokens(generation.stop_token_ids(tok)) == ["<|end|>"]
    _, tok = load(chatml_model)
    # eos first, then the token ChatML puts after assistant content; they differ here.
    assert tok.eos_token == "<|end|>"
    assert tok.convert_ids_to_tokens(generation.stop_token_ids(tok)) == ["<|end|>", "<|im_end|>"]


def test_stop_tokens_without_template_are_eos_only(tiny_model):
    _, tok = load(tiny_model)
    tok.chat_template = None
    assert generation.stop_token_ids(tok) == [tok.eos_token_id]


def test_prompt_ids_end_with_generation_prompt(chatml_model):
    _, tok = load(chatml_model)
    ids = generation.prompt_ids(tok, CONVERSATIONS[0])
    assert tok.convert_ids_to_tokens(ids[-2:]) == ["<|im_start|>", "assistant"]
    assert ids == tok.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]


def test_end_of_turn_token_that_is_not_eos_stops_generation(chatml_model):
    model, tok = load(chatml_model)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tok.eos_token_id
    force_token(model, im_end)
    out = generation.Generator(model, tok, max_new_tokens=8).generate(CONVERSATIONS)
    assert out == [{"text": "", "tokens": 1, "stopped": "eos"}] * len(CONVERSATIONS)


def test_reply_that_never_ends_stops_at_max_tokens(chatml_model):
    model, tok = load(chatml_model)
    word = tok.convert_tokens_to_ids("Acme")
    force_token(model, word)
    out = generation.Generator(model, tok, max_new_tokens=5).generate(CONVERSATIONS[:2])
    assert out == [{"text": "Acme Acme Acme Acme Acme", "tokens": 5, "stopped": "max_tokens"}] * 2


def test_batched_left_padded_equals_one_at_a_time(tiny_model):
    model, tok = load(tiny_model)
    batched = generation.Generator(model, tok, max_new_tokens=12, batch_size=3).generate(CONVERSATIONS)
    single = generation.Generator(model, tok, max_new_tokens=12, batch_size=1).generate(CONVERSATIONS)
    assert batched == single
    for r in batched:
        assert set(r) == {"text", "tokens", "stopped"}
        assert 1 <= r["tokens"] <= 12
        assert r["stopped"] in ("eos", "max_tokens")
        assert "<|" not in r["text"]
        if r["stopped"] == "max_tokens":
            assert r["tokens"] == 12


def test_progress_is_reported_per_batch(tiny_model):
    model, tok = load(tiny_model)
    seen = []
    generation.Generator(model, tok, max_new_tokens=2, batch_size=2).generate(
        CONVERSATIONS, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 3), (3, 3)]


def test_adapter_disabled_is_the_base_model(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    model, tok = load(tiny_model)
    base = generation.Generator(model, tok, max_new_tokens=10).generate(CONVERSATIONS)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules="all-linear",
                                                  init_lora_weights=False))
    gen = generation.Generator(peft_model, tok, max_new_tokens=10)
    assert gen.generate(CONVERSATIONS, adapter=False) == base
    adapted = gen.generate(CONVERSATIONS, adapter=True)
    assert adapted != base  # a random (non-zero) adapter changes the replies
    # The same adapter saved and loaded through load_model gives the same replies.
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    loaded, tok2 = generation.load_model(base_config(tiny_model), str(tmp_path / "adapter"), device="cpu")
    assert isinstance(loaded, PeftModel)
    assert generation.Generator(loaded, tok2, max_new_tokens=10).generate(CONVERSATIONS) == adapted


def test_stream_yields_text_then_the_result(tiny_model):
    model, tok = load(tiny_model)
    gen = generation.Generator(model, tok, max_new_tokens=12)
    items = list(gen.stream(CONVERSATIONS[1]))
    pieces, final = items[:-1], items[-1]
    assert all(isinstance(p, str) and "<|" not in p for p in pieces)
    assert final == gen.generate([CONVERSATIONS[1]])[0]
    assert "".join(pieces).strip() == final["text"]
    if final["text"]:
        assert len(pieces) >= 1


def test_stream_stops_at_end_of_turn(chatml_model):
    model, tok = load(chatml_model)
    force_token(model, tok.convert_tokens_to_ids("<|im_end|>"))
    items = list(generation.Generator(model, tok, max_new_tokens=8).stream(CONVERSATIONS[0]))
    assert items == [{"text": "", "tokens": 1, "stopped": "eos"}]


def test_import_is_light():
    import subprocess
    import sys
    code = "import sys, generation; print(json.dumps(['torch' in sys.modules, 'transformers' in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         cwd=os.path.dirname(generation.__file__), check=True)
    assert json.loads(out.stdout) == [False, False]
