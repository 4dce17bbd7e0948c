#!/usr/bin/env bash
# GPU throughput bench (docs/performance.md): the throughput cells of bench/train on a
# Llama-3.2-1B-shape random-weight model with the sample data, then the estimate's
# measured table again (scripts/gpu_measure.py). One command, about 6 minutes on one
# GPU with installs; every cell has its own limit and the results are rewritten after
# each one.
#
#   scripts/gpu-bench.sh --fetch-wheels   # where there is network: wheels into .wheels/
#   OUT=/some/dir scripts/gpu-bench.sh    # on the GPU machine
#   scripts/gpu-bench.sh --cpu            # dry run of the same steps on the CPU, tiny model
#
# Environment: LORACTL (default bin/loractl), PYTHON (default python3, or the loractl
# venv), WHEELS (default .wheels), OUT (default ./gpu-bench-out), CELLS_BUDGET (170 s: no
# cell starts after it), CELL_TIMEOUT (90 s), MEASURE_BUDGET (90 s).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
wheels=${WHEELS:-.wheels}
py=${PYTHON:-}
if [ -z "$py" ]; then
  py=$(ls -d "${LORACTL_CACHE:-$HOME/.cache/loractl}"/venv-*/bin/python 2>/dev/null | head -n1 || true)
  if [ -z "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then py=python3; fi
fi
# The packages a bare GPU machine lacks: pure-Python wheels plus xxhash (cp312).
pkgs=("trl==1.16.0" "datasets==5.2.0" "dill==0.4.1" "multiprocess==0.70.19" "xxhash==4.1.0" "liger-kernel==0.8.5")

if [ "${1:-}" = --fetch-wheels ]; then
  mkdir -p "$wheels"
  "$py" -m pip download --no-deps -d "$wheels" --python-version 3.12 --only-binary=:all: \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 "${pkgs[@]}"
  ls -l "$wheels"
  exit 0
fi
cpu=0
if [ "${1:-}" = --cpu ]; then cpu=1; fi
out=${OUT:-$here/gpu-bench-out}
mkdir -p "$out"
log="$out/gpu-bench.txt"
: >"$log"
say() { echo "$@" | tee -a "$log"; }

bin=${LORACTL:-bin/loractl}
if [ ! -x "$bin" ]; then
  if command -v go >/dev/null; then CGO_ENABLED=1 go build -o "$bin" ./cmd/loractl; else
    say "gpu-bench: no $bin; build it where Go is (CGO_ENABLED=1 go build -ldflags='-s -w' -o bin/loractl ./cmd/loractl) and carry it"
    exit 2
  fi
fi
case "$bin" in /*) ;; *) bin="$here/$bin" ;; esac

# Wheels into a folder of their own on PYTHONPATH (no write to the system site-packages).
site=${SITE:-${TMPDIR:-/tmp}/loractl-gpu-bench-site}
for mod in trl datasets dill multiprocess xxhash liger_kernel; do
  if "$py" -c "import $mod" 2>/dev/null; then continue; fi
  whl=$(ls "$wheels"/"${mod}"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then say "gpu-bench: $mod missing and no wheel for it in $wheels"; continue; fi
  mkdir -p "$site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$whl" >>"$log" 2>&1 ||
    "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$site"
done
if [ -d "$site" ]; then export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"; fi
export LORACTL_PYTHON="$py"
say "== versions"
"$py" -c 'import sys, torch, transformers, peft, trl, datasets
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "peft", peft.__version__, "trl", trl.__version__, "datasets", datasets.__version__)
try:
    import liger_kernel, importlib.metadata as m; print("liger-kernel", m.version("liger-kernel"))
except Exception as e: print("liger-kernel does not import:", e)' 2>&1 | tee -a "$log" || true
# datasets needs these from the machine (too large to carry beside bin/loractl).
for mod in pyarrow pandas psutil; do
  "$py" -c "import $mod" 2>/dev/null || say "gpu-bench: $mod does not import: datasets, and with it the trainer, will fail; the estimate table still runs"
done
"$bin" gpu 2>&1 | tee -a "$log" || true

model=${TMPDIR:-/tmp}/loractl-bench-llama1b
shape=(--hidden 2048 --layers 16 --heads 32 --kv-heads 8 --intermediate 8192 --max-position 4096)
cells_args=()
cells_budget=${CELLS_BUDGET:-170} cell_timeout=${CELL_TIMEOUT:-90}
if [ "$cpu" = 1 ]; then
  # The CPU run checks the steps, not the speed: shared cores get generous limits.
  shape=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128); cells_args=(--cpu --max-length 256)
  cells_budget=${CELLS_BUDGET:-900} cell_timeout=${CELL_TIMEOUT:-300}
fi
say "== model: Llama-3.2-1B shape, random weights, the sample data's tokenizer"
"$py" python/make_tiny_model.py "$model" "${shape[@]}" --data examples/data/train.jsonl --data examples/data/eval.jsonl >>"$log" 2>&1

say "== throughput cells (effective batch 32, sample data)"
status=0
PYTHONUNBUFFERED=1 timeout $((cells_budget + cell_timeout + 20)) "$py" bench/train/gpu_cells.py --loractl "$bin" --model "$model" \
  --out "$out" --budget "$cells_budget" --cell-timeout "$cell_timeout" "${cells_args[@]}" 2>&1 | tee -a "$log" || status=$?

say "== estimate vs measured peak (scripts/gpu_measure.py)"
margs=(--loractl "$bin" --budget "${MEASURE_BUDGET:-90}" --setting-timeout 50 --out "$out/results.json")
if [ "$cpu" = 1 ]; then margs+=(--device cpu); fi
PYTHONUNBUFFERED=1 timeout $((${MEASURE_BUDGET:-90} + 40)) "$py" scripts/gpu_measure.py "${margs[@]}" 2>&1 | tee -a "$log" || status=$?
exit "$status"
