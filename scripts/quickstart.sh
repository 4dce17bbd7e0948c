#!/usr/bin/env bash
# The quickstart, from a fresh clone: installs the trainer's Python environment (once,
# cached outside the clone), builds loractl, builds a tiny random-weight model from the
# bundled sample chat data, and fine-tunes it on the CPU with configs/quickstart.yaml.
# A few minutes the first time (downloads), one or two after that.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

echo "== python environment (first time: a few minutes of downloads)" >&2
LORACTL_PYTHON=$(scripts/setup-python.sh | tail -n 1)
export LORACTL_PYTHON

echo "== build loractl" >&2
mkdir -p bin
go build -buildvcs=auto -o bin/loractl ./cmd/loractl # the commit goes into --version and manifests

echo "== tiny model from the sample data" >&2
"$LORACTL_PYTHON" python/make_tiny_model.py .quickstart/model --hidden 64 --intermediate 128 \
  --data examples/data/train.jsonl --data examples/data/eval.jsonl >&2

echo "== data check" >&2
bin/loractl data check examples/data/train.jsonl --eval examples/data/eval.jsonl \
  --system-prompt @examples/data/system_prompt.txt --tokenizer .quickstart/model --max-length 128

echo "== train" >&2
# --force: running the quickstart again trains again (the previous run is kept aside).
bin/loractl train configs/quickstart.yaml --runs-dir .quickstart/runs --force "$@"
bin/loractl runs --runs-dir .quickstart/runs
