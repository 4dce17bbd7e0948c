#!/usr/bin/env python3
"""Plain TRL SFTTrainer on a chat JSONL file: the floor bench/train/gpu_cells.py compares
loractl's cell (d) with (same model, LoRA all-linear r16, micro-batch, accumulation,
padding-free, Liger when on a GPU, bf16, no checkpointing). Writes tokens/s and peak
allocated memory as JSON to --out."""
import argparse
import json
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    with open(a.train, encoding="utf-8") as f:
        rows = [{"messages": json.loads(line)["messages"]} for line in f if line.strip()]
    tok = AutoTokenizer.from_pretrained(a.model)
    cuda = torch.cuda.is_available() and not a.cpu
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16 if cuda else torch.float32,
                                                 attn_implementation="sdpa")
    tokens = sum(len(tok.apply_chat_template(r["messages"], tokenize=True)) for r in rows)
    args = SFTConfig(output_dir="/tmp/plain-trl", per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum,
                     num_train_epochs=a.epochs, max_steps=a.max_steps, learning_rate=2e-4, bf16=cuda, use_cpu=not cuda,
                     padding_free=True, max_length=None, use_liger_kernel=cuda, gradient_checkpointing=False,
                     save_strategy="no", report_to="none", logging_steps=5, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.monotonic()
    out = trainer.train()
    runtime = out.metrics.get("train_runtime") or (time.monotonic() - t0)
    epochs = out.metrics.get("epoch") or a.epochs
    res = {"train_runtime": runtime, "tokens": tokens * epochs, "tokens_per_s": round(tokens * epochs / runtime),
           "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None,
           "batch_size": a.batch, "grad_accum": a.accum}
    with open(a.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
