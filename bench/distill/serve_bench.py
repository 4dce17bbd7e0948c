"""Benchmark of the local teacher: python/serve_openai.py generating with a tiny model,
batched (--batch-size 64) against one request at a time (--batch-size 1) in the same run,
on the GPU when there is one. Also checks, with a model scripted to answer one word and
then its end-of-turn token, that answers end with finish_reason "stop" and carry no
special token.

    python bench/distill/serve_bench.py [--requests 2000] [--concurrency 128] [--max-tokens 64]

Prints requests/s and generated tokens/s for both batch sizes and their ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")
DATA = os.path.join(os.path.dirname(PY), "examples", "data", "train.jsonl")

SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, sys.argv[2])
import generation
d, word = sys.argv[1], sys.argv[3]
m = AutoModelForCausalLM.from_pretrained(d)
t = AutoTokenizer.from_pretrained(d)
last = generation.prompt_ids(t, [{"role": "user", "content": "x"}])[-1]
a, end = t.convert_tokens_to_ids(word), t.convert_tokens_to_ids("<|im_end|>")
with torch.no_grad():
    for layer in m.model.layers:
        layer.self_attn.o_proj.weight.zero_(); layer.mlp.down_proj.weight.zero_()
    e, w = m.model.embed_tokens.weight, m.lm_head.weight
    e.zero_(); e[:, 2] = 1.0; e[last] = 0; e[last, 0] = 1.0; e[a] = 0; e[a, 1] = 1.0
    w.zero_(); w[a, 0] = 5.0; w[end, 1] = 5.0
m.save_pretrained(d)
"""


def serve(model, batch, device):
    cmd = [sys.executable, os.path.join(PY, "serve_openai.py"), model, "--batch-size", str(batch)]
    if device:
        cmd += ["--device", device]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 2:
        p.kill()
        raise SystemExit("serve_openai did not start")
    return p, line[1]


def ask(url, text, max_tokens):
    body = json.dumps({"model": "m", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(url + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def load(url, n, conc, max_tokens):
    start = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex:
        outs = list(ex.map(lambda i: ask(url, f"question {i}: where is my order {i * 13}?", max_tokens), range(n)))
    wall = time.perf_counter() - start
    toks = sum(o["usage"]["completion_tokens"] for o in outs)
    return n / wall, toks / wall, outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--device", default="")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="serve-bench-")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for name in ("scripted", "random"):
        subprocess.run([sys.executable, os.path.join(PY, "make_tiny_model.py"), os.path.join(tmp, name),
                        "--data", DATA, "--chatml"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run([sys.executable, "-c", SCRIPT, os.path.join(tmp, "scripted"), PY, "Yes"], check=True, env=env)

    p, url = serve(os.path.join(tmp, "scripted"), 16, a.device)
    try:
        _, _, outs = load(url, 64, 32, 16)
        bad = [o for o in outs if o["choices"][0]["message"]["content"] != "Yes" or o["choices"][0]["finish_reason"] != "stop"]
        print(f"scripted model: {64 - len(bad)}/64 answers 'Yes' with finish_reason stop")
        if bad:
            print("unexpected:", bad[0])
    finally:
        p.terminate()
        p.wait()

    rates = {}
    for batch in (1, 64):
        p, url = serve(os.path.join(tmp, "random"), batch, a.device)
        try:
            load(url, min(256, a.requests), a.concurrency, a.max_tokens)  # warm-up
            rps, tps, outs = load(url, a.requests, a.concurrency, a.max_tokens)
        finally:
            p.terminate()
            p.wait()
        finish = {o["choices"][0]["finish_reason"] for o in outs}
        rates[batch] = rps
        print(f"batch {batch:3d}: {rps:8.1f} requests/s, {tps:10.0f} generated tokens/s "
              f"({a.requests} requests, {a.max_tokens} max tokens, concurrency {a.concurrency}, finish {sorted(finish)})")
    print(f"batching gain: {rates[64] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
