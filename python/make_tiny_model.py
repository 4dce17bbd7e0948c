#!/usr/bin/env python3
"""Build a tiny random-weight causal LM and a word-level tokenizer with a chat template.

    python make_tiny_model.py OUT_DIR [--data FILE ...] [--arch llama] [--hidden 32]
        [--layers 2] [--heads 4] [--kv-heads 2] [--intermediate 64] [--seed 0]
        [--no-generation-markers] [--tool-template] [--chatml] [--tokenizer word|bpe] [--bpe-vocab 512]

The result loads with AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT_DIR) and
needs no network. It lets the trainer, the quickstart and the tests run real PEFT/TRL
training on a CPU in seconds.

The files are written directly (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, chat_template.jinja) with numpy and tokenizers only, because
importing torch and transformers alone takes longer than the whole build should.
The trainer's tests load every output through transformers, which checks the layout.

The vocabulary is every word (as split by the Whitespace pre-tokenizer) of the message
contents in the given chat JSONL files, sorted, after the special tokens; so the same
inputs always give byte-identical outputs. The tool-calling keys of a row (a message's
tool_calls, name, tool_call_id, reasoning_content, thinking; the row's tools), where there
are any, add the words of their JSON text.

--tokenizer bpe builds a byte-level BPE tokenizer instead (GPT-2 style: every byte has a
token, merges learnt from the same texts with the special tokens kept whole), the kind that
GGUF's "gpt2" vocabulary type and llama.cpp read; the word-level one has no GGUF type.

--tool-template writes a chat template that also renders what tool-calling templates do:
the row's `tools` (their function names) in a system block first, an assistant turn's
`tool_calls` (function name and arguments, an object as JSON) inside its generation block,
and its `reasoning_content`; tool results are `<|tool|>` turns like any other.

--chatml writes a ChatML-style template (`<|im_start|>role` ... `<|im_end|>`) while eos stays
`<|end|>`: a tokenizer whose end-of-turn token is not its eos, as in many real models
(Llama 3's <|eot_id|>, Qwen's <|im_end|>), so generation that stops only at eos is caught.
"""

import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, END = "<pad>", "<unk>", "<|end|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
SPECIALS = [PAD, UNK] + ROLE_TOKENS + [END]

# Words always in the vocabulary, so a model built without --data still tokenizes
# ordinary text into something other than <unk>.
BASE_WORDS = "a an and are can do for help how i is it me my of please the to what you your".split()

# The assistant turn, end token included, sits inside {% generation %} so TRL's
# assistant-only loss trains the model to emit <|end|> (and so to stop).
TEMPLATE_WITH_MARKERS = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|> {% generation %}{{ message['content'] }} <|end|>{% endgeneration %}\n"
    "{%- else -%}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|>\n"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

# The same rendering without markers: assistant-only loss is then impossible.
TEMPLATE_WITHOUT_MARKERS = TEMPLATE_WITH_MARKERS.replace("{% generation %}", "").replace(
    "{% endgeneration %}", ""
)

# Tool calling, rendered the way real templates do it (Qwen, Llama 3.1 ...): the function
# schemas in the system area, each call of an assistant turn inside its generation block.
TOOL_WORDS = ["call", "think", "tools", ":"]
# A generation block must not begin with whitespace: transformers maps the block's first
# character to a token, finds none, and leaves that turn and every later one out of the mask.
TEMPLATE_WITH_TOOLS = (
    "{%- if tools -%}"
    "<|system|> tools :{% for tool in tools %} {{ tool['function']['name'] }}{% endfor %} <|end|>\n"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|> {% generation %}"
    "{%- if message['reasoning_content'] is defined and message['reasoning_content'] -%}"
    "think : {{ message['reasoning_content'] }}{{ ' ' }}"
    "{%- endif -%}"
    "{{ message['content'] }}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{{ ' ' if message['content'] or not loop.first else '' }}call {{ call['function']['name'] }} "
    "{%- if call['function']['arguments'] is string %} {{ call['function']['arguments'] }}"
    "{%- else %} {{ call['function']['arguments'] | tojson }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif %} <|end|>{% endgeneration %}\n"
    "{%- else -%}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|>\n"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
# ChatML: the assistant turn ends with <|im_end|>, which is not the eos token (<|end|>).
CHATML_START, CHATML_END = "<|im_start|>", "<|im_end|>"
CHATML_WORDS = ["system", "user", "assistant", "tool"]
TEMPLATE_CHATML = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] }}<|im_end|>"
    "{%- endif -%}"
    "{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)
TOOL_KEYS = ("name", "tool_calls", "tool_call_id", "reasoning_content", "thinking")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help="directory to write (created if missing)")
    p.add_argument("--data", action="append", default=[], metavar="FILE",
                   help="chat JSONL file whose words form the vocabulary (repeatable)")
    # Only Llama: transformers maps other model types to their own tokenizer classes,
    # which would rebuild this word-level tokenizer wrongly.
    p.add_argument("--arch", choices=["llama"], default="llama")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=64)
    p.add_argument("--max-position", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-generation-markers", action="store_true",
                   help="chat template without {% generation %} markers")
    p.add_argument("--tool-template", action="store_true",
                   help="chat template that renders tools, tool_calls and reasoning_content (with markers)")
    p.add_argument("--chatml", action="store_true",
                   help="ChatML template whose end-of-turn token <|im_end|> is not the eos token (with markers)")
    p.add_argument("--tokenizer", choices=["word", "bpe"], default="word",
                   help="word-level (default) or byte-level BPE (for GGUF export tests)")
    p.add_argument("--bpe-vocab", type=int, default=512, help="BPE vocabulary size (bytes and specials included)")
    args = p.parse_args(argv)
    if args.chatml and (args.tool_template or args.no_generation_markers):
        p.error("--chatml is its own template: not with --tool-template or --no-generation-markers")
    if args.tool_template and args.no_generation_markers:
        p.error("--tool-template has generation markers: not with --no-generation-markers")
    for name in ("hidden", "layers", "heads", "kv_heads", "intermediate", "max_position"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.hidden % args.heads:
        p.error("--hidden must be a multiple of --heads")
    if args.heads % args.kv_heads:
        p.error("--heads must be a multiple of --kv-heads")
    return args


def read_texts(path):
    """Yield every message content of a chat JSONL file, and the JSON text of its tool-calling
    keys where there are any, naming file:line on bad input."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                for message in row["messages"]:
                    yield str(message["content"])
                    for key in TOOL_KEYS:
                        if key in message:
                            yield from json_texts(message[key])
                if "tools" in row:
                    yield from json_texts(row["tools"])
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}:{lineno}: not a chat row ({e.__class__.__name__}: {e})")


def json_texts(value):
    """A value as JSON and, so that each renders in known words when a template prints it
    alone, every object and list inside it; and every string as it is."""
    yield value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        yield from json_texts(item)


def build_tokenizer(paths, extra_words=(), extra_specials=()):
    """A WordLevel tokenizer over the sorted words of the given files."""
    splitter = pre_tokenizers.Whitespace()
    words = set(BASE_WORDS) | set(extra_words)
    for path in paths:
        for text in read_texts(path):
            words.update(piece for piece, _ in splitter.pre_tokenize_str(text))
    specials = SPECIALS + list(extra_specials)
    words -= set(specials)
    vocab = {tok: i for i, tok in enumerate(specials + sorted(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Special tokens are matched before pre-tokenization, so "<|end|>" stays one token.
    tok.add_special_tokens(specials)
    return tok, vocab


def build_bpe_tokenizer(paths, vocab_size, extra_words=(), extra_specials=()):
    """A byte-level BPE tokenizer trained on the texts of the given files. The texts go to
    the trainer in file order, so the same inputs always give the same merges."""
    texts = list(BASE_WORDS) + list(extra_words)
    for path in paths:
        texts.extend(read_texts(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS + list(extra_specials)
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size, 256 + len(specials)), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens(specials)
    return tok, tok.get_vocab()


def model_config(args, vocab):
    head_dim = args.hidden // args.heads
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": args.arch,
        "vocab_size": len(vocab),
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": args.max_position,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "dtype": "float32",
        "bos_token_id": None,
        "eos_token_id": vocab[END],
        "pad_token_id": vocab[PAD],
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
    }
    return cfg


def random_weights(args, vocab_size):
    """Random matrices and unit norms, named as transformers names them.

    Each matrix has std 1/sqrt(fan_in) rather than the 0.02 of large models: at hidden size
    32 that would leave logits within about +-0.6 of each other after the final RMSNorm,
    so a frozen output head could never move far from uniform and a LoRA run's loss would
    hardly fall. With unit-scale logits the adapters have something to work with."""
    rng = np.random.default_rng(args.seed)
    h, i, hd = args.hidden, args.intermediate, args.hidden // args.heads
    kv = args.kv_heads * hd

    def mat(rows, cols, std=None):
        std = cols ** -0.5 if std is None else std
        return (rng.standard_normal((rows, cols)) * std).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(vocab_size, h, std=1.0)}
    for n in range(args.layers):
        p = f"model.layers.{n}."
        w[p + "self_attn.q_proj.weight"] = mat(args.heads * hd, h)
        w[p + "self_attn.k_proj.weight"] = mat(kv, h)
        w[p + "self_attn.v_proj.weight"] = mat(kv, h)
        w[p + "self_attn.o_proj.weight"] = mat(h, args.heads * hd)
        w[p + "mlp.gate_proj.weight"] = mat(i, h)
        w[p + "mlp.up_proj.weight"] = mat(i, h)
        w[p + "mlp.down_proj.weight"] = mat(h, i)
        w[p + "input_layernorm.weight"] = np.ones(h, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(h, np.float32)
    w["model.norm.weight"] = np.ones(h, np.float32)
    w["lm_head.weight"] = mat(vocab_size, h)
    return w


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def build(args):
    os.makedirs(args.out_dir, exist_ok=True)
    extra = TOOL_WORDS if args.tool_template else CHATML_WORDS if args.chatml else ()
    extra_specials = [CHATML_START, CHATML_END] if args.chatml else ()
    tok, vocab = (build_bpe_tokenizer(args.data, args.bpe_vocab, extra, extra_specials) if args.tokenizer == "bpe"
                  else build_tokenizer(args.data, extra, extra_specials))
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    write_json(os.path.join(args.out_dir, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": PAD,
        "unk_token": UNK,
        "eos_token": END,
        "model_max_length": args.max_position,
    })
    template = (TEMPLATE_CHATML if args.chatml else TEMPLATE_WITH_TOOLS if args.tool_template else
                TEMPLATE_WITHOUT_MARKERS if args.no_generation_markers else TEMPLATE_WITH_MARKERS)
    with open(os.path.join(args.out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(template)
    write_json(os.path.join(args.out_dir, "config.json"), model_config(args, vocab))
    write_json(os.path.join(args.out_dir, "generation_config.json"), {
        "eos_token_id": vocab[END], "pad_token_id": vocab[PAD],
    })
    weights = os.path.join(args.out_dir, "model.safetensors")
    save_file(random_weights(args, len(vocab)), weights, metadata={"format": "pt"})
    # safetensors creates the file 0600; a trainer in a container running as another
    # uid must be able to read the model like the rest of its files.
    os.chmod(weights, 0o644)
    return len(vocab)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    n = build(args)
    print(f"wrote {args.arch} model (vocab {n}, hidden {args.hidden}, layers {args.layers}) to {args.out_dir}")


if __name__ == "__main__":
    main()
