"""Prometheus for the local mesh (`fenlei up --prometheus`): Debian's /usr/bin/prometheus
(scripts/debian-packages.sh installs it), run by the supervisor like any other process.

    <home>/telemetry/prometheus.yml   its configuration: one scrape job over file_sd targets
    <home>/telemetry/targets.json     every app's /metrics and every Envoy's /stats/prometheus,
                                      rewritten by the supervisor whenever an address changes
    <home>/telemetry/prometheus/      its time series database (kept across restarts)

Each target's `job` label is its workload (an Envoy's: "envoy"), `process` its record's name.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fenlei.local.state import ProcessRecord

BINARY = Path("/usr/bin/prometheus")
NAME = "prometheus"
ENVOY_KINDS = ("gateway", "proxy")
SCRAPE_INTERVAL = "5s"
MISSING = f"{BINARY} is missing: run scripts/debian-packages.sh (it installs Debian's prometheus package)"


class Files:
    def __init__(self, home: Path) -> None:
        self.directory = home / "telemetry"
        self.config = self.directory / "prometheus.yml"
        self.targets = self.directory / "targets.json"
        self.storage = self.directory / "prometheus"


def targets(processes: Iterable[ProcessRecord]) -> list[dict[str, Any]]:
    """file_sd target groups: one per process that exposes metrics, Prometheus itself too."""
    groups = []
    for record in processes:
        if record.kind == "app" and record.metrics:
            groups.append({"targets": [record.metrics], "labels": {"job": record.service, "process": record.name}})
        elif record.kind in ENVOY_KINDS and record.admin:
            labels = {"job": "envoy", "process": record.name, "__metrics_path__": "/stats/prometheus"}
            groups.append({"targets": [record.admin], "labels": labels})
        elif record.kind == NAME and record.address:
            groups.append({"targets": [record.address], "labels": {"job": NAME, "process": record.name}})
    return groups


def write_targets(home: Path, processes: Iterable[ProcessRecord]) -> None:
    """Rewrites targets.json when what it lists changed (Prometheus watches the file)."""
    path = Files(home).targets
    text = json.dumps(targets(processes), indent=1)
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def record(home: Path) -> ProcessRecord:
    """Prometheus on a free loopback port, with its configuration written."""
    files = Files(home)
    files.storage.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [{"job_name": "fenlei", "file_sd_configs": [{"files": [str(files.targets)], "refresh_interval": "30s"}]}],
    }
    files.config.write_text(json.dumps(config, indent=1))  # JSON is YAML
    address = f"127.0.0.1:{_free_port()}"
    command = (
        str(BINARY),
        f"--config.file={files.config}",
        f"--storage.tsdb.path={files.storage}",
        f"--web.listen-address={address}",
    )
    return ProcessRecord(NAME, NAME, command=command, address=address)


def ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _free_port() -> int:
    """A port free now; the process that gets it binds it a moment later (and keeps it across restarts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
