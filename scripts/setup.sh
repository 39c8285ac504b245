#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs fenlei into it (with the test tools when
# given "dev"). Safe to run again: pip and scripts/debian-packages.sh only add what is
# missing. Only "dev" needs Debian packages (protoc-gen-swagger for scripts/gen.py and its
# drift test); the generated files are committed, so a user's setup does not.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "fenlei needs Python 3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras=""
if [ "${1:-}" = dev ]; then
  bash scripts/debian-packages.sh
  extras="[dev]"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
