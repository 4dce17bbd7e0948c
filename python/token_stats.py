#!/usr/bin/env python3
"""Count the tokens of chat JSONL examples with a real tokenizer and its chat template.

    python token_stats.py --tokenizer DIR [--max-length N] [--max-line-bytes B] FILE...

`loractl data check --tokenizer DIR` runs this (the Go side has already checked the
structure; it only needs the numbers a tokenizer alone can give). It prints JSON lines on
stdout:

    {"type": "template", "tokenizer", "generation_markers", "training_template", "eos_token",
     "ends_assistant_with_eos", "problem"}
    {"type": "example", "file": I, "line": N, "total", "assistant", "assistant_kept"}
    {"type": "example", "file": I, "line": N, "error": "..."}   # the template raised

`file` is the index of FILE on the command line, `line` the 1-based line number (lines end
at a newline byte only; a BOM at the start of a file is skipped). `total` is the templated length
before truncation, `assistant` the tokens that carry loss (assistant turns, their end token
included when the template puts it there, except turns with `"weight": 0`, which the trainer
does not train on), `assistant_kept` those left after truncation to --max-length (keep-start
truncation, as TRL does). Messages are rendered as the trainer renders them: with the keys
chat templates read (role, content, name, tool_calls, tool_call_id, reasoning_content,
thinking) and nothing else, and the row's optional top-level `tools` (a list of function
schemas) passed as apply_chat_template(tools=...), with the trainer's template: the
tokenizer's own when it has {% generation %} markers (`generation_markers`), else TRL's
training template for it where TRL ships one (`training_template` true: Llama 3, Qwen 2.5/3,
Gemma, Phi-3, ...), which SFTTrainer swaps in for assistant-only loss. The assistant tokens
are then those inside the markers. Otherwise (or when trl cannot be imported) the tokenizer's
own template renders and an assistant turn's tokens are those its rendering adds to the
conversation before it. Lines are read with the trainer's own reader
(train_lora_support.iter_chat_rows); a line it would refuse (not a chat row, a weight other
than 0 or 1, a `tools` that is not a list of objects, a lone surrogate escape, every
assistant turn at weight 0) is skipped silently: the Go check reports it.
Exit status 2 on bad arguments or a tokenizer that cannot be loaded.
"""

import argparse
import json
import os
import re
import sys

# The trainer's own module, written beside this script: what is rendered and what carries
# loss are decided by the same code the trainer runs.
from train_lora_support import TEMPLATE_KEYS, iter_chat_rows, message_weight, zero_weight0_spans

BATCH = 64
PROBE_ANSWER = "loractl probe answer"
MARKER_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, help="local tokenizer directory")
    p.add_argument("--max-length", type=int, default=0, help="training sequence length (0: no truncation)")
    p.add_argument("--max-line-bytes", type=int, default=16 << 20, help="skip longer lines unread")
    p.add_argument("files", nargs="+", metavar="FILE")
    args = p.parse_args(argv)
    if args.max_length < 0 or args.max_line_bytes <= 0:
        p.error("--max-length must be >= 0 and --max-line-bytes > 0")
    if not os.path.isdir(args.tokenizer):
        p.error(f"--tokenizer {args.tokenizer}: not a directory")
    return args


def load_tokenizer(path):
    """The tokenizer AutoTokenizer would give for `path`: loaded through its class directly
    when direct_tokenizer_class can name it (no model config, so no torch: ~0.8 s instead of
    ~3 s), else through AutoTokenizer itself."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    cls = direct_tokenizer_class(path)
    if cls is not None:
        return cls.from_pretrained(path, local_files_only=True)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


# Files whose presence makes AutoTokenizer consider Mistral's own tokenizer format.
MISTRAL_FORMAT_FILES = ("tekken.json", "params.json")


def read_json_object(path):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def auto_tokenizer_rules():
    """The two tables AutoTokenizer overrides a tokenizer_config.json's class by (model types
    whose hub class is known wrong, and model ids that get the generic backend), read from
    the installed transformers' source rather than imported: importing that module imports
    the model configs and torch, the ~2 s this avoids. None when they cannot be read."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    src = os.path.join(spec.submodule_search_locations[0], "models", "auto", "tokenization_auto.py")
    want = {"MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS", "MODEL_IDS_TO_TOKENIZERS_BACKEND"}
    found = {}
    try:
        with open(src, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
            if isinstance(target, ast.Name) and target.id in want and node.value is not None:
                found[target.id] = ast.literal_eval(node.value)
    except (OSError, SyntaxError, ValueError):
        return None
    if set(found) != want:
        return None
    return found["MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS"], found["MODEL_IDS_TO_TOKENIZERS_BACKEND"]


def direct_tokenizer_class(path):
    """The class AutoTokenizer.from_pretrained(path) would instantiate, when that is simply
    the class tokenizer_config.json names (resolved by name, as AutoTokenizer does, which
    imports only that tokenizer's module); None when AutoTokenizer could decide otherwise:
    no named class or no tokenizer.json, remote code (auto_map), Mistral-format files, a
    LlamaTokenizer (which AutoTokenizer swaps for a byte-level tokenizer.json), a model type
    or model id its override tables list, or a class that is not a fast tokenizer."""
    import fnmatch

    tc = read_json_object(os.path.join(path, "tokenizer_config.json"))
    name = tc.get("tokenizer_class") if tc else None
    if not isinstance(name, str) or not name or "auto_map" in tc:
        return None
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        return None
    if any(os.path.exists(os.path.join(path, f)) for f in MISTRAL_FORMAT_FILES):
        return None
    name = name.removesuffix("Fast")
    if name == "LlamaTokenizer":
        return None
    config = read_json_object(os.path.join(path, "config.json")) or {}
    rules = auto_tokenizer_rules()
    if rules is None:
        return None
    wrong_hub_class, backend_ids = rules
    model_type, model_id = config.get("model_type"), config.get("_name_or_path")
    if model_type in wrong_hub_class or "auto_map" in config:
        return None
    # AutoTokenizer matches the id the model was loaded by (here the path), a saved config
    # may still carry its hub id: either one listed makes it decide.
    ids = [i.lower() for i in (model_id, path) if isinstance(i, str)]
    if any(fnmatch.fnmatch(i, p) for i in ids for p in backend_ids):
        return None
    import transformers
    from transformers.tokenization_python import PythonBackend
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    cls = getattr(transformers, name, None) or getattr(transformers, name + "Fast", None)
    if cls is PythonBackend:
        return TokenizersBackend  # what AutoTokenizer loads for a generic slow class name
    if not isinstance(cls, type) or not issubclass(cls, TokenizersBackend):
        return None
    return cls


def records(path, max_line_bytes):
    """Yield (line number, messages, tools or None) for every chat row, through the
    trainer's own reader (iter_chat_rows): lines it would refuse are skipped (the Go check
    reports them), lines longer than max_line_bytes are skipped unread. Each message carries
    its weight again (as written: 0 or 1), for the masks below."""
    for lineno, row, problem in iter_chat_rows(path, max_line_bytes):
        if problem:
            continue
        yield lineno, [dict(m, weight=w) for m, w in zip(row["messages"], row["weights"])], row["tools"]


def weight(message):
    """A message's weight, 1 when absent; None unless it is the JSON number 0 or 1."""
    return message_weight(message.get("weight", 1))


def end_tokens(tok, tokenizer_dir):
    """The tokens that may end an assistant turn: EOS and generation_config's eos ids."""
    ends = {tok.eos_token} if tok.eos_token else set()
    try:
        with open(os.path.join(tokenizer_dir, "generation_config.json"), encoding="utf-8") as f:
            ids = json.load(f).get("eos_token_id")
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        ends.update(t for t in tok.convert_ids_to_tokens(ids) if t)
    except (OSError, ValueError, TypeError):
        pass
    return ends


# The TRL release whose get_training_chat_template trl_training_template was checked
# against (tests/test_token_stats.py, for every template TRL ships); the pin in
# requirements.txt, which a test keeps equal to it.
TRL_CHECKED = "1.16.0"


def training_template(tok):
    """The chat template the trainer renders with when the tokenizer's own has no generation
    markers: TRL's training template for it (Llama 3, Qwen 2.5/3, Gemma, Phi-3, ...), which
    SFTTrainer swaps in for assistant-only loss; None when TRL ships none for this template
    or TRL is not importable (the counts then come from the prefix method). Read from TRL's
    files when its version is the one checked (importing trl imports torch: ~5 s), else
    asked of TRL itself."""
    found = trl_training_template(tok.chat_template)
    if found is not False:
        return found
    try:
        from trl.chat_template_utils import get_training_chat_template
        return get_training_chat_template(tok)
    except Exception:  # ImportError (no trl), ValueError (no training template); a template TRL cannot probe
        return None


def trl_training_template(template):
    """TRL's training template for `template` without importing trl: TRL ships each chat
    template it patches as chat_templates/NAME.jinja beside its patched NAME_training.jinja,
    and get_training_chat_template returns the second for a template equal to the first
    (checked against TRL_CHECKED). None: TRL has none for it; False: cannot tell here (another
    TRL version, trl not installed, a template given as named variants)."""
    import importlib.metadata
    import importlib.util

    if not isinstance(template, str):
        return False
    try:
        if importlib.metadata.version("trl") != TRL_CHECKED:
            return False
        spec = importlib.util.find_spec("trl")
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = os.path.join(spec.submodule_search_locations[0], "chat_templates")
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return False
    for name in names:
        if not name.endswith(".jinja") or name.endswith("_training.jinja"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                if f.read() != template:
                    continue
            with open(os.path.join(folder, name[: -len(".jinja")] + "_training.jinja"), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None  # a template TRL knows but does not patch
        except OSError:
            return False
    return None


def template_info(tok, tokenizer_dir, training=None):
    """Render a probe conversation and check that the answer is followed by an end token,
    inside the loss-carrying part when the template has generation markers (or, with
    `training`, TRL's training template, which has them)."""
    template = tok.chat_template if isinstance(tok.chat_template, str) else ""
    markers = bool(MARKER_RE.search(template))
    ends = end_tokens(tok, tokenizer_dir)
    info = {
        "type": "template",
        "tokenizer": tokenizer_dir,
        "generation_markers": markers,
        "training_template": training is not None,
        "eos_token": tok.eos_token or "",
        "ends_assistant_with_eos": False,
        "problem": "",
    }
    probe = [{"role": "user", "content": "Ping?"}, {"role": "assistant", "content": PROBE_ANSWER}]
    try:
        text = tok.apply_chat_template(probe, tokenize=False, chat_template=training)
    except Exception as e:  # a template may raise anything (jinja2 errors, its own raise_exception)
        info["problem"] = f"the chat template cannot render a user/assistant pair: {first_line(e)}"
        return info
    at = text.rfind(PROBE_ANSWER)
    after = text[at + len(PROBE_ANSWER):].lstrip() if at >= 0 else ""
    if not ends:
        info["problem"] = "the tokenizer has no end-of-sequence token: the model will not learn to stop"
    elif not any(after.startswith(t) for t in ends):
        info["problem"] = (
            f"the chat template does not end assistant turns with an end token ({', '.join(sorted(ends))}); "
            f"after the answer it renders {after[:30]!r}: the model will not learn to stop"
        )
    elif markers or training is not None:
        enc = tok.apply_chat_template(probe, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                      chat_template=training)
        end_ids = set(tok.convert_tokens_to_ids(sorted(ends)))
        if not any(i in end_ids for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m):
            info["problem"] = (
                "the chat template's {% generation %} block closes before the end token: with "
                "assistant-only loss the model never learns to stop"
            )
        else:
            info["ends_assistant_with_eos"] = True
    else:
        info["ends_assistant_with_eos"] = True
    return info


def first_line(e):
    text = str(e).strip().splitlines()
    return (text[0] if text else e.__class__.__name__)[:200]


def template_messages(messages):
    """The messages as the trainer gives them to the template: TEMPLATE_KEYS only (the weight
    key is loractl's)."""
    return [{k: m[k] for k in TEMPLATE_KEYS if k in m} for m in messages]


def unweight_mask(mask, messages):
    """The mask with the spans of weight-0 assistant turns set to 0, exactly as the trainer
    does it; a template whose spans do not pair up with the turns makes the trainer refuse
    the example, so it is an error (a ValueError) here too."""
    return zero_weight0_spans(mask, [weight(m) for m in messages if m["role"] == "assistant"])


def masks_by_markers(tok, batch, template=None):
    """(ids, mask) of each conversation of a batch of (file, line, messages, tools), whose
    tools are all the same (apply_chat_template takes one tools= for a whole batch), rendered
    with `template` (None: the tokenizer's own)."""
    enc = tok.apply_chat_template([template_messages(m) for _, _, m, _ in batch], tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True, tools=batch[0][3], chat_template=template)
    return [(ids, unweight_mask(mask, m))
            for (_, _, m, _), ids, mask in zip(batch, enc["input_ids"], enc["assistant_masks"])]


def mask_by_prefix(tok, messages, tools=None):
    """Without generation markers: an assistant turn's tokens are those its rendering adds
    to the conversation before it (with the generation prompt). Weight-0 turns carry none."""
    weights = [weight(m) for m in messages]
    messages = template_messages(messages)
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True, tools=tools)["input_ids"]
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or weights[i] == 0:
            continue
        before = 0
        if i > 0:
            before = len(tok.apply_chat_template(messages[:i], tokenize=True, return_dict=True,
                                                 add_generation_prompt=True, tools=tools)["input_ids"])
        upto = len(tok.apply_chat_template(messages[: i + 1], tokenize=True, return_dict=True,
                                           tools=tools)["input_ids"])
        for j in range(before, min(upto, len(ids))):
            mask[j] = 1
    return ids, mask


def counts(ids, mask, max_length):
    kept = mask[:max_length] if max_length > 0 else mask
    return {"total": len(ids), "assistant": int(sum(mask)), "assistant_kept": int(sum(kept))}


def count_batch(tok, markers, batch, max_length, emit, template=None):
    """Count one batch of (file, line, messages, tools); on a template error retry one by one
    so only the failing examples are reported. A batch where some row has tools goes one by one
    too: tools= applies to a whole batched call. With `markers` the masks come from the
    {% generation %} markers of `template` (None: the tokenizer's own), else by prefixes."""
    if markers and len(batch) > 1 and all(tools is None for *_, tools in batch):
        try:
            for (fi, line, _, _), (ids, mask) in zip(batch, masks_by_markers(tok, batch, template)):
                emit({"type": "example", "file": fi, "line": line, **counts(ids, mask, max_length)})
            return
        except Exception:
            pass
    for item in batch:
        fi, line, messages, tools = item
        try:
            ids, mask = masks_by_markers(tok, [item], template)[0] if markers else mask_by_prefix(tok, messages, tools)
            emit({"type": "example", "file": fi, "line": line, **counts(ids, mask, max_length)})
        except Exception as e:
            emit({"type": "example", "file": fi, "line": line, "error": first_line(e)})


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        tok = load_tokenizer(args.tokenizer)
    except Exception as e:
        print(f"token_stats: cannot load the tokenizer in {args.tokenizer}: {first_line(e)}", file=sys.stderr)
        return 2
    if not getattr(tok, "chat_template", None):
        print(f"token_stats: the tokenizer in {args.tokenizer} has no chat template", file=sys.stderr)
        return 2
    out = sys.stdout

    def emit(obj):
        out.write(json.dumps(obj, ensure_ascii=False) + "\n")

    own_markers = isinstance(tok.chat_template, str) and bool(MARKER_RE.search(tok.chat_template))
    training = None if own_markers else training_template(tok)
    info = template_info(tok, args.tokenizer, training)
    emit(info)
    markers = own_markers or training is not None
    for fi, path in enumerate(args.files):
        batch = []
        for line, messages, tools in records(path, args.max_line_bytes):
            batch.append((fi, line, messages, tools))
            if len(batch) == BATCH:
                count_batch(tok, markers, batch, args.max_length, emit, training)
                batch = []
        if batch:
            count_batch(tok, markers, batch, args.max_length, emit, training)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
