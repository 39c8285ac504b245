"""What the local mesh records about itself, typed, and how a recorded pid is trusted.

    <home>/run/plan.json    what `fenlei up` asked for (written by the command, read by the supervisor)
    <home>/run/mesh.json    what runs (written by the supervisor alone, read by every command)

A pid alone names any process once the one it named is gone (a crash, a reboot). A
record therefore keeps the process's start time (in clock ticks since boot, from
/proc/<pid>/stat) and its command line; a pid is signalled only while both match.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CMDLINE_RETRIES = 100  # of a millisecond each


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    command: tuple[str, ...]

    @classmethod
    def of(cls, pid: int, command: tuple[str, ...] | None = None) -> ProcessIdentity | None:
        """The identity of a running process; None when there is no such process. command:
        the one it will run, for a child that may not have exec'd it yet (start time
        stays the same through exec)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            running = Path(f"/proc/{pid}/cmdline").read_bytes()
            for _ in range(CMDLINE_RETRIES):
                if running or command is not None:
                    break
                # Empty while an exec is setting up the new program's arguments (a child just started).
                time.sleep(0.001)
                running = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # The command (field 2) may hold spaces and parentheses: fields count from the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None  # exited, not yet reaped
        return cls(
            pid, int(fields[19]), command if command is not None else tuple(p.decode(errors="replace") for p in running.split(b"\0") if p)
        )

    def alive(self) -> bool:
        """The process this identity was taken of still runs (not another with its pid)."""
        return self.pid > 0 and ProcessIdentity.of(self.pid) == self

    def signal(self, signum: int) -> bool:
        """Sends signum if the process is still the one recorded; says whether it did."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


@dataclass
class ProcessRecord:
    """One process of the mesh: an app (a service instance), a proxy (a sidecar), the gateway
    or Prometheus."""

    name: str
    kind: str  # "app" | "proxy" | "gateway" | "prometheus"
    service: str = ""  # the workload (fenlei.services) of an app or of a sidecar
    instance: str = ""  # the instance an app is, or a sidecar fronts (e.g. classifier-v1-0)
    app: str = ""  # a sidecar's app record
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # what this process gets on top of the mesh's environment
    identity: ProcessIdentity | None = None
    address: str = ""  # where it serves (an app: gRPC; a sidecar: its mTLS port; the gateway: HTTP)
    admin: str = ""  # Envoy's admin address
    metrics: str = ""  # an app's Prometheus endpoint (host:port, /metrics)
    state: str = "starting"  # starting | running | backoff | stopping
    restarts: int = 0
    last_exit: str = ""  # e.g. "exit 1 at 2026-12-01T08:00:00Z", "signal SIGKILL at ..."

    @property
    def pid(self) -> int:
        return self.identity.pid if self.identity else 0

    def alive(self) -> bool:
        return self.identity is not None and self.identity.alive()


@dataclass
class Plan:
    """What the mesh should be. generation grows with every request the supervisor must act on."""

    sidecars: bool = True
    versions: dict[str, list[str]] = field(default_factory=dict)  # service → a version label per instance
    timeout: float = 60.0
    generation: int = 0
    prometheus: bool = False  # also run Prometheus, scraping every process


@dataclass
class MeshState:
    supervisor: ProcessIdentity | None = None
    sidecars: bool = True
    phase: str = "starting"  # starting | ready | failed | stopping
    error: str = ""  # why the last start or change failed
    generation: int = 0  # the plan generation the mesh has carried out
    gateway_settings: dict[str, Any] = field(default_factory=dict)  # as read at `fenlei up`, kept for later pushes
    processes: dict[str, ProcessRecord] = field(default_factory=dict)


class Files:
    def __init__(self, home: Path) -> None:
        self.run = home / "run"
        self.plan = self.run / "plan.json"
        self.state = self.run / "mesh.json"

    def read_plan(self) -> Plan:
        return Plan(**json.loads(self.plan.read_text()))

    def write_plan(self, plan: Plan) -> None:
        _write_atomically(self.plan, dataclasses.asdict(plan))

    def read_state(self) -> MeshState | None:
        try:
            raw = json.loads(self.state.read_text())
        except FileNotFoundError:
            return None
        processes = {name: _record(entry) for name, entry in raw.pop("processes").items()}
        supervisor = _identity(raw.pop("supervisor"))
        return MeshState(supervisor=supervisor, processes=processes, **raw)

    def write_state(self, state: MeshState) -> None:
        _write_atomically(self.state, dataclasses.asdict(state))


def _identity(raw: dict[str, Any] | None) -> ProcessIdentity | None:
    return ProcessIdentity(raw["pid"], raw["start_ticks"], tuple(raw["command"])) if raw else None


def _record(raw: dict[str, Any]) -> ProcessRecord:
    return ProcessRecord(**{**raw, "command": tuple(raw["command"]), "identity": _identity(raw["identity"])})


def _write_atomically(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1, ensure_ascii=False))
    os.replace(temporary, path)
