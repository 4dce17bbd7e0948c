#!/usr/bin/env bash
# GPU check: what loractl sees through NVML, then the peak-memory estimate against
# measured peaks of short LoRA runs on random-weight models of real shapes.
# Sized for one GPU in about 6 minutes, installs included; works without network.
#
#   scripts/gpu-check.sh                 # everything; the table goes to stdout
#   scripts/gpu-check.sh --only llama1b  # arguments go to scripts/gpu_measure.py
#
# Environment:
#   LORACTL  the loractl binary (default: bin/loractl, built with `go build` when Go is
#            here; on a machine without Go it must be built elsewhere and carried along)
#   PYTHON   an interpreter with torch, transformers and peft (default: the loractl venv
#            when it exists, else python3)
#   WHEELS   a folder of wheels installed offline first when the interpreter lacks them
#            (default .wheels): trl for the trainer's fused loss, bitsandbytes for 4-bit.
#            They go into their own folder (SITE, default $TMPDIR/loractl-gpu-check-site)
#            put on PYTHONPATH, so a system Python under PEP 668 is left alone.
#            Fetch them where there is network: scripts/gpu-check.sh --fetch-wheels
#   OUT      when set, the report (gpu-check.txt), results.json and results.txt are
#            written there, and rewritten after every measured setting
#   BUDGET   seconds the measurements may take together (default 300); each setting
#            also has its own limit (SETTING_TIMEOUT, default 150)
#
# Only a missing loractl binary or a Python without torch/transformers/peft stops the
# script early; every diagnostic step that fails is reported and skipped.
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
  # and what scripts/gpu-bench.sh installs (datasets, liger-kernel, ...): 3 MB more.
  WHEELS="$wheels" PYTHON="$py" scripts/gpu-bench.sh --fetch-wheels
  exit 0
fi

# The report goes straight to $OUT when set, so whatever ran is there even when the
# machine's wall limit ends the script.
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  report="$OUT/gpu-check.txt"
  : >"$report"
else
  report=$(mktemp)
  trap 'rm -f "$report"' EXIT
fi
say() { echo "$@" | tee -a "$report"; }
# diag runs a diagnostic step: its output goes to the report, and a failure is noted,
# never fatal.
diag() {
  local rc=0
  "$@" 2>&1 | tee -a "$report" || rc=$?
  if [ "$rc" -ne 0 ]; then say "gpu-check: '$*' failed (exit $rc); going on"; fi
  return 0
}

# Fail fast: without loractl nothing can be estimated.
bin=${LORACTL:-bin/loractl}
if [ ! -e "$bin" ]; then
  if command -v go >/dev/null; then
    say "gpu-check: building $bin"
    CGO_ENABLED=1 go build -o "$bin" ./cmd/loractl
  else
    say "gpu-check: no loractl binary at $bin and no Go to build one here. Build it where Go is" \
      "(CGO_ENABLED=1 go build -o bin/loractl ./cmd/loractl, for linux/amd64) and carry bin/loractl" \
      "along with the working tree (it is git-ignored, so name it in the carry list), or set LORACTL."
    exit 2
  fi
fi
if ! "$bin" --help >/dev/null 2>&1; then
  say "gpu-check: $bin does not run on this machine ($(uname -sm)): $("$bin" --help 2>&1 | head -n1 || true)." \
    "Build it for this platform with cgo (CGO_ENABLED=1 GOOS=linux GOARCH=amd64 go build -o bin/loractl ./cmd/loractl) and carry it."
  exit 2
fi
case "$bin" in /*) ;; *) bin="$here/$bin" ;; esac

if ! "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
  say "gpu-check: $py lacks torch, transformers or peft (set PYTHON, or run scripts/setup-python.sh)"
  exit 2
fi

# Wheels go into a folder of their own on PYTHONPATH: `pip install --target` needs no
# write access to the interpreter's site-packages and is not refused under PEP 668.
# Where pip itself is missing, a wheel is a zip file: unpacking it is the install.
site=${SITE:-${TMPDIR:-/tmp}/loractl-gpu-check-site}
for mod in trl bitsandbytes; do
  if "$py" -c "import $mod" 2>/dev/null; then continue; fi
  whl=$(ls "$wheels"/"$mod"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then continue; fi
  mkdir -p "$site"
  say "gpu-check: installing $mod from $whl into $site"
  if ! "$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$whl" >>"$report" 2>&1; then
    say "gpu-check: pip could not install $whl; unpacking it instead"
    "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$site" >>"$report" 2>&1 ||
      say "gpu-check: $mod did not install"
  fi
done
if [ -d "$site" ]; then export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"; fi

say "== loractl gpu"
diag "$bin" gpu
say
say "== python"
diag "$py" -c 'import sys, torch, transformers, peft; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__)'
if v=$("$py" -c 'import trl; print("trl", trl.__version__, "from", trl.__file__)' 2>&1); then say "$v"; else
  say "trl does not import ($(echo "$v" | tail -n1)): the model's own loss (full logits) is measured"
fi
if v=$("$py" -c 'import bitsandbytes as b; print("bitsandbytes", b.__version__)' 2>&1); then say "$v"; else
  say "bitsandbytes does not import ($(echo "$v" | tail -n1)): no 4-bit setting"
fi
say
say "== estimate vs measured peak (GiB; ratio = estimate / measured)"

status=0
args=(--loractl "$bin" --budget "${BUDGET:-300}" --setting-timeout "${SETTING_TIMEOUT:-150}")
if [ -n "${OUT:-}" ]; then args+=(--out "$OUT/results.json"); fi
# A safety net above the budget: the script itself stops starting settings in time.
PYTHONUNBUFFERED=1 timeout $((${BUDGET:-300} + 60)) "$py" scripts/gpu_measure.py "${args[@]}" "$@" 2>&1 | tee -a "$report" || status=$?

# CPU only, so after the GPU part: a wall limit hits this rather than the measurements.
say
say "== parameter counts against transformers"
diag timeout 120 "$py" scripts/gpu_measure.py --loractl "$bin" --check-params
exit "$status"
