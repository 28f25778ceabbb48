#!/bin/sh
# Runs the plugwire conformance kit on the plugin, with the project's venv
# (or the Python in $PYTHON). Arguments go to plugwire check (e.g. --json).
# Exits 0 when every check passes.
# PLUGWIRE overrides the plugwire command.
cd "$(dirname "$0")" || exit 1
exec ${PLUGWIRE:-plugwire} check "$@" -- "${PYTHON:-.venv/bin/python}" plugin.py
