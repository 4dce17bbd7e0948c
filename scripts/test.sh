#!/usr/bin/env bash
# Runs every loractl test for real: Go unit tests, the end-to-end runs of the real
# trainer on a tiny CPU model (locally, through a real single-node Slurm cluster and in a
# real Docker engine), and the trainer's pytest suite.
#
#   scripts/test.sh            # what CI runs (.ci/run)
#
# It installs what is missing (system packages, the trainer's venv, the test image),
# starts the Slurm daemons and a private dockerd, and stops them by PID on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"
work=$(mktemp -d /tmp/loractl-test.XXXXXX)

scripts/install-deps.sh

echo "== python environment" >&2
# With the extras sets the tests exercise for real: the experiment trackers (their files
# are read back) and the GGUF export (read back against the merged model).
LORACTL_PYTHON=$(LORACTL_TRACKING_EXTRAS=1 LORACTL_EXPORT_EXTRAS=1 LORACTL_DEV_EXTRAS=1 scripts/setup-python.sh | tail -n 1)
export LORACTL_PYTHON
# A missing trainer environment must fail the end-to-end tests here, not skip them.
export LORACTL_REQUIRE_E2E=1

cleanup() {
  set +e
  # An early exit (vet, gofmt) must not leave the image build running: it is its own
  # process group (setsid), so the docker build under it goes too.
  if [ -n "${image_pid:-}" ] && kill -0 "$image_pid" 2>/dev/null; then
    kill -- "-$image_pid" 2>/dev/null
    wait "$image_pid" 2>/dev/null
  fi
  scripts/ci/slurm-down.sh "$work/slurm" >/dev/null 2>&1
  [ -n "${LORACTL_DOCKERD_DIR:-}" ] && scripts/ci/dockerd-down.sh "$LORACTL_DOCKERD_DIR" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

echo "== slurm cluster" >&2
scripts/ci/slurm-up.sh "$work/slurm" >&2
# shellcheck disable=SC1091
. "$work/slurm/env"

echo "== docker engine and test image" >&2
eval "$(scripts/ci/dockerd-up.sh "$work/dockerd")"
# The registry-free test image's rootfs (debootstrap, cached outside the clone); the
# container tests import it into docker and podman themselves.
LORACTL_TEST_ROOTFS=$(scripts/ci/build-test-image.sh --rootfs | tail -n 1)
export LORACTL_TEST_ROOTFS LORACTL_TEST_PYTHON="$LORACTL_PYTHON"
export LORACTL_DOCKER_TEST=1 LORACTL_PODMAN_TEST=1
# Dockerfile.gpu itself, built for real from local parts (2-3 minutes, mostly PyPI
# downloads, 6 GB) while vet and pytest run; go test needs it.
echo "== trainer image from Dockerfile.gpu (in the background)" >&2
setsid scripts/ci/build-trainer-image.sh >"$work/trainer-image.out" 2>"$work/trainer-image.log" &
image_pid=$!

echo "== go vet, gofmt" >&2
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed: $unformatted" >&2
  exit 1
fi

# golangci-lint (.golangci.yml), pinned: a newer release brings new findings, and those
# come with an upgrade commit, not with someone's unrelated change.
echo "== golangci-lint" >&2
golangci_version=2.15.0
golangci_lint="$(go env GOPATH)/bin/golangci-lint"
if ! "$golangci_lint" version 2>/dev/null | grep -qF "version $golangci_version "; then
  go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$golangci_version"
fi
"$golangci_lint" run ./...

# Both suites run even when the first fails, so one CI run reports every failure.
status=0
echo "== ruff" >&2
"$(dirname "$LORACTL_PYTHON")/ruff" check python bench || status=1
echo "== pytest" >&2
"$LORACTL_PYTHON" -m pytest -q python/tests || status=1

echo "== waiting for the trainer image" >&2
if wait "$image_pid"; then
  LORACTL_TRAINER_IMAGE=$(tail -n 1 "$work/trainer-image.out")
  export LORACTL_TRAINER_IMAGE
else
  echo "building Dockerfile.gpu failed:" >&2
  tail -n 40 "$work/trainer-image.log" >&2
  status=1
fi

echo "== go test" >&2
go test -count=1 -timeout 60m ./... || status=1

# Bounded native fuzzing of the parsers that read untrusted input (docs/reliability.md):
# about 1m45s in all. A finding is saved under testdata/fuzz/ and fails the step.
# scripts/ci/fuzz.sh tells Go 1.26's -fuzztime deadline race from a finding.
echo "== go fuzz" >&2
scripts/ci/fuzz_test.sh || status=1
for target in "./config FuzzParse" "./config FuzzSetValue" "./run FuzzEvents" "./run FuzzMarker" \
	"./driver/slurm FuzzRender" "./dataset FuzzCheckLine"; do
	set -- $target
	scripts/ci/fuzz.sh "$1" "$2" 15s || status=1
done

# Takes the test cluster's only node down: alone, after everything else.
echo "== slurm node failure" >&2
LORACTL_SLURM_NODEFAIL_TEST=1 go test -count=1 -run TestNodeFailureRequeueResume ./driver/slurm || status=1

exit $status
