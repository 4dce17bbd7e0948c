#!/usr/bin/env bash
# GPU check: what loractl sees through NVML, then the peak-memory estimate against
# measured peaks of short LoRA runs on random-weight models of real shapes.
# Sized for one GPU in under 6 minutes, installs included; works without network.
#
#   scripts/gpu-check.sh                 # everything; the table goes to stdout
#   scripts/gpu-check.sh --only llama1b  # arguments go to scripts/gpu_measure.py
#
# Environment:
#   LORACTL  the loractl binary (default: bin/loractl, built with `go build` when Go is here)
#   PYTHON   an interpreter with torch, transformers and peft (default: the loractl venv
#            when it exists, else python3)
#   WHEELS   a folder of wheels installed offline first when the interpreter lacks them
#            (default .wheels): trl for the trainer's fused loss, bitsandbytes for 4-bit.
#            Fetch them where there is network: scripts/gpu-check.sh --fetch-wheels
#   OUT      when set, results.json and the printed report are written there too
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
wheels=${WHEELS:-.wheels}

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local venv
  venv=$(ls -d "${LORACTL_CACHE:-$HOME/.cache/loractl}"/venv-*/bin/python 2>/dev/null | head -n1 || true)
  if [ -n "$venv" ] && "$venv" -c 'import torch' 2>/dev/null; then echo "$venv"; return; fi
  echo python3
}
py=$(pick_python)

if [ "${1:-}" = --fetch-wheels ]; then
  # trl alone (its imports beyond the kernel are not needed); bitsandbytes is large,
  # so only when asked: FETCH_BNB=1.
  mkdir -p "$wheels"
  "$py" -m pip download --no-deps -d "$wheels" "trl==1.16.0"
  if [ "${FETCH_BNB:-0}" = 1 ]; then "$py" -m pip download --no-deps -d "$wheels" "bitsandbytes==0.50.2"; fi
  ls -l "$wheels"
  exit 0
fi

bin=${LORACTL:-bin/loractl}
if [ ! -x "$bin" ]; then
  if command -v go >/dev/null; then
    echo "gpu-check: building $bin" >&2
    CGO_ENABLED=1 go build -o "$bin" ./cmd/loractl
  else
    echo "gpu-check: no loractl binary at $bin and no Go to build one (set LORACTL)" >&2
    exit 2
  fi
fi

for mod in trl bitsandbytes; do
  if ! "$py" -c "import $mod" 2>/dev/null && ls "$wheels"/"$mod"-*.whl >/dev/null 2>&1; then
    echo "gpu-check: installing $mod from $wheels" >&2
    "$py" -m pip install -q --no-index --no-deps --find-links "$wheels" "$mod" >&2 || echo "gpu-check: $mod did not install" >&2
  fi
done
if ! "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
  echo "gpu-check: $py lacks torch, transformers or peft (set PYTHON, or run scripts/setup-python.sh)" >&2
  exit 2
fi

report=$(mktemp)
trap 'rm -f "$report"' EXIT
{
  echo "== loractl gpu"
  "$bin" gpu
  echo
  echo "== python: $("$py" -c 'import sys, torch, transformers, peft; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
  "$py" -c 'import trl; print("trl", trl.__version__)' 2>/dev/null || echo "trl missing: the model's own loss (full logits) is measured"
  "$py" -c 'import bitsandbytes as b; print("bitsandbytes", b.__version__)' 2>/dev/null || echo "bitsandbytes missing: no 4-bit setting"
  echo
  echo "== parameter counts against transformers"
  "$py" scripts/gpu_measure.py --loractl "$bin" --check-params
  echo
  echo "== estimate vs measured peak (GiB; ratio = estimate / measured)"
} 2>&1 | tee "$report"

status=0
args=(--loractl "$bin")
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; args+=(--out "$OUT/results.json"); fi
timeout 300 "$py" scripts/gpu_measure.py "${args[@]}" "$@" 2>&1 | tee -a "$report" || status=$?
if [ -n "${OUT:-}" ]; then cp "$report" "$OUT/gpu-check.txt"; fi
exit "$status"
