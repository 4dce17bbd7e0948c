#!/usr/bin/env bash
# Builds the registry-free image the container driver's tests run in, and prints its name on
# the last line of stdout.
#
#   scripts/ci/build-test-image.sh              # import into docker (DOCKER_HOST is honoured)
#   ENGINE=podman scripts/ci/build-test-image.sh
#   scripts/ci/build-test-image.sh --rootfs     # only build/cache the tarball, print its path
#
# The image is a Debian bookworm minbase rootfs with python3 (no registry is reachable, so
# nothing can be pulled). The tests bind-mount the trainer's virtualenv and its base Python
# install read-only at their host paths; bookworm's libc and python3.11 shared libraries are
# what that interpreter links against on these (Debian 12) machines.
#
# debootstrap costs about 2.5 minutes, so the rootfs tarball is cached outside the clone,
# keyed by this script's hash: CI pays it once per machine. The cache root is $LORACTL_CACHE
# (default ~/.cache/loractl); MIRROR overrides the Debian mirror.
set -euo pipefail

engine=${ENGINE:-docker}
mirror=${MIRROR:-http://deb.debian.org/debian}
cache=${LORACTL_CACHE:-$HOME/.cache/loractl}
hash=$(sha256sum "$0" | cut -c1-12)
tarball="$cache/test-rootfs-$hash.tar"
image="loractl-test:$hash"

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    echo "build-test-image: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
  }
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/rootfs-build.XXXXXX")
  # Remove the half-built tree whatever happens; only a finished tarball is ever renamed in.
  trap 'rm -rf "$work"' EXIT
  echo "build-test-image: debootstrap bookworm into $work (first time only)" >&2
  debootstrap --variant=minbase --include=python3 bookworm "$work/root" "$mirror" >&2
  # The tests run the container as a non-root uid and bind-mount the virtualenv and Python
  # at their host paths, which live under /root on the CI machines: the image's /root must
  # be traversable for those mounts to be reachable.
  chmod 0755 "$work/root/root"
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  # The engine provides /dev, /proc and /sys; device nodes in the tarball are useless.
  tar -C "$work/root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' \
    --exclude='./sys/*' -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
fi

if [ "${1:-}" = "--rootfs" ]; then
  echo "$tarball"
  exit 0
fi

case "$engine" in
  docker | podman) ;;
  *)
    echo "build-test-image: ENGINE must be docker or podman, not $engine" >&2
    exit 2
    ;;
esac
if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "build-test-image: importing $tarball as $image into $engine" >&2
  "$engine" import --change 'CMD ["/bin/sh"]' "$tarball" "$image" >/dev/null
fi
echo "$image"
