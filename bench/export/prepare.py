"""Build the benchmark's 0.5B-shape model and run dir: a Llama model with Qwen2.5-0.5B's
shape (hidden 896, 24 layers, 14 heads / 2 KV heads, intermediate 4864, vocab 151936, tied
embeddings) with random bf16 weights, the tiny model's tokenizer, a random (non-zero) LoRA
adapter of rank 16 on every linear layer, and the resolved.json export_model.py reads.

    python prepare.py TINY_MODEL_DIR DATA_DIR OUT
"""

import json
import os
import shutil
import sys


def main():
    tiny, data, out = sys.argv[1:4]
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    base = os.path.join(out, "base")
    cfg = LlamaConfig(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=2048,
                      rms_norm_eps=1e-6, eos_token_id=6, pad_token_id=0, bos_token_id=None)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(base)
    for name in os.listdir(tiny):
        if name.startswith(("tokenizer", "chat_template", "generation_config")):
            shutil.copy2(os.path.join(tiny, name), os.path.join(base, name))
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                  init_lora_weights=False))
    run_dir = os.path.join(out, "run")
    peft_model.save_pretrained(os.path.join(run_dir, "adapter"))
    resolved = {
        "version": 1, "name": "bench",
        "model": {"name_or_path": base, "revision": "", "trust_remote_code": False},
        "data": {"train": os.path.join(data, "train.jsonl"), "eval": os.path.join(data, "eval.jsonl"), "eval_split": 0},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear", "bias": "none",
                 "use_rslora": False, "use_dora": False},
        "quantization": {"mode": "none", "quant_type": "nf4", "double_quant": True},
        "train": {"epochs": 1, "max_steps": 1, "learning_rate": 1e-4, "batch_size": 1, "eval_batch_size": 1,
                  "grad_accum": 1, "max_length": 128, "warmup": 0, "scheduler": "linear", "seed": 42,
                  "gradient_checkpointing": False, "packing": False, "assistant_only_loss": "auto",
                  "logging_steps": 1, "eval_steps": 0, "save_steps": 0, "save_total_limit": 0, "precision": "auto",
                  "weight_decay": 0.0, "max_grad_norm": 1.0, "optim": "adamw_torch", "loss_type": "nll"},
    }
    with open(os.path.join(run_dir, "resolved.json"), "w") as f:
        json.dump(resolved, f, indent=2)
    print(run_dir)


if __name__ == "__main__":
    main()
