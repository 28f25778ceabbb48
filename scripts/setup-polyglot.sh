#!/usr/bin/env bash
# Installs what the Python, Go and Rust SDKs and example plugins need, from pinned versions:
#
#   plugins-example/python/.venv   grpcio, grpcio-tools, protobuf (requirements.txt), the plugwire
#                                  package (sdk/python, editable) and pytest (sdk/python/requirements-dev.txt)
#   .tools/bin                     protoc-gen-go, protoc-gen-go-grpc (for generate-polyglot.sh)
#   Go module cache                the modules of sdk/go (the Go SDK) and plugins-example/go (go mod download)
#   plugins-example/go/bin         the presence-go and counter-go plugin binaries, built against sdk/go
#   target/release/counter-rust    the Rust example (cargo, from the root Cargo.lock)
#
# Idempotent and quiet on success. A language whose toolchain is missing is
# skipped with a notice on stderr; the script still exits 0.
# Run from anywhere:  bash scripts/setup-polyglot.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# Pinned code generators. Keep PROTOC_GEN_GO_VERSION equal to the
# google.golang.org/protobuf version in sdk/go/go.mod.
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

tools_bin=$root/.tools/bin

# Runs a command, printing its output only if it fails (go install chats about downloads).
quietly() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

skip() {
  echo "skipping $1 examples: $2 not found" >&2
}

setup_python() {
  if ! command -v python3 >/dev/null 2>&1; then
    skip Python python3
    return 0
  fi
  local dir=plugins-example/python
  local venv=$dir/.venv
  local req=$dir/requirements.txt
  local dev=sdk/python/requirements-dev.txt
  local stamp=$venv/.installed-requirements.txt
  # What the venv was made from: both pin files and the package's metadata.
  # The package is installed editable, so a change of its code needs no reinstall.
  local want
  want=$(cat "$req" "$dev" sdk/python/pyproject.toml)
  # Already installed from exactly these files: nothing to do.
  if [[ -x $venv/bin/python && -f $stamp ]] && [[ $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    skip Python "the python3 venv module (on Debian: apt-get install python3-venv)"
    return 0
  fi
  python3 -m venv "$venv"
  quietly "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" -r "$dev"
  # setuptools (the build backend, pinned in requirements.txt) is in the venv
  # already: building without isolation fetches nothing more.
  quietly "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --no-build-isolation --no-deps --editable ./sdk/python
  printf '%s\n' "$want" >"$stamp"
}

# Prints the version a generator reports, or nothing if it is not installed.
tool_version() {
  [[ -x $tools_bin/$1 ]] && "$tools_bin/$1" --version 2>/dev/null || true
}

setup_go() {
  if ! command -v go >/dev/null 2>&1; then
    skip Go go
    return 0
  fi
  mkdir -p "$tools_bin"
  # Keep .tools/ out of `git status` even where the root .gitignore lacks it.
  [[ -f $root/.tools/.gitignore ]] || printf '*\n' >"$root/.tools/.gitignore"

  if [[ $(tool_version protoc-gen-go) != "protoc-gen-go $PROTOC_GEN_GO_VERSION" ]]; then
    GOBIN=$tools_bin quietly go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  fi
  if [[ $(tool_version protoc-gen-go-grpc) != "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" ]]; then
    GOBIN=$tools_bin quietly go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  fi

  # The modules both go.mod files pin (go.sum checks them); a no-op once cached.
  (cd sdk/go && quietly go mod download)
  # go build is incremental: a rebuild with nothing changed takes well under a
  # second. plugins-example/go imports the SDK through a replace directive.
  (
    cd plugins-example/go
    quietly go mod download
    quietly go build -trimpath -buildvcs=false -o bin/presence-go .
    quietly go build -trimpath -buildvcs=false -o bin/counter-go ./cmd/counter-go
  )
}

# --- Rust (sdk/rust, plugins-example/rust) ---------------------------------
# Builds the Rust example with the committed Cargo.lock. protoc comes from the
# protoc-bin-vendored crate, so only cargo is needed. A cold build (crates
# downloaded and compiled) takes minutes; a rebuild with nothing changed, well
# under a second.
setup_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    skip Rust cargo
    return 0
  fi
  quietly cargo build --release --locked --target-dir "$root/target" -p plugwire-example-rust
}
# --- end Rust ----------------------------------------------------------------

setup_python
setup_go
setup_rust
