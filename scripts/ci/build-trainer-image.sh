#!/usr/bin/env bash
# Builds Dockerfile.gpu without a container registry and prints the image name on the
# last line of stdout:
#
#   scripts/ci/build-trainer-image.sh [TAG]     # default loractl-trainer:local; DOCKER_HOST honoured
#
# The Dockerfile's two registry images are replaced by local ones:
#   - BASE_IMAGE: the Debian bookworm rootfs of scripts/ci/build-test-image.sh (python3.11
#     included, so PYTHON_VERSION points at it instead of downloading a Python), plus the
#     CA certificates this host adds to its trust store (/usr/local/share/ca-certificates),
#     so a build behind a TLS-inspecting proxy trusts what the host trusts;
#   - UV_IMAGE: the uv binary of the same version, from its PyPI wheel.
# The requirements still come from PyPI (about 3 GB, 2 minutes here); the image has no CUDA
# runtime libraries of its own beyond the nvidia-* wheels torch brings, which is what the
# trainer uses. It is the Dockerfile's real build, run in CI to keep the file honest.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tag=${1:-loractl-trainer:local}
command -v docker >/dev/null || { echo "build-trainer-image: docker is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/loractl-trainer-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

rootfs=$("$root/scripts/ci/build-test-image.sh" --rootfs | tail -n 1)
base="loractl-build-base:$(sha256sum "$rootfs" | cut -c1-12)"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  docker import "$rootfs" "$base-plain" >/dev/null
  mkdir -p "$work/base"
  cp /usr/local/share/ca-certificates/*.crt "$work/base/" 2>/dev/null || true
  {
    echo "FROM $base-plain"
    if ls "$work/base/"*.crt >/dev/null 2>&1; then
      echo "COPY *.crt /usr/local/share/ca-certificates/"
    fi
  } >"$work/base/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$base" "$work/base" >/dev/null
fi

# The uv version the Dockerfile pins (ARG UV_IMAGE=ghcr.io/astral-sh/uv:X.Y.Z).
uv_version=$(sed -n 's/^ARG UV_IMAGE=.*:\([0-9][0-9.]*\)$/\1/p' "$root/Dockerfile.gpu")
[ -n "$uv_version" ] || { echo "build-trainer-image: no uv version in Dockerfile.gpu" >&2; exit 1; }
uv_image="loractl-build-uv:$uv_version"
if ! docker image inspect "$uv_image" >/dev/null 2>&1; then
  "${LORACTL_PYTHON:-python3}" -m pip download --no-deps -q -d "$work/uv" "uv==$uv_version" >&2
  mkdir -p "$work/uv/img"
  python3 - "$work/uv" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
wheel = next(f for f in os.listdir(d) if f.endswith(".whl"))
with zipfile.ZipFile(os.path.join(d, wheel)) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/uv"))
    with z.open(name) as src, open(os.path.join(d, "img", "uv"), "wb") as dst:
        dst.write(src.read())
os.chmod(os.path.join(d, "img", "uv"), 0o755)
PY
  tar -C "$work/uv/img" -cf "$work/uv/uv.tar" uv
  docker import "$work/uv/uv.tar" "$uv_image" >/dev/null
fi

echo "build-trainer-image: building $tag from Dockerfile.gpu" >&2
# The legacy builder: BuildKit would fetch its dockerfile frontend from a registry.
# --network host: the test engine runs without a bridge, and the build needs PyPI.
DOCKER_BUILDKIT=0 docker build --network host -f "$root/Dockerfile.gpu" \
  --build-arg BASE_IMAGE="$base" --build-arg UV_IMAGE="$uv_image" \
  --build-arg PYTHON_VERSION=/usr/bin/python3.11 -t "$tag" "$root" >&2
echo "$tag"
