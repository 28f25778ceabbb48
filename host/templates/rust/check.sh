#!/bin/sh
# Runs the plugwire conformance kit on the built plugin (cargo build --release
# first). Exits 0 when every check passes. PLUGWIRE overrides the plugwire
# command; CARGO_TARGET_DIR, if set, is where cargo put the binary.
cd "$(dirname "$0")" || exit 1
exec ${PLUGWIRE:-plugwire} check "$@" -- "${CARGO_TARGET_DIR:-target}/release/{{name}}"
