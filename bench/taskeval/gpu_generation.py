#!/usr/bin/env python3
"""generation.py on a GPU: the checks that differ from the CPU (bf16, CUDA kernels with left
padding) and generation speed by batch size.

    python3 bench/taskeval/gpu_generation.py [--hidden 1024 --layers 16] [--new-tokens 64]

Builds tiny random-weight models with python/make_tiny_model.py (a ChatML one whose end-of-turn
token is not its eos, and a larger one for timing), then prints: the stop tokens; whether a
reply forced to <|im_end|> stops with "eos" in bf16 on the GPU; how many of the eval prompts'
greedy replies differ between batched (left-padded) and one-at-a-time generation; and
replies/s and new tokens/s at batch sizes 1, 8 and 32, base and adapter (PEFT LoRA).
Needs only torch, transformers, peft, numpy, safetensors and tokenizers.
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

import generation  # noqa: E402
import make_tiny_model  # noqa: E402

DATA = os.path.join(ROOT, "examples", "data")


def prompts():
    out = []
    with open(os.path.join(DATA, "eval.jsonl")) as f:
        for line in f:
            msgs = json.loads(line)["messages"]
            last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
            out.append(msgs[:last])
    return out


def resolved(model_dir):
    return {"model": {"name_or_path": model_dir, "revision": "", "trust_remote_code": False},
            "quantization": {"mode": "none"}, "train": {"precision": "auto"}}


def main():
    import torch
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device} {torch.cuda.get_device_name() if device == 'cuda' else ''} torch {torch.__version__}")
    tmp = tempfile.mkdtemp(prefix="gen-gpu-")
    data = ["--data", os.path.join(DATA, "train.jsonl"), "--data", os.path.join(DATA, "eval.jsonl")]
    chatml = os.path.join(tmp, "chatml")
    make_tiny_model.main([chatml, "--chatml", *data])
    convs = prompts()

    model, tok = generation.load_model(resolved(chatml))
    print("dtype", next(model.parameters()).dtype, "stop tokens", tok.convert_ids_to_tokens(generation.stop_token_ids(tok)))
    batched = generation.Generator(model, tok, max_new_tokens=24, batch_size=16).generate(convs)
    single = generation.Generator(model, tok, max_new_tokens=24, batch_size=1).generate(convs)
    differ = sum(a != b for a, b in zip(batched, single))
    print(f"batched vs one-at-a-time: {differ} of {len(convs)} replies differ (greedy, {model.dtype})")
    head = model.lm_head
    new = torch.nn.Linear(head.in_features, head.out_features, bias=True, device=head.weight.device,
                          dtype=head.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
        new.bias[tok.convert_tokens_to_ids("<|im_end|>")] = 1e4
    model.lm_head = new
    forced = generation.Generator(model, tok, max_new_tokens=8, batch_size=8).generate(convs[:8])
    print("forced <|im_end|> (not eos):", forced[0], "all eos:", all(r["stopped"] == "eos" for r in forced))
    streamed = list(generation.Generator(model, tok, max_new_tokens=8).stream(convs[0]))
    print("stream:", streamed)

    big = os.path.join(tmp, "big")
    heads = max(4, args.hidden // 64)
    make_tiny_model.main([big, "--hidden", str(args.hidden), "--layers", str(args.layers), "--heads", str(heads),
                          "--kv-heads", str(max(1, heads // 2)), "--intermediate", str(4 * args.hidden), *data])
    model, tok = generation.load_model(resolved(big))
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"timing model: {n_params / 1e6:.1f}M parameters, {model.dtype}, max_new_tokens {args.new_tokens}")
    for bs in (1, 8, 32):
        for adapter in (False, True):
            gen = generation.Generator(model, tok, max_new_tokens=args.new_tokens, batch_size=bs)
            gen.generate(convs[:bs])  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = gen.generate(convs, adapter=adapter)
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            toks = sum(r["tokens"] for r in out)
            print(f"batch {bs:2d} {'adapter' if adapter else 'base   '}: {len(out) / dt:7.1f} replies/s "
                  f"{toks / dt:8.0f} new tokens/s ({len(out)} replies, {toks} tokens, {dt:.2f} s)")
    if device == "cuda":
        print(f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
