#!/usr/bin/env bash
# Regenerates the committed Go and Python code of the example plugins from proto/:
#
#   sdk/go/gen/plugwire/v1/                   protoc-gen-go + protoc-gen-go-grpc, through buf
#                                             (buf.gen.go.yaml), inside the Go SDK module sdk/go;
#                                             Go uses google.golang.org/grpc/health
#   plugins-example/python/gen/plugwire/v1/   grpc_tools.protoc from the venv:
#   plugins-example/python/gen/health/v1/      *_pb2.py, *_pb2.pyi, *_pb2_grpc.py
#                                             (health from --proto_path=proto/grpc: a gen/grpc/
#                                             package would shadow grpcio; docs/protocol.md §16)
#
# Deterministic: CI runs it and fails if `git status --porcelain` changes.
# Needs scripts/setup-polyglot.sh (venv and .tools/bin) and `npm ci` (buf) first.
# A language whose toolchain is missing altogether is skipped with a notice.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C # stable glob order

die() {
  echo "generate-polyglot: $*" >&2
  exit 1
}

generate_python() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "skipping Python generation: python3 not found" >&2
    return 0
  fi
  local py=plugins-example/python/.venv/bin/python
  [[ -x $py ]] || die "$py not found; run scripts/setup-polyglot.sh first"
  local out=plugins-example/python/gen
  rm -rf "$out"
  mkdir -p "$out"
  "$py" -m grpc_tools.protoc \
    --proto_path=proto \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    proto/plugwire/v1/*.proto
  "$py" -m grpc_tools.protoc \
    --proto_path=proto/grpc \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    proto/grpc/health/v1/health.proto
}

generate_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "skipping Go generation: go not found" >&2
    return 0
  fi
  local tool
  for tool in protoc-gen-go protoc-gen-go-grpc; do
    [[ -x .tools/bin/$tool ]] || die ".tools/bin/$tool not found; run scripts/setup-polyglot.sh first"
  done
  local buf=node_modules/.bin/buf
  [[ -x $buf ]] || die "$buf not found; run npm ci first"
  "$buf" generate --template buf.gen.go.yaml
}

generate_python
generate_go
