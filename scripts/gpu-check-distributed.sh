#!/usr/bin/env bash
# GPU check of distributed runs (docs/distributed.md), sized for one GPU in about three
# minutes: `nproc_per_node: auto` resolves to the GPUs there are and trains (NCCL); Ctrl-C
# stops every rank after one checkpoint and `train --resume` finishes the run. With two
# or more GPUs it also trains DDP and FSDP over two of them.
#
#   scripts/gpu-check-distributed.sh
#
# Environment: LORACTL (the binary, default bin/loractl), PYTHON (an interpreter with
# torch, transformers, peft, trl and datasets; default python3), WHEELS (a folder of
# wheels installed offline into a private site dir first, e.g. trl and datasets), OUT
# (copies of the manifests and events go there).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
loractl=${LORACTL:-$here/bin/loractl}
py=${PYTHON:-$(command -v python3)}
out=${OUT:-}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false LORACTL_PYTHON=$py
if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$py" -m pip install --no-deps --no-index --target "${TMPDIR:-/tmp}/loractl-dist-site" -q "$WHEELS"/*.whl
  export PYTHONPATH=${TMPDIR:-/tmp}/loractl-dist-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$py" -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, 'GPUs', torch.cuda.device_count())" || exit 1
gpus=$("$py" -c "import torch; print(torch.cuda.device_count())")
work=$(mktemp -d)
cd "$work" || exit 1
"$py" "$here/python/make_tiny_model.py" tiny --data "$here/examples/data/train.jsonl" --data "$here/examples/data/eval.jsonl" >/dev/null
config() { # name max_steps distributed-section
  printf 'name: %s\nmodel: ./tiny\ndata: {train: %s, eval: %s}\ntrain: {max_steps: %s, save_steps: 10, batch_size: 4, max_length: 128}\ndistributed: %s\n' \
    "$1" "$here/examples/data/train.jsonl" "$here/examples/data/eval.jsonl" "$2" "$3" >"$1.yaml"
}
keep() { [ -n "$out" ] && cp "runs/$1"-*/manifest.json "$out/$1.manifest.json" && cp "runs/$1"-*/events.jsonl "$out/$1.events.jsonl"; }
fail=0
check() { if "$@"; then echo "ok: $*"; else echo "FAILED: $*"; fail=1; fi; }

echo "== nproc_per_node: auto on $gpus GPU(s)"
config auto 30 "{nproc_per_node: auto}"
"$loractl" train auto.yaml 2>&1 | tail -8
check grep -q "\"world_size\": $gpus" runs/auto-*/manifest.json
check grep -q '"backend": "nccl"' runs/auto-*/manifest.json
check grep -q '"state": "completed"' runs/auto-*/manifest.json
keep auto

echo "== Ctrl-C, then --resume"
config stop 400 "{nproc_per_node: auto}"
"$loractl" train stop.yaml >stop.out 2>&1 &
pid=$!
for _ in $(seq 1 180); do sleep 1; grep -q '"type": "checkpoint"' runs/stop-*/events.jsonl 2>/dev/null && break; done
kill -INT "$pid"; wait "$pid"; echo "loractl exited $? (130 expected)"
check grep -q '"state": "interrupted"' runs/stop-*/manifest.json
"$loractl" train --resume "$(basename runs/stop-*)" 2>&1 | tail -4
check grep -q '"state": "completed"' runs/stop-*/manifest.json
keep stop

if [ "$gpus" -ge 2 ]; then
  for strategy in ddp fsdp; do
    echo "== $strategy over 2 GPUs"
    config "$strategy" 30 "{nproc_per_node: 2, strategy: $strategy}"
    "$loractl" train "$strategy.yaml" 2>&1 | tail -6
    check grep -q '"world_size": 2' runs/"$strategy"-*/manifest.json
    check grep -q '"state": "completed"' runs/"$strategy"-*/manifest.json
    keep "$strategy"
  done
fi
exit $fail
