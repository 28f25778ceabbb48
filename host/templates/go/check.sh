#!/bin/sh
# Runs the plugwire conformance kit on the built plugin
# (go build -o bin/{{name}} . first). Arguments go to plugwire check
# (e.g. --json). Exits 0 when every check passes.
# PLUGWIRE overrides the plugwire command.
cd "$(dirname "$0")" || exit 1
exec ${PLUGWIRE:-plugwire} check "$@" -- ./bin/{{name}}
