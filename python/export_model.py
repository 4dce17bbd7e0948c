#!/usr/bin/env python3
"""Export a loractl run's adapter for serving: as the adapter itself, merged into the base
model, or merged and converted to GGUF. `loractl export` runs this with the trainer's
interpreter, beside train_lora_support.py; the controller owns the checks that need no
model (destination, disk space, checkpoint completeness), the temp dir and its rename, and
the model card; this script writes the model files into --out and verifies them.

    python export_model.py --resolved RUN/resolved.json --adapter DIR --out TMP
        [--mode adapter|merge|gguf] [--gguf-quant f16|q8_0|q4_k_m] [--probes 2]
        [--tolerance T] [--system-prompt TEXT]

Every export checks, on probe conversations from the run's eval set (its train set when
there is none), that the chat template shipped with it renders each probe to exactly the
token ids the trainer trained on (train_lora.py's apply_chat_template call, the same
template and tools). A merged export also checks that the saved model, loaded alone,
gives the same logits as base + adapter (max abs difference <= tolerance). The reference
logits are computed before merge_and_unload(), which merges in place, so the base weights
are held once.

The last stdout line is one JSON object: {"type": "result", ...} with what was written and
measured. Exit 2: the run cannot be exported as asked (bad input); 1: it failed (a check
failed, or something broke).
"""

import argparse
import gc
import json
import os
import shutil
import sys
import time

from train_lora_support import ConfigError, exit_now, load_config, read_chat_jsonl

EXIT_FAILED, EXIT_INVALID = 1, 2

# Files of a PEFT adapter dir that make the adapter; the tokenizer files are chosen apart.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                   "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
# The longest a probe may be: enough to cover a template's whole turn structure, small
# enough that the reference logits (probe tokens x vocab x 4 bytes) stay a small part of
# the memory a merge needs.
MAX_PROBE_TOKENS = 128
DEFAULT_TOLERANCE = {"float32": 1e-4, "float16": 5e-2, "bfloat16": 2.5e-1}


class ExportError(Exception):
    """A failed export (a check did not pass): exit 1."""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolved", required=True, help="the run's resolved.json")
    p.add_argument("--adapter", required=True, help="the adapter dir (the run's adapter/ or a checkpoint)")
    p.add_argument("--out", required=True, help="the (empty) directory to write into")
    p.add_argument("--mode", choices=["adapter", "merge", "gguf"], default="adapter")
    p.add_argument("--gguf-quant", choices=["f16", "q8_0", "q4_k_m"], default="f16")
    p.add_argument("--probes", type=int, default=2, help="probe conversations to verify with")
    p.add_argument("--tolerance", type=float, default=None,
                   help="max abs logit difference allowed (default by dtype: fp32 1e-4, fp16 0.05, bf16 0.25)")
    p.add_argument("--system-prompt", default="", help="the run's production system prompt (for the Modelfile)")
    args = p.parse_args(argv)
    if args.probes < 1:
        p.error("--probes must be >= 1")
    if args.tolerance is not None and not args.tolerance > 0:
        p.error("--tolerance must be > 0")
    return args


def emit(obj):
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def log(msg):
    print(f"export: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- probes and template parity

def probe_rows(cfg, n):
    """The first n rows of the eval set as the trainer built it (the data.eval file, or the
    data.eval_split rows chosen exactly as train_lora.py chooses them), else of train."""
    d, seed = cfg["data"], cfg["train"]["seed"]
    if d["eval"]:
        rows = read_chat_jsonl(d["eval"])
    else:
        rows = read_chat_jsonl(d["train"])
        if d["eval_split"] > 0:
            from datasets import Dataset
            try:
                parts = Dataset.from_dict({"row": list(range(len(rows)))}).train_test_split(
                    test_size=d["eval_split"], seed=seed, shuffle=True)
                rows = [rows[i] for i in parts["test"]["row"]]
            except ValueError:
                pass
    if not rows:
        raise ConfigError("the run's data has no rows to probe the export with")
    return rows[:n]


def training_template(tokenizer, cfg):
    """The template train_lora.py passed to apply_chat_template: TRL's training template when
    assistant-only loss was on and the template has no generation markers, else the tokenizer's."""
    if cfg["train"]["assistant_only_loss"] is False:
        return None
    try:
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers
        if has_generation_markers(tokenizer.chat_template or ""):
            return None
        return get_training_chat_template(tokenizer)
    except (ImportError, ValueError):
        return None


def ids_of(enc):
    if isinstance(enc, dict) or hasattr(enc, "keys"):
        enc = enc["input_ids"]
    return list(enc)


def check_template_parity(base_tok, shipped_tok, cfg, rows):
    """Each probe rendered by the shipped tokenizer and template must give exactly the ids the
    trainer trained on; and its generation prompt (the probe up to its last assistant turn)
    must be how the trained sequence begins, or a server would prompt differently from training."""
    template = training_template(base_tok, cfg)
    results = []
    for row in rows:
        trained = ids_of(base_tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                      chat_template=template, tools=row["tools"]))
        shipped = ids_of(shipped_tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                         tools=row["tools"]))
        if shipped != trained:
            i = next((k for k, (a, b) in enumerate(zip(shipped, trained)) if a != b), min(len(shipped), len(trained)))
            raise ExportError(
                f"{row['where']}: the exported chat template renders this conversation to different token ids "
                f"than training did (first difference at token {i}: {shipped[i:i + 5]} vs trained {trained[i:i + 5]}); "
                "a server using it would prompt the model in a format it was not trained on. Restore the "
                "template the run trained with (the base model's) in the adapter's tokenizer files")
        last = max((k for k, m in enumerate(row["messages"]) if m["role"] == "assistant"), default=None)
        prefix_ok = None
        if last is not None and last > 0:
            prompt = ids_of(shipped_tok.apply_chat_template(row["messages"][:last], tokenize=True, return_dict=True,
                                                            add_generation_prompt=True, tools=row["tools"]))
            prefix_ok = trained[:len(prompt)] == prompt
            if not prefix_ok:
                log(f"warning: {row['where']}: the template's generation prompt is not how the trained sequence "
                    "of this conversation begins (a template that renders past turns differently, e.g. "
                    "dropping their reasoning): served replies follow a prompt the model saw only in that form")
        results.append({"where": row["where"], "tokens": len(trained), "generation_prompt_prefix": prefix_ok})
    return results


# ---------------------------------------------------------------- stop tokens

def stop_token_ids(tokenizer):
    """The ids that end an assistant turn: eos and the template's end-of-turn token(s), found
    the way generation (loractl chat, task evaluation) finds them."""
    from generation import stop_token_ids as shared
    return list(shared(tokenizer))


# ---------------------------------------------------------------- files

def copy_adapter(adapter_dir, out):
    for name in ADAPTER_FILES:
        src = os.path.join(adapter_dir, name)
        if not os.path.isfile(src):
            raise ConfigError(f"{adapter_dir}: no {name}: not a complete adapter")
        shutil.copy2(src, os.path.join(out, name))


def shipped_tokenizer_dir(adapter_dir, base):
    """The tokenizer the run saved with its adapter, else the base model's."""
    if os.path.isfile(os.path.join(adapter_dir, "tokenizer_config.json")):
        return adapter_dir
    return base


def save_tokenizer(tokenizer, out):
    tokenizer.save_pretrained(out)
    # A tokenizer class name the serving side may not have (transformers 5's backend names)
    # is replaced by the fast class every version knows.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        tc = json.load(f)
    if tc.get("tokenizer_class") in ("TokenizersBackend", None):
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(tc, f, indent=2, ensure_ascii=False)
            f.write("\n")


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------- merge and verify

def base_dtype(base_path, cfg):
    """The dtype the base model is stored in (its config's dtype/torch_dtype); a model stored
    in fp32 stays fp32. A quantized run's base is loaded in this 16-bit dtype, never in 4/8 bit."""
    import torch
    from transformers import AutoConfig
    m = cfg["model"]
    conf = AutoConfig.from_pretrained(base_path, revision=m["revision"] or None, trust_remote_code=m["trust_remote_code"])
    name = getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None) or "float32"
    if isinstance(name, torch.dtype):
        return name
    dt = getattr(torch, str(name).replace("torch.", ""), None)
    return dt if isinstance(dt, torch.dtype) else torch.float32


def probe_logits(model, id_lists):
    """The logits of each probe, kept in the model's dtype (the dtype they are computed in:
    a float32 copy would add nothing but memory)."""
    import torch
    out = []
    with torch.inference_mode():
        for ids in id_lists:
            x = torch.tensor([ids[:MAX_PROBE_TOKENS]], device=model.device)
            out.append(model(input_ids=x).logits[0].cpu())
    return out


def release_memory():
    """Collect, then hand freed heap memory back to the OS. Weight tensors of a few MB come
    from glibc's heap, which keeps what is freed: without the trim the base model's memory
    would still count while the saved model is loaded back, nearly doubling the peak."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def merge(cfg, adapter_dir, out, id_lists, tolerance):
    """Merge the adapter into the base in the base's dtype, save it to out, reload it alone and
    compare its logits with base + adapter's. Returns the verification record."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    m = cfg["model"]
    common = {"revision": m["revision"] or None, "trust_remote_code": m["trust_remote_code"]}
    dtype = base_dtype(m["name_or_path"], cfg)
    dtype_name = str(dtype).replace("torch.", "")
    tol = tolerance if tolerance is not None else DEFAULT_TOLERANCE.get(dtype_name, 1e-4)
    t0 = time.monotonic()
    base = AutoModelForCausalLM.from_pretrained(m["name_or_path"], dtype=dtype, low_cpu_mem_usage=True, **common)
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    # Before the merge: merge_and_unload() changes the base weights in place.
    reference = probe_logits(model, id_lists)
    release_memory()  # the forward pass's activations, before the merge allocates its own
    merged = model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    merge_s = time.monotonic() - t0
    del merged, model, base
    release_memory()
    # The saved model alone, as a server would load it.
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=dtype, low_cpu_mem_usage=True)
    reloaded.eval()
    got = probe_logits(reloaded, id_lists)
    del reloaded
    release_memory()
    diffs = [float((a.float() - b.float()).abs().max()) for a, b in zip(reference, got)]
    record = {"dtype": dtype_name, "max_abs_diff": max(diffs), "per_probe": diffs, "tolerance": tol,
              "merge_seconds": round(merge_s, 3)}
    log(f"merged logits vs base+adapter on {len(diffs)} probe(s): max abs difference {max(diffs):.3g} "
        f"(tolerance {tol:g}, {dtype_name})")
    if not max(diffs) <= tol:
        raise ExportError(f"the merged model's logits differ from base+adapter by {max(diffs):.4g} "
                          f"(tolerance {tol:g}, {dtype_name}): the merge is not faithful")
    return record


def write_generation_config(base_path, cfg, out, stops, pad_id):
    """generation_config.json with every end-of-turn token in eos_token_id, so a server that
    reads it stops where the model was trained to stop."""
    from transformers import GenerationConfig
    m = cfg["model"]
    try:
        gc_ = GenerationConfig.from_pretrained(base_path, revision=m["revision"] or None)
    except (OSError, ValueError):
        gc_ = GenerationConfig()
    gc_.eos_token_id = stops if len(stops) != 1 else stops[0]
    if gc_.pad_token_id is None and pad_id is not None:
        gc_.pad_token_id = pad_id
    gc_.save_pretrained(out)


# ---------------------------------------------------------------- main

def run(args):
    cfg, _ = load_config(args.resolved)
    if args.mode == "gguf":
        import export_gguf
        export_gguf.require(args.gguf_quant)
    if not os.path.isdir(args.out):
        raise ConfigError(f"--out {args.out}: not a directory")
    for name in ADAPTER_FILES:
        if not os.path.isfile(os.path.join(args.adapter, name)):
            raise ConfigError(f"{args.adapter}: no {name}: not a complete adapter")
    from transformers import AutoTokenizer
    m = cfg["model"]
    common = {"revision": m["revision"] or None, "trust_remote_code": m["trust_remote_code"]}
    base_tok = AutoTokenizer.from_pretrained(m["name_or_path"], **common)
    tok_dir = shipped_tokenizer_dir(args.adapter, m["name_or_path"])
    shipped = AutoTokenizer.from_pretrained(tok_dir, **(common if tok_dir == m["name_or_path"] else {}))
    if not shipped.chat_template:
        raise ConfigError(f"{tok_dir}: the tokenizer has no chat template to export")
    rows = probe_rows(cfg, args.probes)
    parity = check_template_parity(base_tok, shipped, cfg, rows)
    log(f"chat template: {len(parity)} probe(s) render to the token ids training used")
    stops = stop_token_ids(shipped)
    result = {"type": "result", "mode": args.mode, "probes": parity,
              "stop_token_ids": stops, "stop_tokens": shipped.convert_ids_to_tokens(stops),
              "eos_token": shipped.eos_token, "chat_template": shipped.chat_template}

    if args.mode == "gguf":
        # What the conversion cannot take is refused before the merge, not after it.
        from transformers import AutoConfig
        import export_gguf
        export_gguf.check_model(AutoConfig.from_pretrained(m["name_or_path"], **common).to_dict())
        export_gguf.vocab_type(tok_dir)
        export_gguf.ollama_template(shipped, rows)
    if args.mode == "adapter":
        copy_adapter(args.adapter, args.out)
        save_tokenizer(shipped, args.out)
    else:
        id_lists = [ids_of(shipped.apply_chat_template(r["messages"], tokenize=True, return_dict=True, tools=r["tools"]))
                    for r in rows]
        result["verify"] = merge(cfg, args.adapter, args.out, id_lists, args.tolerance)
        save_tokenizer(shipped, args.out)
        write_generation_config(m["name_or_path"], cfg, args.out, stops, shipped.pad_token_id)
        if args.mode == "gguf":
            import export_gguf
            result["gguf"] = export_gguf.convert(args.out, shipped, stops, rows, args.gguf_quant, args.system_prompt)
            # The GGUF and the Modelfile are the export; the safetensors they came from go.
            for name in os.listdir(args.out):
                if name not in (result["gguf"]["file"], "Modelfile"):
                    p = os.path.join(args.out, name)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    result["files"] = sorted(os.listdir(args.out))
    result["bytes"] = dir_bytes(args.out)
    emit(result)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(args)
    except ConfigError as e:
        print(f"export: {e}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    except (ExportError, RuntimeError) as e:
        print(f"export: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    exit_now(main())  # without the 1.3 s module teardown
