#!/bin/sh
# A stand-in for python/train_lora.py that honours docs/trainer-contract.md, for the
# driver contract suite. It takes the trainer's arguments, appends events to
# RUN_DIR/events.jsonl, prints one line to stdout and one to stderr, and:
#   - runs LORACTL_FAKE_STEPS steps of one second each ("forever": until signalled),
#     then exits with LORACTL_FAKE_EXIT (default 0);
#   - on SIGTERM, SIGINT or SIGUSR1 writes a complete checkpoint (marker written
#     last) and exits 75; with LORACTL_FAKE_IGNORE_TERM=1 it ignores SIGTERM;
#   - writes LORACTL_FAKE_VALUE and LORACTL_FAKE_SECRET to RUN_DIR/fake-env, so the
#     suite can see that Task.Env and Task.PassEnv reached it.
# Only POSIX sh and date/mkdir/sleep are used, so it runs in a minimal container too.
set -u
config=
run_dir=
while [ $# -gt 0 ]; do
	case "$1" in
	--config) config=$2; shift 2 ;;
	--run-dir) run_dir=$2; shift 2 ;;
	--resume) shift 2 ;;
	*) echo "fake trainer: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ -z "$run_dir" ] || [ ! -f "$config" ]; then
	echo "fake trainer: usage: fake_trainer.sh --config FILE --run-dir DIR" >&2
	exit 2
fi

events=$run_dir/events.jsonl
step=0
sleeper=

emit() {
	printf '{"type":"%s","time":"%s.000000Z"%s}\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%S)" "$2" >>"$events"
}

checkpoint() {
	dir=$run_dir/checkpoints/checkpoint-$step
	mkdir -p "$dir"
	printf '{"global_step":%d}\n' "$step" >"$dir/trainer_state.json"
	printf '{"step":%d}\n' "$step" >"$dir/loractl-complete.json"
	emit checkpoint ",\"step\":$step,\"path\":\"$dir\""
}

interrupted() {
	if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null; fi
	checkpoint
	emit end ",\"status\":\"interrupted\",\"step\":$step,\"signal\":\"$1\""
	exit 75
}

trap 'interrupted SIGTERM' TERM
trap 'interrupted SIGINT' INT
trap 'interrupted SIGUSR1' USR1
if [ "${LORACTL_FAKE_IGNORE_TERM:-}" = 1 ]; then trap '' TERM; fi

printf '%s\n%s\n' "${LORACTL_FAKE_VALUE:-}" "${LORACTL_FAKE_SECRET:-}" >"$run_dir/fake-env"
echo "fake trainer: stdout"
echo "fake trainer: stderr" >&2

steps=${LORACTL_FAKE_STEPS:-1}
emit start ",\"pid\":$$,\"device\":\"cpu\""
while [ "$steps" = forever ] || [ "$step" -lt "$steps" ]; do
	# Sleep in the background and wait for it: a trapped signal interrupts wait at
	# once, where it would be held until a foreground sleep ended.
	sleep 1 &
	sleeper=$!
	wait "$sleeper"
	sleeper=
	step=$((step + 1))
	emit log ",\"step\":$step,\"loss\":1.0"
done

code=${LORACTL_FAKE_EXIT:-0}
if [ "$code" = 0 ]; then
	emit end ",\"status\":\"completed\",\"step\":$step"
else
	emit error ",\"error_type\":\"FakeError\",\"message\":\"asked to exit $code\""
	emit end ",\"status\":\"failed\",\"step\":$step"
fi
exit "$code"
