#!/usr/bin/env bash
# README command 2 (and CI): set up with the test tools, check style and types, run the whole suite.
# Arguments go to pytest: `bash scripts/test.sh tests/local -k pid` runs what they select.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
