#!/usr/bin/env bash
# Bounded native fuzzing of one target: scripts/ci/fuzz.sh PKG TARGET FUZZTIME
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded"
# when -fuzztime runs out while a worker is mid-call (go.dev/issue/75804, fixed in Go
# 1.27). That failure found nothing: no input is written. A real finding always writes
# its input under testdata/fuzz/ ("Failing input written to"), so only the bare
# deadline with no input written is taken for the race, and then only if the target's
# corpus still replays clean. Everything else fails as before.
set -uo pipefail

# deadline_race LOG: whether LOG is that race and nothing else.
deadline_race() {
  grep -q 'context deadline exceeded' "$1" &&
    ! grep -qE 'Failing input written to|^panic:|fuzz: minimizing' "$1" &&
    # The only failure text under "--- FAIL:" is the deadline.
    [ "$(sed -n '/^--- FAIL: /,/^FAIL$/p' "$1" | grep -vE '^--- FAIL: |^FAIL$|^[[:space:]]*context deadline exceeded$' | wc -l)" -eq 0 ]
}

if [ "${1:-}" = --classify ]; then # for scripts/ci/fuzz_test.sh
  deadline_race "$2"
  exit
fi

pkg=$1 target=$2 fuzztime=$3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
go test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] && exit 0
if deadline_race "$log"; then
  echo "fuzz: $target stopped on Go's -fuzztime deadline race (go.dev/issue/75804), nothing found; replaying its corpus" >&2
  exec go test -count=1 -run "^$target\$" "$pkg"
fi
exit 1
