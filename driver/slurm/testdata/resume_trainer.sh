#!/bin/sh
# A stand-in for python/train_lora.py for the Slurm driver's cluster tests: it honours
# docs/trainer-contract.md closely enough to exercise checkpoint → requeue → resume.
#   --resume auto   resumes from the newest complete checkpoint under RUN_DIR/checkpoints
#   FAKE_STEPS      total steps (default 5); FAKE_STEP_SECONDS per step (default 0.2)
#   FAKE_EXIT       exit code after the last step (default 0); non-zero also prints an
#                   error to stderr, as a crashing trainer would
# On SIGUSR1, SIGTERM or SIGINT it writes a complete checkpoint and exits 75; repeated
# signals are ignored.
# Events carry "t", seconds since the epoch with nanoseconds, so tests can order
# attempts of different jobs.
set -u
run_dir=
resume=
while [ $# -gt 0 ]; do
	case "$1" in
	--config) shift 2 ;;
	--run-dir) run_dir=$2; shift 2 ;;
	--resume) resume=$2; shift 2 ;;
	*) echo "resume trainer: unknown argument $1" >&2; exit 2 ;;
	esac
done
events=$run_dir/events.jsonl
emit() {
	printf '{"type":"%s","time":"%s","t":%s%s}\n' "$1" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$(date +%s.%N)" "$2" >>"$events"
}

step=0
if [ "$resume" = auto ]; then
	for m in "$run_dir"/checkpoints/checkpoint-*/loractl-complete.json; do
		[ -f "$m" ] || continue
		s=${m%/loractl-complete.json}
		s=${s##*checkpoint-}
		if [ "$s" -gt "$step" ]; then step=$s; fi
	done
fi
resume_step=$step

sleeper=
stopping=
# A plain scancel signals the trainer twice (Slurm itself, then the batch script's
# forward): like the real trainer, a repeated signal is the same request.
interrupted() {
	if [ -n "$stopping" ]; then return; fi
	stopping=1
	trap '' USR1 TERM INT
	if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null; fi
	dir=$run_dir/checkpoints/checkpoint-$step
	mkdir -p "$dir"
	printf '{"step":%d}\n' "$step" >"$dir/loractl-complete.json"
	emit checkpoint ",\"step\":$step"
	emit end ",\"status\":\"interrupted\",\"step\":$step,\"signal\":\"$1\""
	echo "resume trainer: $1 at step $step, checkpoint saved"
	exit 75
}
trap 'interrupted SIGUSR1' USR1
trap 'interrupted SIGTERM' TERM
trap 'interrupted SIGINT' INT

steps=${FAKE_STEPS:-5}
echo "resume trainer: starting at step $step of $steps (gpus: ${CUDA_VISIBLE_DEVICES:-none})"
emit start ",\"resume_step\":$resume_step,\"total_steps\":$steps,\"cuda_visible_devices\":\"${CUDA_VISIBLE_DEVICES:-}\""
while [ "$step" -lt "$steps" ]; do
	sleep "${FAKE_STEP_SECONDS:-0.2}" &
	sleeper=$!
	wait "$sleeper"
	sleeper=
	step=$((step + 1))
	emit log ",\"step\":$step"
done
code=${FAKE_EXIT:-0}
if [ "$code" != 0 ]; then
	echo "Traceback (most recent call last):" >&2
	echo "RuntimeError: resume trainer asked to fail with $code" >&2
	emit error ",\"message\":\"asked to fail\""
	emit end ",\"status\":\"failed\",\"step\":$step"
	exit "$code"
fi
emit end ",\"status\":\"completed\",\"step\":$step"
exit 0
