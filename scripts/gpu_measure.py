#!/usr/bin/env python3
"""Measure the peak GPU memory of short LoRA runs and compare it with `loractl plan`.

Each setting builds a random-weight model of a real architecture (memory does not depend
on the weights' values), trains ~20 LoRA steps the way loractl's trainer does (bf16
autocast, PEFT adapters, AdamW, gradient clipping, TRL's fused log-prob head when TRL is
importable, else the model's own loss over full logits), and records torch's peak
allocated and reserved memory and the process's peak as NVML sees it. The estimate comes
from `loractl plan RESOLVED.json --json` for a resolved.json describing the same run.
Every setting runs in its own process, so each starts from a clean CUDA context.

    scripts/gpu_measure.py --loractl bin/loractl                 # the GPU table
    scripts/gpu_measure.py --loractl bin/loractl --check-params  # parameter counts vs transformers (CPU)
    scripts/gpu_measure.py --loractl bin/loractl --device cpu    # dry run on the CPU (tiny shapes)

scripts/gpu-check.sh wraps it. Results go to stdout as a table and, with --out, as JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# Real shapes, copied from the models' config.json files (as in plan's built-in table).
SHAPES = {
    "Qwen2.5-0.5B": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0),
    "Llama-3.2-1B": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                         tie_word_embeddings=True, max_position_embeddings=131072, rope_theta=500000.0),
    "Llama-3.1-8B": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                         tie_word_embeddings=False, max_position_embeddings=131072, rope_theta=500000.0),
    "Qwen3-0.6B": dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                       tie_word_embeddings=True, max_position_embeddings=40960),
    "Mistral-7B-v0.3": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                            num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=32768,
                            tie_word_embeddings=False),
    "gemma-2-2b": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=256000,
                       tie_word_embeddings=True),
    "gemma-3-1b": dict(model_type="gemma3_text", hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
                       num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
                       tie_word_embeddings=True),
    "Phi-3-mini": dict(model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                       tie_word_embeddings=False),
}

ALL = "all-linear"
# Sized for one 80 GB GPU and about 3 minutes together; 4-bit only where bitsandbytes is.
GPU_SETTINGS = [
    dict(name="qwen0.5b b4x1024 all r16", shape="Qwen2.5-0.5B", batch=4, length=1024, gc=False, targets=ALL),
    dict(name="qwen0.5b b4x1024 all r16 GC", shape="Qwen2.5-0.5B", batch=4, length=1024, gc=True, targets=ALL),
    dict(name="llama1b b2x2048 qv r16 GC", shape="Llama-3.2-1B", batch=2, length=2048, gc=True, targets=["q_proj", "v_proj"]),
    dict(name="llama1b b1x4096 qv r16", shape="Llama-3.2-1B", batch=1, length=4096, gc=False, targets=["q_proj", "v_proj"]),
    dict(name="llama1b b8x512 all r32", shape="Llama-3.2-1B", batch=8, length=512, gc=False, targets=ALL, r=32),
    dict(name="qwen0.5b 4bit b4x1024 all GC", shape="Qwen2.5-0.5B", batch=4, length=1024, gc=True, targets=ALL, quant="4bit"),
]
# The CPU dry run: the same code paths on two-layer models at a small size. Dropout is
# off: on the CPU, torch's dropout keeps a float noise tensor where CUDA's fused kernel
# keeps a one-byte mask, and the estimate follows CUDA.
CPU_SETTINGS = [
    dict(name="qwen0.5b-2L b2x128 all", shape="Qwen2.5-0.5B", batch=2, length=128, gc=False, targets=ALL, layers=2, dropout=0.0),
    dict(name="llama1b-2L b1x256 qv GC", shape="Llama-3.2-1B", batch=1, length=256, gc=True, targets=["q_proj", "v_proj"],
         layers=2, dropout=0.0),
]
GIB = float(1 << 30)


def resolved_json(s, model_dir, loss_type):
    """A resolved.json (docs/trainer-contract.md) for setting s, without data or eval."""
    return {
        "version": 1, "name": "gpu-measure",
        "model": {"name_or_path": model_dir, "revision": "", "trust_remote_code": False},
        "data": {"train": "", "eval": "", "eval_split": 0},
        "lora": {"r": s.get("r", 16), "alpha": 2 * s.get("r", 16), "dropout": s.get("dropout", 0.05),
                 "target_modules": s["targets"], "bias": "none", "use_rslora": False, "use_dora": False},
        "quantization": {"mode": s.get("quant", "none"), "quant_type": "nf4", "double_quant": True},
        "train": {"epochs": 1, "max_steps": s.get("steps", 20), "learning_rate": 1e-4, "batch_size": s["batch"],
                  "eval_batch_size": s["batch"], "grad_accum": 1, "max_length": s["length"], "warmup": 0,
                  "scheduler": "constant", "seed": 0, "gradient_checkpointing": s["gc"], "packing": False,
                  "assistant_only_loss": False, "logging_steps": 1, "eval_steps": 0, "save_steps": 0,
                  "save_total_limit": 0, "precision": s.get("precision", "bf16"), "weight_decay": 0.0,
                  "max_grad_norm": 1.0, "optim": "adamw_torch", "loss_type": loss_type},
    }


def make_config(s):
    from transformers import AutoConfig
    kw = dict(SHAPES[s["shape"]])
    if s.get("layers"):
        kw["num_hidden_layers"] = s["layers"]
    model_type = kw.pop("model_type")
    return AutoConfig.for_model(model_type, **kw)


def fused_kernel():
    """TRL's chunked log-prob function (what SFTTrainer's loss runs), or None."""
    try:
        from trl.kernels import ChunkedLogProbFunction
        return ChunkedLogProbFunction
    except Exception:
        return None


def plan_estimate(loractl, resolved_path):
    out = subprocess.run([loractl, "plan", resolved_path, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loractl plan failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)["estimate"]


class NVMLPeak:
    """Polls the process's GPU memory through NVML (nvidia-ml-py) in a thread. Where the
    driver does not report per-process memory (some containers), it falls back to the
    device's used memory less what was used before this process touched CUDA."""

    def __init__(self, index=0, interval=0.02):
        self.peak, self.per_process, self.ok = 0, True, False
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.baseline = pynvml.nvmlDeviceGetMemoryInfo(self.h).used
            self.ok = True
        except Exception as e:  # no pynvml or no driver: NVML column stays empty
            self.error = str(e)
            return
        self.interval, self.stop = interval, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def read(self):
        pid = os.getpid()
        try:
            for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.h):
                if p.pid == pid and p.usedGpuMemory:
                    return p.usedGpuMemory
        except Exception:
            pass
        self.per_process = False
        return self.nv.nvmlDeviceGetMemoryInfo(self.h).used - self.baseline

    def loop(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.read())
            time.sleep(self.interval)

    def finish(self):
        if self.ok:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, self.read())
        return self.peak if self.ok else None


def build_model(s, cfg, device, tmp):
    import torch
    from transformers import AutoModelForCausalLM
    dtype = torch.float32 if s.get("precision") == "fp32" else torch.bfloat16
    if s.get("quant") == "4bit":
        from transformers import BitsAndBytesConfig
        # bitsandbytes quantizes while loading: save the random model, load it back.
        AutoModelForCausalLM.from_config(cfg, dtype=dtype).save_pretrained(os.path.join(tmp, "weights"))
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(os.path.join(tmp, "weights"), quantization_config=q, dtype=dtype,
                                                    device_map={"": 0}, attn_implementation="sdpa")
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")


def prepare(s, model, device, fused):
    """Wraps model with LoRA as the trainer does and returns (step, trainable params,
    optimizer): step() runs one training step the way the trainer takes it."""
    import torch
    from peft import LoraConfig, get_peft_model
    r = s.get("r", 16)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=s.get("dropout", 0.05),
                                             target_modules=s["targets"], task_type="CAUSAL_LM"))
    if s.get("quant"):
        for p in model.parameters():  # TRL keeps a quantized model's adapter in bf16
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    if s["gc"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    b, n = s["batch"], s["length"]
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (b, n), generator=g).to(device)
    mask = torch.ones(b, n, dtype=torch.long, device=device)
    labels = ids.clone()
    if b > 1:  # real batches are padded: the mask makes SDPA take its masked path
        mask[0, -16:] = 0
        labels[0, -16:] = -100
    base = model.get_base_model()

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=s.get("precision") != "fp32"):
            if fused is not None:
                # TRL's fused head, as SFTTrainer runs it: the backbone, then the
                # log-probs of the valid next tokens in tiles, never the full logits.
                hidden = base.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, :-1]
                tgt = labels[:, 1:]
                valid = tgt != -100
                w = base.get_output_embeddings().weight
                lp, _, _, _, _ = fused.apply(hidden[valid], w, None, tgt[valid], 1.0, 32768, None, 1.0,
                                             ("log_probs", "entropy", "is_top1"))
                loss = -lp.sum() / valid.sum()
            else:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model, opt


def resident_bytes(model, opt):
    """Bytes held between steps: the model's tensors and the optimizer's states."""
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [t for st in opt.state.values() for t in st.values() if hasattr(t, "untyped_storage")]
    for t in tensors:
        st = t.untyped_storage()
        if st.data_ptr() not in seen and t.device.type != "meta":
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


def cpu_allocated_peak(step):
    """Peak bytes the CPU allocator held during step(), from the profiler's memory events."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    deltas = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    cur = peak = 0
    for _, d in deltas:
        cur += d
        peak = max(peak, cur)
    return peak


def measure_one(s, loractl, device, loss):
    """Runs one setting in this process and returns its result record."""
    import torch
    nvml = NVMLPeak() if device == "cuda" else None
    fused = fused_kernel() if loss == "auto" else None
    loss_type = "nll" if fused is not None else "full_logits"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(s)
        model_dir = os.path.join(tmp, "model")
        cfg.save_pretrained(model_dir)  # config.json only: what plan reads
        rpath = os.path.join(tmp, "resolved.json")
        with open(rpath, "w") as f:
            json.dump(resolved_json(s, model_dir, loss_type), f)
        est = plan_estimate(loractl, rpath)
        rec = {"setting": s["name"], "shape": s["shape"], "loss": loss_type,
               "estimate_peak_bytes": est["peak_bytes"], "estimate_allocated_bytes": est["allocated_bytes"],
               "estimate_breakdown": est["breakdown"], "trainable_params": est["trainable_params"]}
        model = build_model(s, cfg, device, tmp)
        step, model, opt = prepare(s, model, device, fused)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(s.get("steps", 20)):
                t0 = time.time()
                step()
                torch.cuda.synchronize()
                times.append(time.time() - t0)
            rec["step_seconds"] = round(sum(times[2:]) / max(len(times) - 2, 1), 4)
            rec["torch_allocated_bytes"] = torch.cuda.max_memory_allocated()
            rec["torch_reserved_bytes"] = torch.cuda.max_memory_reserved()
            rec["nvml_bytes"] = nvml.finish()
            rec["nvml_per_process"] = nvml.per_process if nvml.ok else None
            rec["gpu"] = torch.cuda.get_device_name(0)
        else:
            # The CPU allocator has no peak counter: the first step creates the
            # optimizer states, the profiler then follows the second one.
            step()
            rec["cpu_allocated_bytes"] = resident_bytes(model, opt) + cpu_allocated_peak(step)
            rec["torch_allocated_bytes"] = None
    import peft
    import transformers
    rec["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    return rec


def check_params(loractl):
    """Plan's parameter counts against transformers' own modules, built on the meta
    device (no memory), for every shape: total, and trainable for q,v and all-linear."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    bad = 0
    for name in SHAPES:
        s = dict(name=name, shape=name, batch=1, length=128, gc=False, targets=["q_proj", "v_proj"])
        if SHAPES[name]["model_type"] == "phi3":
            s["targets"] = ["qkv_proj"]
        cfg = make_config(s)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        total_hf = sum(p.numel() for p in model.parameters())
        for targets in (s["targets"], ALL):
            s["targets"] = targets
            with tempfile.TemporaryDirectory() as tmp:
                cfg.save_pretrained(tmp)
                rpath = os.path.join(tmp, "resolved.json")
                with open(rpath, "w") as f:
                    json.dump(resolved_json(s, tmp, "nll"), f)
                est = plan_estimate(loractl, rpath)
            with torch.device("meta"):
                m = AutoModelForCausalLM.from_config(cfg)
            pm = get_peft_model(m, LoraConfig(r=16, target_modules=targets))
            trainable_hf = sum(p.numel() for p in pm.parameters() if p.requires_grad)
            ok = est["total_params"] == total_hf and est["trainable_params"] == trainable_hf
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} {name:16s} {str(targets):28s} total {est['total_params']:>14,} "
                  f"(transformers {total_hf:,})  trainable {est['trainable_params']:>12,} (peft {trainable_hf:,})")
    return bad


def table(results):
    head = f"{'setting':34s} {'estimate':>9s} {'NVML':>9s} {'ratio':>6s} | {'est alloc':>9s} {'torch alloc':>11s} {'ratio':>6s} | {'reserved':>9s}"
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['setting']:34s} error: {r['error']}")
            continue
        if r.get("torch_allocated_bytes") is None:
            cpu = r["cpu_allocated_bytes"]
            lines.append(f"{r['setting']:34s} {r['estimate_peak_bytes'] / GIB:8.2f}G {'(CPU)':>9s} {'':6s} | "
                         f"{r['estimate_allocated_bytes'] / GIB:8.2f}G {cpu / GIB:10.2f}G "
                         f"{r['estimate_allocated_bytes'] / cpu:6.3f} | CPU allocator, loss {r['loss']}")
            continue
        nv = r.get("nvml_bytes")
        nv_s = f"{nv / GIB:8.2f}G" if nv else "       -"
        ratio = f"{r['estimate_peak_bytes'] / nv:6.3f}" if nv else "     -"
        lines.append(f"{r['setting']:34s} {r['estimate_peak_bytes'] / GIB:8.2f}G {nv_s} {ratio} | "
                     f"{r['estimate_allocated_bytes'] / GIB:8.2f}G {r['torch_allocated_bytes'] / GIB:10.2f}G "
                     f"{r['estimate_allocated_bytes'] / r['torch_allocated_bytes']:6.3f} | {r['torch_reserved_bytes'] / GIB:8.2f}G")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loractl", default=os.environ.get("LORACTL", "bin/loractl"))
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--only", help="run only settings whose name contains this")
    ap.add_argument("--loss", choices=["auto", "full"],
                    help="auto: TRL's fused head when TRL is importable (the trainer's loss), else full logits; "
                         "full: the model's own loss over full logits. Default: auto on CUDA, full on the CPU, where "
                         "TRL's tile kernel runs as torch ops with temporaries the GPU kernel does not have")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--check-params", action="store_true", help="compare parameter counts with transformers and exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one setting, JSON in, JSON out
    a = ap.parse_args()
    if a.check_params:
        sys.exit(1 if check_params(a.loractl) else 0)
    if a.one:
        print("RESULT " + json.dumps(measure_one(json.loads(a.one), a.loractl, a.device, a.loss)), flush=True)
        return
    a.loss = a.loss or ("auto" if a.device == "cuda" else "full")
    settings = GPU_SETTINGS if a.device == "cuda" else CPU_SETTINGS
    if a.only:
        settings = [s for s in settings if a.only in s["name"]]
    results = []
    for s in settings:
        if s.get("quant"):
            try:
                import bitsandbytes  # noqa: F401
            except Exception:
                print(f"skip {s['name']}: bitsandbytes is not installed", flush=True)
                continue
        t0 = time.time()
        p = subprocess.run([sys.executable, __file__, "--loractl", a.loractl, "--device", a.device, "--loss", a.loss,
                            "--one", json.dumps(s)],
                           capture_output=True, text=True)
        rec = next((json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")), None)
        if rec is None:
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            rec = {"setting": s["name"], "error": " | ".join(tail) or f"exit {p.returncode}"}
        rec["wall_seconds"] = round(time.time() - t0, 1)
        results.append(rec)
        print(f"done {s['name']} in {rec['wall_seconds']}s", flush=True)
    print()
    print(table(results))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)
    sys.exit(1 if any("error" in r for r in results) else 0)


if __name__ == "__main__":
    main()
