"""GGUF conversion and the Ollama Modelfile for export_model.py (`loractl export --format gguf`).

Llama-architecture models with a byte-level BPE tokenizer (GGUF vocabulary type "gpt2"),
written with the `gguf` package's GGUFWriter and TensorNameMap, the library llama.cpp's own
converter is built on; llama.cpp's converter itself is not on the package index. The
tensors are streamed: each is read from the merged safetensors, converted and written
before the next is read. f16 and q8_0 are quantized here (gguf.quants); q4_k_m needs
llama.cpp's `llama-quantize` on PATH, which the f16 file is handed to.

The Modelfile's TEMPLATE is derived from the same chat template by rendering marker
conversations and reading off what surrounds each role's content; it is then checked to
render every probe conversation exactly as the Jinja template does, or the export fails.
"""

import json
import os
import shutil
import subprocess

from train_lora_support import ConfigError

FIX = ("install the export extras: LORACTL_EXPORT_EXTRAS=1 scripts/setup-python.sh "
       "(or: python -m pip install -r python/requirements-export.txt with the trainer's interpreter)")
FILE_NAMES = {"f16": "model-f16.gguf", "q8_0": "model-q8_0.gguf", "q4_k_m": "model-q4_k_m.gguf"}


def require(quant):
    """Refuse before any model is loaded when the conversion cannot run here."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ConfigError(f"--format gguf needs the Python package gguf, which is missing: {FIX}") from None
    if quant == "q4_k_m" and not shutil.which("llama-quantize"):
        raise ConfigError("--gguf-quant q4_k_m needs llama.cpp's llama-quantize on PATH (the Python gguf package "
                          "cannot write Q4_K): build llama.cpp, or export --gguf-quant f16 or q8_0")


def check_model(config):
    if config.get("model_type") != "llama":
        raise ConfigError(f"GGUF export supports Llama-architecture models; this one is {config.get('model_type')!r}: "
                          "export --merge and convert it with llama.cpp's convert_hf_to_gguf.py")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise ConfigError(f"GGUF export does not convert rope_type {rope.get('rope_type')!r}: "
                          "export --merge and convert it with llama.cpp's convert_hf_to_gguf.py")


def vocab_type(model_dir):
    """("gpt2", pre) for a byte-level BPE tokenizer.json; anything else has no converter here."""
    try:
        with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
    except (OSError, ValueError):
        raise ConfigError("GGUF export needs a tokenizer.json (a fast tokenizer)") from None
    kind = (tj.get("model") or {}).get("type")
    pre = json.dumps(tj.get("pre_tokenizer"))
    if kind == "BPE" and "ByteLevel" in pre:
        return "gpt2", "gpt-2"
    raise ConfigError(f"GGUF export converts byte-level BPE tokenizers; this one is {kind} "
                      f"(pre-tokenizer {pre[:80]}): export --merge and convert it with llama.cpp's convert_hf_to_gguf.py")


def permute(w, n_head, n_head_kv):
    """llama.cpp's rotary layout for q/k (the same permutation its converter applies)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def token_list(tokenizer, n_vocab):
    import gguf
    specials = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    added = set(tokenizer.added_tokens_decoder)
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(reverse[i])
        types.append(gguf.TokenType.CONTROL if i in specials else
                     gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)
    return tokens, types


def convert(out, tokenizer, stops, rows, quant, system_prompt):
    """Write the GGUF and the Modelfile into out (which holds the merged model); return a record."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    check_model(config)
    vtype, pre = vocab_type(out)
    template = ollama_template(tokenizer, rows)

    hidden, n_layer = config["hidden_size"], config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    head_dim = config.get("head_dim") or hidden // n_head
    rope = config.get("rope_parameters") or {}
    n_vocab = config["vocab_size"]
    qtype = gguf.GGMLQuantizationType.Q8_0 if quant == "q8_0" else gguf.GGMLQuantizationType.F16
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    name = FILE_NAMES[quant]
    f16_name = FILE_NAMES["f16"] if quant == "q4_k_m" else name
    path = os.path.join(out, f16_name)

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(os.path.basename(os.path.normpath(out)))
    w.add_context_length(config.get("max_position_embeddings", 2048))
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    w.add_rope_dimension_count(head_dim)
    if head_dim != hidden // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(n_vocab)
    w.add_file_type(ftype)

    tokens, types = token_list(tokenizer, n_vocab)
    w.add_tokenizer_model(vtype)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(out, load_merges=True, n_vocab=n_vocab)
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(w, quiet=True)
    eot = next((i for i in stops if i != tokenizer.eos_token_id), tokenizer.eos_token_id)
    if tokenizer.eos_token_id is not None and "eos" not in special.special_token_ids:
        w.add_eos_token_id(tokenizer.eos_token_id)
    if eot is not None:
        w.add_eot_token_id(eot)

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    files = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    plan = []  # (file, hf name, gguf name, shape, qtype)
    for fname in files:
        with safe_open(os.path.join(out, fname), framework="pt") as st:
            for key in st.keys():
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                new = tmap.get_name(key, try_suffixes=(".weight", ".bias"))
                if new is None:
                    raise ConfigError(f"GGUF export: no GGUF name for tensor {key}")
                shape = tuple(st.get_slice(key).get_shape())
                t = qtype if len(shape) == 2 else gguf.GGMLQuantizationType.F32
                if t == gguf.GGMLQuantizationType.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[t][0]:
                    t = gguf.GGMLQuantizationType.F16
                plan.append((fname, key, new, shape, t))

    def load(fname, key, shape, t):
        with safe_open(os.path.join(out, fname), framework="pt") as st:
            a = st.get_tensor(key).float().numpy()
        if key.endswith("q_proj.weight"):
            a = permute(a, n_head, n_head)
        elif key.endswith("k_proj.weight"):
            a = permute(a, n_head, n_kv)
        if t == gguf.GGMLQuantizationType.F32:
            return a.astype(np.float32)
        if t == gguf.GGMLQuantizationType.F16:
            return a.astype(np.float16)
        return gguf.quants.quantize(a, t)

    for _fname, _key, new, shape, t in plan:
        if t == gguf.GGMLQuantizationType.Q8_0:  # described by its byte shape, as quantize() returns it
            byte_shape = gguf.quant_shape_to_byte_shape(shape, t)
            w.add_tensor_info(new, byte_shape, np.uint8, int(np.prod(byte_shape)), raw_dtype=t)
        else:
            dt = np.float32 if t == gguf.GGMLQuantizationType.F32 else np.float16
            w.add_tensor_info(new, shape, dt, int(np.prod(shape)) * np.dtype(dt).itemsize, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for fname, key, _new, shape, t in plan:
        w.write_tensor_data(load(fname, key, shape, t))
    w.close()

    if quant == "q4_k_m":
        q_path = os.path.join(out, name)
        p = subprocess.run(["llama-quantize", path, q_path, "Q4_K_M"], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"llama-quantize failed: {p.stderr.strip()[-2000:]}")
        os.remove(path)
        path = q_path

    record = read_back(path, tokenizer, len(plan), n_vocab, eot)
    record["file"] = name
    record["quant"] = quant
    write_modelfile(out, name, template, [tokenizer.convert_ids_to_tokens(i) for i in stops], system_prompt)
    return record


def read_back(path, tokenizer, n_tensors, n_vocab, eot):
    """Read the written file back: tensor count, vocabulary, chat template and eos/eot ids."""
    import gguf
    r = gguf.GGUFReader(path)

    def field(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()

    problems = []
    if len(r.tensors) != n_tensors:
        problems.append(f"{len(r.tensors)} tensors, wrote {n_tensors}")
    tokens = field("tokenizer.ggml.tokens") or []
    if len(tokens) != n_vocab:
        problems.append(f"{len(tokens)} tokens, wrote {n_vocab}")
    if field("tokenizer.chat_template") != tokenizer.chat_template:
        problems.append("the chat template differs")
    if field("tokenizer.ggml.eos_token_id") != tokenizer.eos_token_id:
        problems.append("the eos token id differs")
    if eot is not None and field("tokenizer.ggml.eot_token_id") != eot:
        problems.append("the end-of-turn token id differs")
    if problems:
        raise RuntimeError(f"{path}: the GGUF read back wrong: {'; '.join(problems)}")
    return {"tensors": len(r.tensors), "tokens": len(tokens), "eos_token_id": tokenizer.eos_token_id,
            "eot_token_id": eot, "bytes": os.path.getsize(path)}


# ---------------------------------------------------------------- Ollama template

MARK = {"system": "\x01SYS\x01", "user": "\x01USR\x01", "assistant": "\x01AST\x01", "user2": "\x01USR2\x01",
        "assistant2": "\x01AST2\x01"}


def _render(tokenizer, messages, gen=False):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def _split(text, marks):
    """text split at each mark, in order: len(marks)+1 pieces, or None when one is missing."""
    pieces, rest = [], text
    for m in marks:
        i = rest.find(m)
        if i < 0:
            return None
        pieces.append(rest[:i])
        rest = rest[i + len(m):]
    return pieces + [rest]


def role_format(tokenizer):
    """What the template puts before and after each role's content, and the generation prompt."""
    fail = ConfigError("the chat template does not render turns in a per-role pattern an Ollama TEMPLATE can "
                       "express; the GGUF carries the template (tokenizer.chat_template) for llama.cpp")
    bos = tokenizer.bos_token or ""
    try:
        full = _render(tokenizer, [{"role": "system", "content": MARK["system"]},
                                   {"role": "user", "content": MARK["user"]},
                                   {"role": "assistant", "content": MARK["assistant"]},
                                   {"role": "user", "content": MARK["user2"]},
                                   {"role": "assistant", "content": MARK["assistant2"]}])
        one = _render(tokenizer, [{"role": "user", "content": MARK["user"]}])
        one_gen = _render(tokenizer, [{"role": "user", "content": MARK["user"]}], gen=True)
    except Exception as e:
        raise ConfigError(f"{fail}: {e}") from None
    c = _split(full, [MARK[k] for k in ("system", "user", "assistant", "user2", "assistant2")])
    u = _split(one, [MARK["user"]])
    if c is None or u is None or not one_gen.startswith(one):
        raise fail
    sys_pre = c[0][len(bos):] if bos and c[0].startswith(bos) else c[0]
    a_post, u_post = c[5], u[1]
    if not c[3].startswith(a_post) or not c[2].startswith(u_post) or c[2] != c[4]:
        raise fail
    u_pre = c[3][len(a_post):]
    if not c[1].endswith(u_pre):
        raise fail
    return {"system": (sys_pre, c[1][:len(c[1]) - len(u_pre)]), "user": (u_pre, u_post),
            "assistant": (c[2][len(u_post):], a_post), "generation": one_gen[len(one):], "bos": bos}


def _format(fmt, messages, gen):
    text = "".join(fmt[m["role"]][0] + m["content"] + fmt[m["role"]][1] for m in messages)
    return text + (fmt["generation"] if gen else "")


def ollama_template(tokenizer, rows):
    """A Go template for Ollama's TEMPLATE, checked against the Jinja template on the probes."""
    fmt = role_format(tokenizer)
    bos = fmt["bos"]
    for row in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if row.get("tools") or any(m["role"] not in ("system", "user", "assistant") for m in msgs):
            continue
        last = max((k for k, m in enumerate(msgs) if m["role"] == "assistant"), default=0)
        for part, gen in ((msgs, False), (msgs[:last], True)):
            if not part:
                continue
            want = _render(tokenizer, part, gen)
            if bos and want.startswith(bos):
                want = want[len(bos):]
            if _format(fmt, part, gen) != want:
                raise ConfigError(f"{row['where']}: an Ollama TEMPLATE derived from the chat template does not render "
                                  "this conversation as the chat template does; the GGUF carries the template "
                                  "(tokenizer.chat_template) for llama.cpp")

    def lit(s):
        return s.replace("{{", "{{ \"{{\" }}")

    parts = ["{{- range .Messages }}"]
    for i, role in enumerate(("system", "user", "assistant")):
        pre, post = fmt[role]
        parts.append(("{{ if" if i == 0 else "{{ else if") + f' eq .Role "{role}" }}}}{lit(pre)}{{{{ .Content }}}}{lit(post)}')
    parts.append("{{ end }}{{ end }}")
    parts.append(lit(fmt["generation"]))
    return "".join(parts)


def _quote(s):
    if '"""' in s:
        raise ConfigError('the chat template or system prompt contains """, which a Modelfile cannot quote')
    return '"""' + s + '"""'


def write_modelfile(out, gguf_name, template, stops, system_prompt):
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quote(template)}"]
    for s in stops:
        lines.append(f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}")
    if system_prompt:
        lines.append(f"SYSTEM {_quote(system_prompt)}")
    with open(os.path.join(out, "Modelfile"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
