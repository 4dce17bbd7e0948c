#!/usr/bin/env bash
# Starts a private Docker engine for tests and prints shell lines to adopt it:
#
#   eval "$(scripts/ci/dockerd-up.sh)"      # sets DOCKER_HOST and LORACTL_DOCKERD_DIR
#   ...tests...
#   scripts/ci/dockerd-down.sh              # stops it by PID and removes its state
#
# The daemon gets its own data root, exec root and socket under one directory (argument 1,
# default a fresh mktemp dir), so it never touches a system dockerd or its images, and it
# runs with --iptables=false --bridge=none: the default bridge would rewrite the machine's
# iptables, and the trainer needs no network (containers use --network none). dockerd
# starts and later stops its own containerd under the same roots.
set -euo pipefail

dir=${1:-$(mktemp -d /tmp/loractl-dockerd.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sock="$dir/docker.sock"
command -v dockerd >/dev/null || {
  echo "dockerd-up: dockerd is not installed (apt-get install --no-install-recommends docker.io)" >&2
  exit 1
}
if [ -f "$dir/dockerd.pid" ] && kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; then
  echo "dockerd-up: a dockerd is already running for $dir (pid $(cat "$dir/dockerd.pid"))" >&2
  exit 1
fi

# setsid: the daemon must not receive the caller's terminal signals (Ctrl-C in a test run
# would otherwise kill it behind dockerd-down's back).
setsid dockerd \
  --data-root "$dir/data" \
  --exec-root "$dir/exec" \
  --pidfile "$dir/dockerd.pid" \
  -H "unix://$sock" \
  --iptables=false --ip-masq=false --bridge=none \
  >"$dir/dockerd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$dir/dockerd.launcher.pid"

for _ in $(seq 1 300); do
  if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
    echo "export DOCKER_HOST=unix://$sock"
    echo "export LORACTL_DOCKERD_DIR=$dir"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "dockerd-up: dockerd exited during startup; last log lines:" >&2
    tail -n 20 "$dir/dockerd.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "dockerd-up: dockerd did not answer on $sock within 30 s; stopping it" >&2
kill "$pid" 2>/dev/null || true
exit 1
