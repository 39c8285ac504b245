#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs fenlei into it (with the test tools when
# given "dev"). Safe to run again: pip only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "fenlei needs Python 3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras=""
[ "${1:-}" = dev ] && extras="[dev]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
