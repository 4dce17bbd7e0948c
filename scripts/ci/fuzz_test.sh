#!/usr/bin/env bash
# The fuzz step's classifier (scripts/ci/fuzz.sh): only Go's bare -fuzztime deadline
# race is let through; a written input, a panic or any other failure text is not.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0

check() { # check NAME WANT(race|real) <<< LOG
  cat >"$dir/$1"
  if "$here/fuzz.sh" --classify "$dir/$1"; then got=race; else got=real; fi
  if [ "$got" != "$2" ]; then
    echo "fuzz_test: $1: classified $got, want $2" >&2
    failed=1
  fi
}

check bare-deadline race <<'LOG'
fuzz: elapsed: 15s, execs: 159310 (0/sec), new interesting: 174 (total: 499)
--- FAIL: FuzzParse (15.33s)
    context deadline exceeded
FAIL
exit status 1
FAIL	github.com/loractl/loractl/config	15.349s
LOG
check input-written real <<'LOG'
fuzz: minimizing 58-byte failing input file
--- FAIL: FuzzParse (3.10s)
    --- FAIL: FuzzParse (0.00s)
        parse_fuzz_test.go:40: round trip changed the value
    Failing input written to testdata/fuzz/FuzzParse/0123abcd
    To re-run:
    go test -run=FuzzParse/0123abcd
FAIL
LOG
check panic real <<'LOG'
--- FAIL: FuzzEvents (2.00s)
    context deadline exceeded
panic: runtime error: index out of range [3] with length 3
FAIL
LOG
check other-failure-text real <<'LOG'
--- FAIL: FuzzRender (15.02s)
    context deadline exceeded
    render_fuzz_test.go:22: unquoted value in script
FAIL
LOG
check build-error real <<'LOG'
# github.com/loractl/loractl/config
config/parse.go:10:2: undefined: foo
FAIL	github.com/loractl/loractl/config [build failed]
LOG
exit $failed
