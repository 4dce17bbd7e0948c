#!/usr/bin/env bash
# Stops the test cluster that slurm-up.sh started under BASE, by the PIDs in its pid files
# (never by process name: other Slurm daemons on the machine are left alone).
#
#   scripts/ci/slurm-down.sh [BASE]   # BASE: $LORACTL_SLURM_BASE, default /tmp/loractl-slurm
#   LORACTL_SLURM_PURGE=1 ...         # also delete BASE
set -uo pipefail

base=${1:-${LORACTL_SLURM_BASE:-/tmp/loractl-slurm}}
[ -d "$base" ] || exit 0

# stop PIDFILE NAME: TERM, wait up to 10 s, then KILL. The name is checked against
# /proc/PID/comm so a stale pid file never kills an unrelated process that reused the PID.
stop() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null) || return 0
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null && echo "slurm-down: killed $name ($pid)" >&2
  fi
  rm -f "$file"
}

# Jobs still running under slurmd are children of slurmstepd processes that slurmd started;
# their PIDs are not recorded, so cancel them through Slurm while the controller is up.
if [ -f "$base/etc/slurm.conf" ] && command -v scancel >/dev/null; then
  SLURM_CONF="$base/etc/slurm.conf" timeout 5 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
fi

stop "$base/run/slurmd.pid" slurmd
stop "$base/run/slurmctld.pid" slurmctld
stop "$base/munge/munged.pid" munged

if [ "${LORACTL_SLURM_PURGE:-0}" = 1 ]; then
  rm -rf "$base"
fi
echo "slurm-down: stopped the cluster under $base" >&2
