"""token_stats.py: exact token counts with a real (tiny, local) tokenizer and chat template,
the template-level end-token check, and line numbering that matches the Go check."""

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import make_tiny_model  # noqa: E402
import token_stats  # noqa: E402


def row(*turns, system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return json.dumps({"messages": msgs})


VOCAB_ROWS = [
    row("hello there", "general kenobi", system="be brief"),
    row("what is it", "it is a help", "and you", "me too"),
]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("vocab") / "vocab.jsonl"
    p.write_text("\n".join(VOCAB_ROWS) + "\n")
    return str(p)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, vocab_file):
    d = str(tmp_path_factory.mktemp("tok") / "markers")
    make_tiny_model.main([d, "--data", vocab_file])
    return d


@pytest.fixture(scope="module")
def tokenizer_no_markers(tmp_path_factory, vocab_file):
    d = str(tmp_path_factory.mktemp("tok") / "plain")
    make_tiny_model.main([d, "--data", vocab_file, "--no-generation-markers"])
    return d


def run(capsys, *args):
    code = token_stats.main(list(args))
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, out[0], out[1:]


def with_template(tmp_path, tokenizer, edit):
    """A copy of the tokenizer whose chat template is edit(template)."""
    d = tmp_path / "tok"
    shutil.copytree(tokenizer, d)
    tpl = d / "chat_template.jinja"
    tpl.write_text(edit(tpl.read_text()))
    return d


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(p)


def test_counts_with_generation_markers(tmp_path, capsys, tokenizer):
    f = write(tmp_path, "t.jsonl", row("hello there", "general kenobi") + "\n")
    code, info, examples = run(capsys, "--tokenizer", tokenizer, "--max-length", "6", f)
    assert code == 0
    assert info["generation_markers"] and info["ends_assistant_with_eos"] and info["eos_token"] == "<|end|>"
    assert info["problem"] == ""
    # <|user|> hello there <|end|> <|assistant|> general kenobi <|end|>: the last three carry
    # loss; truncation to 6 keeps "general" only.
    assert examples == [{"type": "example", "file": 0, "line": 1, "total": 8, "assistant": 3, "assistant_kept": 1}]


def test_prefix_fallback_agrees_with_markers(tmp_path, capsys, tokenizer, tokenizer_no_markers):
    f = write(tmp_path, "t.jsonl", "\n".join(VOCAB_ROWS) + "\n")
    _, info_m, with_markers = run(capsys, "--tokenizer", tokenizer, "--max-length", "9", f)
    _, info_p, by_prefix = run(capsys, "--tokenizer", tokenizer_no_markers, "--max-length", "9", f)
    assert info_m["generation_markers"] and not info_p["generation_markers"]
    assert info_p["ends_assistant_with_eos"]
    assert with_markers == by_prefix
    assert with_markers[1]["assistant"] == 4 + 1 + 2 + 1  # two answers, each with its end token


def test_line_numbers_match_the_go_check(tmp_path, capsys, tokenizer):
    good = row("hello there", "general kenobi")
    data = (b"\xef\xbb\xbf" + good.encode() + b"\r\n"  # BOM and CRLF
            + b"\n"                                   # blank line: numbered, skipped
            + b"not json\n"
            + json.dumps({"messages": [{"role": "user", "content": 3}]}).encode() + b"\n"
            + b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}\n'  # too long
            + good.encode())                          # no final newline
    f = write(tmp_path, "t.jsonl", data)
    _, _, examples = run(capsys, "--tokenizer", tokenizer, "--max-line-bytes", "1000", f, f)
    assert [(e["file"], e["line"]) for e in examples] == [(0, 1), (0, 6), (1, 1), (1, 6)]


def test_template_without_end_token(tmp_path, capsys, tokenizer):
    d = with_template(tmp_path, tokenizer, lambda tpl: tpl.replace(" <|end|>", ""))
    f = write(tmp_path, "t.jsonl", row("hello there", "general kenobi") + "\n")
    _, info, _ = run(capsys, "--tokenizer", str(d), f)
    assert not info["ends_assistant_with_eos"]
    assert "does not end assistant turns" in info["problem"] and "<|end|>" in info["problem"]


def test_generation_block_closing_before_the_end_token(tmp_path, capsys, tokenizer):
    d = with_template(tmp_path, tokenizer, lambda tpl: tpl.replace(
        "{{ message['content'] }} <|end|>{% endgeneration %}", "{{ message['content'] }}{% endgeneration %} <|end|>"))
    f = write(tmp_path, "t.jsonl", row("hello there", "general kenobi") + "\n")
    _, info, _ = run(capsys, "--tokenizer", str(d), f)
    assert not info["ends_assistant_with_eos"]
    assert "closes before the end token" in info["problem"]


def test_template_errors_are_reported_per_example(tmp_path, capsys, tokenizer):
    d = with_template(tmp_path, tokenizer, lambda tpl: (
        "{%- if messages[0]['role'] == 'system' -%}{{ raise_exception('System role not supported') }}{%- endif -%}" + tpl))
    f = write(tmp_path, "t.jsonl", "\n".join([row("hello there", "general kenobi"), row("hi", "yo", system="be brief")] * 40) + "\n")
    _, _, examples = run(capsys, "--tokenizer", str(d), f)
    assert len(examples) == 80
    errors = [e for e in examples if "error" in e]
    assert [e["line"] for e in errors] == list(range(2, 81, 2))
    assert errors[0]["error"] == "System role not supported"


def test_bad_tokenizer_dir(tmp_path, capsys):
    f = write(tmp_path, "t.jsonl", row("a", "b") + "\n")
    assert token_stats.main(["--tokenizer", str(tmp_path), f]) == 2
    assert "cannot load the tokenizer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        token_stats.main(["--tokenizer", str(tmp_path / "missing"), f])
    assert e.value.code == 2


def weighted(*turns, weights):
    """A row like row(), with `weight` set on the assistant turns (None: no key)."""
    obj = json.loads(row(*turns))
    answers = [m for m in obj["messages"] if m["role"] == "assistant"]
    for m, w in zip(answers, weights):
        if w is not None:
            m["weight"] = w
    return json.dumps(obj)


def test_weight0_turns_carry_no_tokens(tmp_path, capsys, tokenizer, tokenizer_no_markers):
    # <|user|> hello there <|end|> <|assistant|> general kenobi <|end|> <|user|> and you <|end|>
    # <|assistant|> me too <|end|>: 16 tokens; max length 14 keeps "me" of the second answer.
    turns = ("hello there", "general kenobi", "and you", "me too")
    f = write(tmp_path, "t.jsonl", "\n".join([
        weighted(*turns, weights=[None, None]),
        weighted(*turns, weights=[0, 1]),
        weighted(*turns, weights=[1, 0.0]),
    ] * 2) + "\n")
    want = [(16, 6, 4), (16, 3, 1), (16, 3, 3)] * 2
    for tok in (tokenizer, tokenizer_no_markers):
        _, _, examples = run(capsys, "--tokenizer", tok, "--max-length", "14", f)
        assert [(e["total"], e["assistant"], e["assistant_kept"]) for e in examples] == want, tok
        assert [e["line"] for e in examples] == [1, 2, 3, 4, 5, 6]


def test_unweight_mask_pairs_spans_with_assistant_turns():
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0},
            {"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]
    assert token_stats.unweight_mask([0, 1, 1, 0, 0, 1, 1], msgs) == [0, 0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="marks 1 {% generation %} span"):
        token_stats.unweight_mask([0, 1, 1, 1, 1, 1, 1], msgs)


def test_lone_cr_surrogates_and_bad_weights(tmp_path, capsys, tokenizer):
    """A lone CR is whitespace inside a line, not a line end (as in the Go check); a lone
    surrogate escape and a weight other than 0 or 1 make a line the Go check reports: skipped."""
    good = row("hello there", "general kenobi")
    data = (good.replace(", ", ",\r") + "\n"                          # 1: CRs between tokens
            + row("hello \ud800", "general kenobi") + "\n"           # 2: lone surrogate (escaped)
            + weighted("hello there", "general kenobi", weights=[2]) + "\n"  # 3: bad weight
            + weighted("hello there", "general kenobi", weights=[True]) + "\n"  # 4: bad weight
            + good + "\r\n")                                         # 5
    assert "\r" in data.split("\n")[0] and "\\ud800" in data.split("\n")[1]
    f = write(tmp_path, "t.jsonl", data)
    _, _, examples = run(capsys, "--tokenizer", tokenizer, f)
    assert [e["line"] for e in examples] == [1, 5]
    assert all("error" not in e for e in examples)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
TOOL_MESSAGES = [
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "general kenobi"}]


@pytest.fixture(scope="module")
def tool_tokenizer(tmp_path_factory):
    p = tmp_path_factory.mktemp("tool-vocab") / "vocab.jsonl"
    p.write_text(json.dumps({"tools": TOOLS, "messages": TOOL_MESSAGES}) + "\n")
    d = str(tmp_path_factory.mktemp("tok") / "tools")
    make_tiny_model.main([d, "--data", str(p), "--tool-template"])
    return d


def test_tools_and_tool_calls_are_counted(tmp_path, capsys, tool_tokenizer):
    """<|system|> tools : get_weather <|end|> | <|user|> hello there <|end|> | <|assistant|> call
    get_weather {" city ": " Paris "} <|end|> | <|tool|> sunny <|end|> | <|assistant|> general
    kenobi <|end|>: 5 + 4 + 10 + 3 + 4 = 26 tokens, 9 + 3 of them in the answers, 5 within
    the first 15 (9 without the tools block). Rows with and without tools share a batch; a
    `tools` that is not a list of objects (null included) is skipped, `[]` renders no tools."""
    plain = {"messages": TOOL_MESSAGES}
    lines = [json.dumps({"tools": TOOLS, "messages": TOOL_MESSAGES}), json.dumps(plain),
             json.dumps({"tools": TOOLS[0], "messages": TOOL_MESSAGES}),
             json.dumps({"tools": None, "messages": TOOL_MESSAGES}),
             json.dumps({"tools": [], "messages": TOOL_MESSAGES}), row("hello there", "general kenobi")]
    f = write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")
    plain_tpl = with_template(tmp_path, tool_tokenizer, lambda tpl: tpl.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""))
    for tok in (tool_tokenizer, str(plain_tpl)):
        _, info, examples = run(capsys, "--tokenizer", tok, "--max-length", "15", f)
        assert info["problem"] == "", tok
        assert [(e["line"], e["total"], e["assistant"], e["assistant_kept"]) for e in examples] == [
            (1, 26, 12, 5), (2, 21, 12, 9), (5, 21, 12, 9), (6, 8, 3, 3)], tok


def test_counts_with_trls_training_template_else_by_prefix(tmp_path, capsys, tokenizer_no_markers, monkeypatch):
    """A template TRL ships a training template for (here Qwen3's, which has no markers) is
    counted with that template, which the trainer renders with; without trl importable the
    counts fall back to the prefix method on the tokenizer's own template."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template, qwen3_chat_template
    qwen = str(with_template(tmp_path, tokenizer_no_markers, lambda _: qwen3_chat_template))
    f = write(tmp_path, "t.jsonl", "\n".join(VOCAB_ROWS) + "\n")
    tok = AutoTokenizer.from_pretrained(qwen)
    messages = [json.loads(r)["messages"] for r in VOCAB_ROWS]
    training = get_training_chat_template(tok)
    assert training is not None and training != qwen3_chat_template

    _, info, examples = run(capsys, "--tokenizer", qwen, f)
    assert info["generation_markers"] is False and info["training_template"] is True
    want = []
    for m in messages:
        enc = tok.apply_chat_template(m, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                      chat_template=training)
        want.append((len(enc["input_ids"]), sum(enc["assistant_masks"])))
    assert [(e["total"], e["assistant"]) for e in examples] == want

    monkeypatch.setitem(sys.modules, "trl", None)  # import trl raises ImportError
    monkeypatch.setitem(sys.modules, "trl.chat_template_utils", None)
    _, info, examples = run(capsys, "--tokenizer", qwen, f)
    assert info["generation_markers"] is False and info["training_template"] is False
    by_prefix = [token_stats.mask_by_prefix(tok, m) for m in messages]
    assert [(e["total"], e["assistant"]) for e in examples] == [(len(ids), sum(mask)) for ids, mask in by_prefix]
    assert [(e["total"], e["assistant"]) for e in examples] != want


def with_configs(tmp_path, tokenizer, name, tokenizer_config=None, config=None, files=()):
    """A copy of the tokenizer with keys set in tokenizer_config.json and config.json (a value
    of None removes the key) and extra empty files."""
    d = tmp_path / name
    shutil.copytree(tokenizer, d)
    for fname, edits in (("tokenizer_config.json", tokenizer_config), ("config.json", config)):
        cfg = json.loads((d / fname).read_text())
        for k, v in (edits or {}).items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (d / fname).write_text(json.dumps(cfg))
    for f in files:
        (d / f).write_text("{}")
    return str(d)


def test_direct_class_is_the_one_auto_tokenizer_loads(tmp_path, capsys, tokenizer, tokenizer_no_markers,
                                                     tool_tokenizer, monkeypatch):
    """Without AutoTokenizer (and torch) the counter loads the class AutoTokenizer would, and
    counts exactly what counting through AutoTokenizer counts."""
    from transformers import AutoTokenizer
    qwen_named = with_configs(tmp_path, tokenizer, "qwen-named", tokenizer_config={"tokenizer_class": "Qwen2Tokenizer"})
    f = write(tmp_path, "t.jsonl", "\n".join(VOCAB_ROWS + [json.dumps({"tools": TOOLS, "messages": TOOL_MESSAGES})]) + "\n")
    for d in (tokenizer, tokenizer_no_markers, tool_tokenizer, qwen_named):
        cls = token_stats.direct_tokenizer_class(d)
        assert cls is not None and cls is type(AutoTokenizer.from_pretrained(d)), d
        direct = run(capsys, "--tokenizer", d, "--max-length", "12", f)
        with monkeypatch.context() as m:
            m.setattr(token_stats, "direct_tokenizer_class", lambda _: None)
            assert run(capsys, "--tokenizer", d, "--max-length", "12", f) == direct, d


def test_direct_class_leaves_the_hard_cases_to_auto_tokenizer(tmp_path, tokenizer):
    wrong_hub, backend_ids = token_stats.auto_tokenizer_rules()
    assert "internlm2" in wrong_hub and any(p.startswith("deepseek-ai/") for p in backend_ids)
    cases = {
        "remote code": {"tokenizer_config": {"auto_map": {"AutoTokenizer": ["x.Tok", None]}}},
        "no class named": {"tokenizer_config": {"tokenizer_class": None}},
        "llama class": {"tokenizer_config": {"tokenizer_class": "LlamaTokenizerFast"}},
        "not a tokenizer": {"tokenizer_config": {"tokenizer_class": "AutoModel"}},
        "unknown class": {"tokenizer_config": {"tokenizer_class": "NoSuchTokenizer"}},
        "wrong hub class": {"config": {"model_type": "internlm2"}},
        "backend model id": {"config": {"_name_or_path": "deepseek-ai/deepseek-coder-1.3b-instruct"}},
        "mistral format": {"files": ["tekken.json"]},
    }
    for name, edits in cases.items():
        d = with_configs(tmp_path, tokenizer, name.replace(" ", "-"), **edits)
        assert token_stats.direct_tokenizer_class(d) is None, name
    d = with_configs(tmp_path, tokenizer, "no-tokenizer-json")
    os.remove(os.path.join(d, "tokenizer.json"))
    assert token_stats.direct_tokenizer_class(d) is None
    assert token_stats.direct_tokenizer_class(tokenizer) is not None


def test_counting_does_not_import_torch(tmp_path, tokenizer):
    """The counter's start is the data check's fixed cost: with a class tokenizer_config.json
    names it loads no model config, hence no torch."""
    import subprocess
    f = write(tmp_path, "t.jsonl", "\n".join(VOCAB_ROWS) + "\n")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, token_stats; rc = token_stats.main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "--tokenizer", tokenizer, f], cwd=here,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 1 + len(VOCAB_ROWS)


def test_trl_training_templates_read_from_files_match_trl(tokenizer_no_markers):
    """For every chat template TRL ships, the training template read from TRL's files is what
    get_training_chat_template gives (None where it has none), so counting needs no trl import."""
    import importlib.metadata

    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template
    assert importlib.metadata.version("trl") == token_stats.TRL_CHECKED
    folder = os.path.join(os.path.dirname(importlib.import_module("trl").__file__), "chat_templates")
    tok = AutoTokenizer.from_pretrained(tokenizer_no_markers)
    checked = 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jinja") or name.endswith("_training.jinja"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            template = f.read()
        if token_stats.MARKER_RE.search(template):
            continue  # the counter uses a template with markers as it is
        tok.chat_template = template
        try:
            want = get_training_chat_template(tok)
        except ValueError:
            want = None
        assert token_stats.trl_training_template(template) == want, name
        checked += 1
    assert checked >= 20
    assert token_stats.trl_training_template("{{ messages }}") is None


def test_trl_training_template_defers_to_trl_for_another_version(monkeypatch):
    import importlib.metadata
    from trl.chat_template_utils import qwen3_chat_template
    assert token_stats.trl_training_template(qwen3_chat_template)
    monkeypatch.setattr(importlib.metadata, "version", lambda _: "0.0.1")
    assert token_stats.trl_training_template(qwen3_chat_template) is False
    assert token_stats.trl_training_template({"default": qwen3_chat_template}) is False


def test_trl_checked_is_the_pinned_trl():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "requirements.txt"), encoding="utf-8") as f:
        pins = [line.strip() for line in f if line.startswith("trl==")]
    assert pins == [f"trl=={token_stats.TRL_CHECKED}"]
