#!/usr/bin/env bash
# Stops the private Docker engine started by dockerd-up.sh, by its PID, and removes its
# directory (argument 1, default $LORACTL_DOCKERD_DIR). Containers it still runs are stopped
# by the daemon on the way down. KEEP=1 keeps the directory (data root, log) for a post-mortem.
set -euo pipefail

dir=${1:-${LORACTL_DOCKERD_DIR:-}}
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
  echo "dockerd-down: no dockerd directory (pass it or set LORACTL_DOCKERD_DIR)" >&2
  exit 1
fi
pid=""
for f in "$dir/dockerd.pid" "$dir/dockerd.launcher.pid"; do
  if [ -s "$f" ]; then
    pid=$(cat "$f")
    break
  fi
done
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  # Containers get dockerd's shutdown timeout (15 s) to stop; allow for it before SIGKILL.
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "dockerd-down: dockerd $pid ignored SIGTERM for 30 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
if [ "${KEEP:-0}" != 1 ]; then
  # A killed daemon can leave overlay mounts behind; unmount before deleting under them.
  { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$dir"
fi
