#!/bin/sh
# A stand-in for the trainer's interpreter running eval_task.py: records its arguments
# and writes what the script writes, as FAKE_MODE says (better, worse, invalid, fail).
printf '%s\n' "$@" > "$FAKE_ARGS"
printf "%s" "$RUN_ENV_VALUE" > "$FAKE_ARGS.env"
out=""
while [ $# -gt 0 ]; do
  case "$1" in --out) out="$2"; shift ;; esac
  shift
done
case "$FAKE_MODE" in
  invalid) echo "eval_task: --metric 1: regex '(?<x' does not compile" >&2; exit 2 ;;
  fail) echo "Traceback: CUDA out of memory" >&2; exit 1 ;;
esac
base=0; adapter=1
[ "$FAKE_MODE" = worse ] && { base=1; adapter=0; }
i=0
while [ $i -lt 20 ]; do
  printf '{"index":%d,"messages":[{"role":"user","content":"q%d"}],"reference":"r","base":{"text":"b","tokens":3,"stopped":"eos","scores":{"exact":%d},"errors":{}},"adapter":{"text":"a","tokens":2,"stopped":"eos","scores":{"exact":%d},"errors":{}}}\n' $i $i $base $adapter >> "$out/generations.jsonl"
  i=$((i+1))
done
echo '{"type":"generate","time":"2026-01-01T00:00:00Z","phase":"base","done":20,"total":20}' >> "$out/events.jsonl"
echo '{"before":[2,2,2],"after":[1,1,1],"indices":[0,1,2]}' > "$out/example_losses.json"
echo "eval_task: done" >&2
