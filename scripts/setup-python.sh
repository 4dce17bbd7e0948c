#!/usr/bin/env bash
# Builds (once) the trainer's virtualenv, cached outside the clone and keyed by the hash of
# python/requirements.txt, and prints its interpreter path on the last line of stdout.
#   scripts/setup-python.sh            # CPU/CUDA torch, the pinned stack
#   LORACTL_GPU_EXTRAS=1 scripts/...   # also bitsandbytes (QLoRA)
#   LORACTL_TRACKING_EXTRAS=1 ...      # also tensorboard, mlflow-skinny, wandb (train.report_to)
#   LORACTL_EXPORT_EXTRAS=1 scripts/... # also gguf (loractl export --format gguf)
#   LORACTL_DEV_EXTRAS=1 scripts/...    # also ruff, the Python linter
#   LORACTL_EXPORT_EXTRAS=llama ...     # and llama-cpp-python (compiles llama.cpp; GGUF tests run it)
# The cache root is $LORACTL_CACHE (default ~/.cache/loractl). loractl finds the venv by the
# same rule (see `loractl doctor`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
req="$here/python/requirements.txt"
py=${PYTHON:-python3}
cache=${LORACTL_CACHE:-$HOME/.cache/loractl}
hash=$(sha256sum "$req" | cut -c1-12)
venv="$cache/venv-$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.loractl-complete" ]; then
  echo "setup-python: building $venv (first time only)" >&2
  # The marker is written last: a half-built venv (interrupted install) is rebuilt.
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$req" >&2
  touch "$venv/.loractl-complete"
fi
if [ "${LORACTL_GPU_EXTRAS:-0}" = 1 ]; then
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/python/requirements-gpu.txt" >&2
fi
if [ "${LORACTL_TRACKING_EXTRAS:-0}" = 1 ]; then
  # Quiet and quick once installed: pip only checks the pins.
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/python/requirements-tracking.txt" >&2
fi
if [ "${LORACTL_DEV_EXTRAS:-0}" = 1 ]; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/python/requirements-dev.txt" >&2
fi
case "${LORACTL_EXPORT_EXTRAS:-0}" in
  1) "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/python/requirements-export.txt" >&2 ;;
  llama) "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/python/requirements-export-llamacpp.txt" >&2 ;;
esac
echo "$venv/bin/python"
