#!/bin/sh
# Regenerates driver.pb.go and driver_grpc.pb.go from driver.proto with pinned code
# generators, so the committed code only changes when the .proto or a pin changes.
# Needs protoc (Debian: protobuf-compiler) and Go; run from anywhere:
#   driver/proto/generate.sh
set -eu

PROTOC_GEN_GO_VERSION=v1.36.12      # matches google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2   # needs google.golang.org/grpc >= 1.64 at run time

here=$(cd "$(dirname "$0")" && pwd)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT

command -v protoc >/dev/null 2>&1 || {
	echo "generate.sh: protoc not found; install it (apt-get install protobuf-compiler)" >&2
	exit 1
}
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"

cd "$here"
protoc \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	driver.proto
