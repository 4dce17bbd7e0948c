#!/usr/bin/env python3
"""Measure the peak GPU memory of short LoRA runs and compare it with `loractl plan`.

Each setting builds a random-weight model of a real architecture (memory does not depend
on the weights' values), trains ~20 LoRA steps the way loractl's trainer does (bf16
autocast, PEFT adapters, AdamW, gradient clipping, TRL's fused log-prob head when a tiny
forward and backward of it runs here, else the model's own loss over full logits), and
records torch's peak allocated and reserved memory and the peak as NVML sees it (through
pynvml, else libnvidia-ml.so.1 via ctypes, else `loractl gpu --json`; the table says
which). The estimate comes from `loractl plan RESOLVED.json --json` for a resolved.json
describing the same run. Every setting runs in its own process, with its own time limit,
so each starts from a clean CUDA context and one that hangs costs only its own limit.

    scripts/gpu_measure.py --loractl bin/loractl                 # the GPU table
    scripts/gpu_measure.py --loractl bin/loractl --check-params  # parameter counts vs transformers (CPU)
    scripts/gpu_measure.py --loractl bin/loractl --device cpu    # dry run on the CPU (tiny shapes)

scripts/gpu-check.sh wraps it. Each row is printed as its setting ends; with --out the
JSON results and the table (.txt beside it) are rewritten after every setting.
"""
import argparse
import ctypes
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


def fused_kernel(device):
    """TRL's chunked log-prob function (what SFTTrainer's loss runs), or None, and why
    not. Importing trl.kernels is not enough: the kernel's backward imports
    trl.trainer.utils, which needs pandas and datasets, so a trl installed without its
    dependencies imports fine and then crashes mid-step. A tiny forward and backward on
    the device decides; on any error the measurement falls back to full logits."""
    try:
        import torch
        from trl.kernels import ChunkedLogProbFunction
        if device == "cuda":
            g = torch.Generator().manual_seed(0)
            hidden = torch.randn(8, 16, generator=g).to("cuda", torch.bfloat16).requires_grad_()
            w = torch.randn(64, 16, generator=g).to("cuda", torch.bfloat16).requires_grad_()
            tgt = torch.randint(0, 64, (8,), generator=g).to("cuda")
            lp, _, _, _, _ = ChunkedLogProbFunction.apply(hidden, w, None, tgt, 1.0, 32768, None, 1.0,
                                                          ("log_probs", "entropy", "is_top1"))
            (-lp.sum()).backward()
            torch.cuda.synchronize()
            if hidden.grad is None or not torch.isfinite(hidden.grad.float()).all():
                raise RuntimeError("the kernel's backward gave no finite gradient")
            del hidden, w, tgt, lp
            torch.cuda.empty_cache()
        return ChunkedLogProbFunction, ""
    except Exception as e:  # ImportError, a missing dependency in backward, a CUDA error
        return None, f"{type(e).__name__}: {e}".splitlines()[0][:300]


def plan_estimate(loractl, resolved_path):
    out = subprocess.run([loractl, "plan", resolved_path, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loractl plan failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)["estimate"]


class _Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _CtypesNVML:
    """The one NVML call the fallback needs, from libnvidia-ml.so.1 through ctypes
    (present wherever the NVIDIA driver is, unlike the pynvml package)."""

    def __init__(self, index):
        self.lib = ctypes.CDLL("libnvidia-ml.so.1")
        init = getattr(self.lib, "nvmlInit_v2", None) or self.lib.nvmlInit
        rc = init()
        if rc != 0:
            raise RuntimeError(f"nvmlInit returned {rc}")
        self.h = ctypes.c_void_p()
        get = getattr(self.lib, "nvmlDeviceGetHandleByIndex_v2", None) or self.lib.nvmlDeviceGetHandleByIndex
        rc = get(ctypes.c_uint(index), ctypes.byref(self.h))
        if rc != 0:
            raise RuntimeError(f"nvmlDeviceGetHandleByIndex({index}) returned {rc}")
        self.used()

    def used(self):
        m = _Mem()
        rc = self.lib.nvmlDeviceGetMemoryInfo(self.h, ctypes.byref(m))
        if rc != 0:
            raise RuntimeError(f"nvmlDeviceGetMemoryInfo returned {rc}")
        return m.used


def _nvml_index():
    """The NVML index of cuda:0: CUDA_VISIBLE_DEVICES' first entry when it is a number."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


class NVMLPeak:
    """Polls GPU memory in a thread while a setting runs. In order of preference:
    pynvml (nvidia-ml-py) with the process's own memory; pynvml, or else NVML through
    ctypes, with the device's used memory less what was used before this process
    touched CUDA; else `loractl gpu --json` polled the same way. `method` says which
    was used, `error` why there is no reading at all."""

    def __init__(self, loractl=None, interval=0.02):
        self.peak_process = self.peak_device = 0
        self.ok, self.method, self.error = False, None, ""
        self.index, self.loractl = _nvml_index(), loractl
        errors = []
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._device_used = lambda: self.nv.nvmlDeviceGetMemoryInfo(self.h).used
            self.method = "pynvml per-process"
        except Exception as e:
            errors.append(f"pynvml: {e}")
        if self.method is None:
            try:
                c = _CtypesNVML(self.index)
                self._device_used = c.used
                self.method = "NVML via ctypes, device used less baseline"
            except Exception as e:
                errors.append(f"ctypes libnvidia-ml.so.1: {e}")
        if self.method is None and loractl:
            try:
                self._device_used = self._loractl_used
                self._device_used()
                self.method = "loractl gpu --json, device used less baseline"
                interval = max(interval, 0.25)  # a process per reading
            except Exception as e:
                errors.append(f"loractl gpu --json: {e}")
        if self.method is None:
            self.error = "; ".join(errors)
            return
        try:
            self.baseline = self._device_used()
        except Exception as e:
            self.error, self.method = f"{self.method}: {e}", None
            return
        self.ok = True
        self.interval, self.stop = interval, threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def _loractl_used(self):
        out = subprocess.run([self.loractl, "gpu", "--json"], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError((out.stderr or out.stdout).strip()[-200:] or f"exit {out.returncode}")
        for d in json.loads(out.stdout).get("devices") or []:
            if d.get("index") == self.index:
                return d["memory_used_bytes"]
        raise RuntimeError(f"no GPU {self.index} in its output")

    def read(self):
        """Takes one reading: the device's used memory less the baseline and, where
        pynvml reports it, the process's own memory."""
        self.peak_device = max(self.peak_device, self._device_used() - self.baseline)
        if self.method == "pynvml per-process":
            pid = os.getpid()
            try:
                for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.h):
                    # NVML_VALUE_NOT_AVAILABLE (2^64-1) means the driver does not say.
                    if p.pid == pid and p.usedGpuMemory and p.usedGpuMemory < (1 << 63):
                        self.peak_process = max(self.peak_process, p.usedGpuMemory)
            except Exception:
                pass

    def loop(self):
        while not self.stop.is_set():
            try:
                self.read()
            except Exception as e:  # keep what was read; say why it stopped
                self.error = f"reading stopped: {e}"
                return
            time.sleep(self.interval)

    def finish(self):
        """Stops polling and returns the peak: the process's own when it was reported,
        else the device's less the baseline (None without a reading)."""
        if not self.ok:
            return None
        self.stop.set()
        self.thread.join()
        try:
            self.read()
        except Exception:
            pass
        if self.peak_process:
            return self.peak_process
        if self.method == "pynvml per-process":
            self.method = "pynvml, device used less baseline (no per-process memory reported)"
        return self.peak_device or None


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
    nvml = NVMLPeak(loractl) if device == "cuda" else None
    fused, why = (None, "")
    if loss == "auto":
        fused, why = fused_kernel(device)
        if fused is None:
            print(f"TRL's fused loss is not usable ({why}); measuring full logits", file=sys.stderr, flush=True)
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
        if why:
            rec["fused_loss_unusable"] = why
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
            rec["nvml_method"] = nvml.method
            if nvml.error:
                rec["nvml_error"] = nvml.error
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
    device (no memory), for every shape: total, and trainable for q,v, all-linear and
    module-path suffixes (self_attn.q_proj, mlp.down_proj)."""
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
        # The last: PEFT-style module-path suffixes, which PEFT and plan must match alike.
        suffixed = ["self_attn." + s["targets"][0], "mlp.down_proj"]
        for targets in (s["targets"], ALL, suffixed):
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


HEAD = (f"{'setting':34s} {'estimate':>9s} {'NVML':>9s} {'ratio':>6s} | {'est alloc':>9s} {'torch alloc':>11s} "
        f"{'ratio':>6s} | {'reserved':>9s} {'est-ctx':>9s} {'ratio':>6s} | loss")


def row(r):
    """One line of the table for a result record."""
    if "error" in r:
        return f"{r['setting']:34s} error: {r['error']}"
    if r.get("torch_allocated_bytes") is None:
        cpu = r["cpu_allocated_bytes"]
        return (f"{r['setting']:34s} {r['estimate_peak_bytes'] / GIB:8.2f}G {'(CPU)':>9s} {'':6s} | "
                f"{r['estimate_allocated_bytes'] / GIB:8.2f}G {cpu / GIB:10.2f}G "
                f"{r['estimate_allocated_bytes'] / cpu:6.3f} | CPU allocator, loss {r['loss']}")
    nv = r.get("nvml_bytes")
    nv_s = f"{nv / GIB:8.2f}G" if nv else "       -"
    ratio = f"{r['estimate_peak_bytes'] / nv:6.3f}" if nv else "     -"
    # torch's reserved peak is the allocator's: compare it with the estimate less the
    # CUDA context, which lives outside the allocator.
    est_ctx = r["estimate_peak_bytes"] - r.get("estimate_breakdown", {}).get("cuda_context", 0)
    res = r["torch_reserved_bytes"]
    return (f"{r['setting']:34s} {r['estimate_peak_bytes'] / GIB:8.2f}G {nv_s} {ratio} | "
            f"{r['estimate_allocated_bytes'] / GIB:8.2f}G {r['torch_allocated_bytes'] / GIB:10.2f}G "
            f"{r['estimate_allocated_bytes'] / r['torch_allocated_bytes']:6.3f} | {res / GIB:8.2f}G "
            f"{est_ctx / GIB:8.2f}G {est_ctx / res:6.3f} | {r['loss']}")


def notes(results):
    """What the table's columns came from, once per distinct method or reason."""
    out = []
    methods = sorted({r.get("nvml_method") or "none" for r in results if "nvml_bytes" in r})
    if methods:
        out.append("NVML column: " + ", ".join(methods))
    for why in sorted({r["nvml_error"] for r in results if r.get("nvml_error")}):
        out.append("NVML: " + why)
    for why in sorted({r["fused_loss_unusable"] for r in results if r.get("fused_loss_unusable")}):
        out.append("TRL's fused loss not usable, full logits measured: " + why)
    return out


def table(results):
    lines = [HEAD, "-" * len(HEAD)] + [row(r) for r in results]
    return "\n".join(lines + notes(results))


def save(results, out):
    """Rewrites results.json and the table beside it (results.txt): called after every
    setting, so a run cut short keeps what it measured."""
    if not out:
        return
    for path, text in ((out, json.dumps(results, indent=2)), (os.path.splitext(out)[0] + ".txt", table(results) + "\n")):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def run_setting(s, a, timeout):
    """Runs one setting in its own process, with its own time limit."""
    cmd = [sys.executable, __file__, "--loractl", a.loractl, "--device", a.device, "--loss", a.loss, "--one", json.dumps(s)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        tail = err.strip().splitlines()[-1:]
        return {"setting": s["name"], "error": f"timed out after {timeout:.0f}s" + (f" ({tail[0]})" if tail else "")}
    for line in p.stderr.splitlines():
        if "fused loss is not usable" in line and line not in _said:
            _said.add(line)
            print("  " + line, flush=True)
    rec = next((json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")), None)
    if rec is None:
        # The exception's own line, not the traceback above it.
        tail = [l.strip() for l in (p.stderr or p.stdout).splitlines() if l.strip()][-1:]
        rec = {"setting": s["name"], "error": (tail[0][:300] if tail else "") or f"exit {p.returncode}"}
    return rec


_said = set()  # messages from the settings' processes already printed once


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loractl", default=os.environ.get("LORACTL", "bin/loractl"))
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--only", help="run only settings whose name contains this")
    ap.add_argument("--loss", choices=["auto", "full"],
                    help="auto: TRL's fused head when it runs here (a tiny forward and backward decides; the "
                         "trainer's loss), else full logits; full: the model's own loss over full logits. Default: "
                         "auto on CUDA, full on the CPU, where TRL's tile kernel runs as torch ops with temporaries "
                         "the GPU kernel does not have")
    ap.add_argument("--out", help="write the results as JSON here (and the table beside it, .txt), after every setting")
    ap.add_argument("--setting-timeout", type=float, default=150, help="seconds one setting may take (default 150)")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds all settings may take together: a setting gets at most what is left, and none "
                         "starts with less than 30s (or --setting-timeout, if smaller) left (default: no limit)")
    ap.add_argument("--check-params", action="store_true", help="compare parameter counts with transformers and exit")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one setting, JSON in, JSON out
    a = ap.parse_args()
    if not (os.path.isfile(a.loractl) and os.access(a.loractl, os.X_OK)):
        sys.exit(f"gpu_measure: no loractl binary at {a.loractl}: build it (CGO_ENABLED=1 go build -o bin/loractl "
                 f"./cmd/loractl) and carry it along, or pass --loractl")
    if a.check_params:
        sys.exit(1 if check_params(a.loractl) else 0)
    if a.one:
        print("RESULT " + json.dumps(measure_one(json.loads(a.one), a.loractl, a.device, a.loss)), flush=True)
        return
    a.loss = a.loss or ("auto" if a.device == "cuda" else "full")
    settings = GPU_SETTINGS if a.device == "cuda" else CPU_SETTINGS
    if a.only:
        settings = [s for s in settings if a.only in s["name"]]
    start = time.time()
    results = []
    print(HEAD, flush=True)
    print("-" * len(HEAD), flush=True)
    for s in settings:
        if s.get("quant"):
            try:
                import bitsandbytes  # noqa: F401
            except Exception as e:
                print(f"skip {s['name']}: bitsandbytes does not import ({type(e).__name__})", flush=True)
                continue
        timeout = a.setting_timeout
        if a.budget:
            left = a.budget - (time.time() - start)
            if left < min(a.setting_timeout, 30):
                print(f"skip {s['name']} and the rest: {max(left, 0):.0f}s of the {a.budget:.0f}s budget left", flush=True)
                break
            timeout = min(timeout, left)
        t0 = time.time()
        rec = run_setting(s, a, timeout)
        rec["wall_seconds"] = round(time.time() - t0, 1)
        results.append(rec)
        print(f"{row(rec)}   [{rec['wall_seconds']}s]", flush=True)
        save(results, a.out)
    print()
    print(table(results))
    save(results, a.out)
    sys.exit(1 if any("error" in r for r in results) or not results else 0)


if __name__ == "__main__":
    main()
