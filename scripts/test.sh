#!/usr/bin/env bash
# README command 2 (and CI): set up with the test tools, check style and types, run the whole suite.
# Arguments go to pytest: `bash scripts/test.sh tests/local -k pid` runs what they select.
# Two workers (pytest-xdist), no more: most of the suite's time is spent waiting for processes
# to start, and each worker may hold meshes with sidecars, whose Envoys take inotify instances
# (some 31 a mesh, of 128 a user has on CI). `-n 0` runs the tests in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
# The suite starts hundreds of Python processes (services, `fenlei` commands) from the editable
# install, which has no bytecode: where PYTHONDONTWRITEBYTECODE is set, each would compile
# fenlei's sources again (0.1 s of every `fenlei` command).
# Every Envoy of a mesh takes inotify instances (a mesh with sidecars 37); the suite runs up to
# four meshes at once beside Chromium and its private gateways, more than Linux's default 128
# per user. As root (CI), raise the limit for the suite; elsewhere `fenlei up` says what to do.
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 512 ]; then
  (echo 512 > /proc/sys/fs/inotify/max_user_instances) 2>/dev/null && echo "fs.inotify.max_user_instances raised to 512 for the suite" || true
fi
.venv/bin/python -m compileall -q -j 0 services
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -n 2 "$@"
fi
# The suite, then the container image's checks (tests/images: build, push to a registry on
# loopback, pull, run the image's own fenlei; minutes of building and copying) on their own.
.venv/bin/python -m pytest -n 2 -m "not image"
exec .venv/bin/python -m pytest -n 0 -m image tests/images
