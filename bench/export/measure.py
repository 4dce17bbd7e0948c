"""Measure one merge on the CPU: `loractl`'s export_model.py (--mode merge: reference
logits, in-place merge, save, reload, compare) or the naive merge a user writes by hand
(load base, PeftModel, merge_and_unload, save_pretrained; no check). Prints one JSON line:
post-import RSS, peak RSS (ru_maxrss), wall seconds, merged model bytes.

    python measure.py loractl|naive RUN_DIR OUT_DIR
"""

import json
import os
import resource
import sys
import time


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    mode, run_dir, out = sys.argv[1:4]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "python"))
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import peft  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from peft import PeftModel
    import export_model
    import trl.chat_template_utils  # noqa: F401 - export_model imports it (the training template)
    after_imports = rss()
    t0 = time.monotonic()
    os.makedirs(out, exist_ok=True)
    adapter = os.path.join(run_dir, "adapter")
    if mode == "loractl":
        code = export_model.main(["--resolved", os.path.join(run_dir, "resolved.json"), "--adapter", adapter,
                                  "--out", out, "--mode", "merge"])
        if code:
            raise SystemExit(f"export_model.py exit {code}")
    else:
        with open(os.path.join(run_dir, "resolved.json")) as f:
            base = json.load(f)["model"]["name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        model.save_pretrained(out)
    seconds = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f.endswith(".safetensors"))
    print(json.dumps({"mode": mode, "after_imports": after_imports, "peak": peak, "seconds": seconds, "model_bytes": size}),
          flush=True)


if __name__ == "__main__":
    main()
