#!/usr/bin/env bash
# Runs a Python example plugin with the project's venv, from any directory:
#   plugins-example/python/run.sh counter.py
# exec keeps the plugin's pid, so the host's signals and stdin reach Python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$here/.venv/bin/python"
if [[ ! -x $python ]]; then
  echo "plugwire python example: $python not found; run scripts/setup-polyglot.sh first" >&2
  exit 1
fi
script="${1:?usage: run.sh PLUGIN.py}"
shift
exec "$python" "$here/$script" "$@"
