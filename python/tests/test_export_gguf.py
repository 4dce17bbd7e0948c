"""export_gguf's Ollama template: derived from the chat template, checked against it, and
refused where a per-role template cannot express it."""

import pytest
from conftest import EVAL_DATA, TRAIN_DATA

import make_tiny_model
from train_lora_support import ConfigError, read_chat_jsonl

export_gguf = pytest.importorskip("export_gguf")


def tokenizer(tmp_path, *args):
    from transformers import AutoTokenizer
    make_tiny_model.main([str(tmp_path / "m"), "--data", TRAIN_DATA, *args])
    return AutoTokenizer.from_pretrained(str(tmp_path / "m"))


def go_render(template, messages, gen_prompt):
    """What Ollama renders for this generated TEMPLATE (its only constructs: range over
    messages, if/else-if on .Role, .Content)."""
    import re
    m = re.fullmatch(r'\{\{- range \.Messages \}\}(.*)\{\{ end \}\}\{\{ end \}\}(.*)', template, re.S)
    body, gen = m.group(1), m.group(2)
    parts = dict(re.findall(r'eq \.Role "(\w+)" \}\}(.*?)(?=\{\{ else if|\Z)', body, re.S))
    out = ""
    for msg in messages:
        pre, post = parts[msg["role"]].split("{{ .Content }}")
        out += pre + msg["content"] + post
    return out + (gen if gen_prompt else "")


@pytest.mark.parametrize("args", [[], ["--chatml"]])
def test_template_renders_like_the_chat_template(tmp_path, args):
    tok = tokenizer(tmp_path, *args)
    rows = read_chat_jsonl(EVAL_DATA)[:3]
    template = export_gguf.ollama_template(tok, rows)
    for row in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        assert go_render(template, msgs, False) == tok.apply_chat_template(msgs, tokenize=False)
        assert go_render(template, msgs[:-1], True) == tok.apply_chat_template(msgs[:-1], tokenize=False,
                                                                                add_generation_prompt=True)


def test_system_folded_into_user_is_refused(tmp_path):
    tok = tokenizer(tmp_path)
    # Llama 2 style: the system prompt goes inside the first user turn.
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
        "{% elif m['role'] == 'user' %}<|user|> {% if loop.index0 == 1 %}{{ messages[0]['content'] }} {% endif %}"
        "{{ m['content'] }} <|end|>{% else %}<|assistant|> {{ m['content'] }} <|end|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    with pytest.raises(ConfigError, match="Ollama TEMPLATE"):
        export_gguf.ollama_template(tok, read_chat_jsonl(EVAL_DATA)[:2])


def test_missing_gguf_names_the_fix(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_gguf(name, *a, **k):
        if name == "gguf":
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_gguf)
    with pytest.raises(ConfigError, match="LORACTL_EXPORT_EXTRAS=1 scripts/setup-python.sh"):
        export_gguf.require("f16")
