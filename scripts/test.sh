#!/usr/bin/env bash
# README command 2 (and CI): set up with the test tools, check style and types, run the whole suite.
# Arguments go to pytest: `bash scripts/test.sh tests/local -k pid` runs what they select.
# Three workers (pytest-xdist) on CI's two cores: most of the suite's time is spent waiting for
# processes to start. No more: meshes with sidecars take inotify instances (some 37 a mesh, of
# 128 a user has on CI); tests/conftest.py keeps them to two at once (their groups), and each
# worker's session mesh without sidecars takes some 8. `-n 0` runs the tests in this process.
set -euo pipefail
WORKERS=3
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
# The suite starts hundreds of Python processes (services, `fenlei` commands) from the editable
# install, which has no bytecode: where PYTHONDONTWRITEBYTECODE is set, each would compile
# fenlei's sources again (0.1 s of every `fenlei` command).
.venv/bin/python -m compileall -q -j 0 services
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -n "$WORKERS" "$@"
fi
# The suite, then the container image's checks (tests/images: build, push to a registry on
# loopback, pull, run the image's own fenlei; minutes of building and copying) on their own.
.venv/bin/python -m pytest -n "$WORKERS" -m "not image"
exec .venv/bin/python -m pytest -n 0 -m image tests/images
