#!/usr/bin/env bash
# README command 2 (and CI): set up with the test tools, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
