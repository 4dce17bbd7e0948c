#!/usr/bin/env bash
# Installs the system packages loractl's tests use, when missing: a real Slurm
# (slurm-wlm + munge), a Docker engine (docker.io), podman, and debootstrap for the
# registry-free test image, and chromium (headless, for the HTML report's browser
# test). Debian 12; needs root. Safe to run again.
set -euo pipefail
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v dockerd >/dev/null || need+=(docker.io)
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v chromium >/dev/null || need+=(chromium)
# tmux drives `loractl chat` as a person would (send-keys, capture-pane).
command -v tmux >/dev/null || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
