"""The live configuration as the mesh follows it: a view the config service writes after
each change (<home>/config/live.json) and every process reads when it changes.

A service applies what is its own (its log level, the batch limit); the local mesh's
supervisor applies the gateway's limits, the deny list and the mesh scenarios. A view that
is missing or unreadable changes nothing: a process keeps what it runs with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fenlei.runtime.settings import ServiceSettings

log = logging.getLogger("fenlei.live")

SCENARIOS = "mesh.scenarios"
GATEWAY = "gateway."
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class View:
    sequence: int = 0
    settings: dict[str, str] = field(default_factory=dict)  # key → value, only those set
    deny_rules: list[dict[str, Any]] = field(default_factory=list)  # {id, subject, address}

    def log_level(self, service: str) -> str:
        return self.settings.get(f"log_level.{service}") or self.settings.get("log_level", "")

    def scenarios(self) -> list[str]:
        return [name for name in self.settings.get(SCENARIOS, "").split(",") if name]

    def gateway(self, settings: Any) -> Any:
        """Gateway settings with the live values of their fields."""
        fields = {f.name for f in dataclasses.fields(settings)}
        changed = {key.removeprefix(GATEWAY): int(value) for key, value in self.settings.items() if key.startswith(GATEWAY)}
        return dataclasses.replace(settings, **{name: value for name, value in changed.items() if name in fields})


def view_path(home: Path) -> Path:
    return Path(home) / "config" / "live.json"


def applied_path(home: Path) -> Path:
    """Where the local mesh's supervisor says which change its proxies have: there while it runs."""
    return Path(home) / "config" / "applied.json"


def write_applied(home: Path, sequence: int) -> None:
    path = applied_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"sequence": sequence}))
    os.replace(temporary, path)


async def applied(home: Path, sequence: int, timeout: float) -> bool:
    """Waits until the proxies have change `sequence` (at most timeout seconds): False when
    they have not by then, or no local mesh follows this home (on Kubernetes)."""
    path = applied_path(home)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if json.loads(path.read_text())["sequence"] >= sequence:
                return True
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError):
            pass  # being replaced
        await asyncio.sleep(0.05)
    return False


def write_view(path: Path, view: View) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(dataclasses.asdict(view), ensure_ascii=False))
    os.replace(temporary, path)


class Follower:
    """Reads the view when its file changed since the last look."""

    def __init__(self, home: Path) -> None:
        self.path = view_path(home)
        self._seen: tuple[int, int] | None = None

    def changed(self) -> View | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return None
        try:
            view = View(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError) as error:
            log.warning(
                "the live configuration cannot be read; keeping the last", extra={"fields": {"path": str(self.path), "error": str(error)}}
            )
            return None
        self._seen = seen
        return view


# This process's live values, over its settings (batch_limit).
_current = View()


def batch_limit(settings: ServiceSettings) -> int:
    value = _current.settings.get("max_batch_documents")
    return int(value) if value else settings.max_batch_documents


def apply(service: str, settings: ServiceSettings, view: View) -> None:
    global _current
    previous, _current = _current, view
    level = view.log_level(service) or settings.log_level
    before = previous.log_level(service) or settings.log_level
    if level != before:
        root = logging.getLogger()
        # Said at whichever of the two levels shows more, so that the change is always in the log.
        root.setLevel(min(logging.getLevelName(before.upper()), logging.getLevelName(level.upper())))
        log.warning("log level changed", extra={"fields": {"from": before, "to": level, "sequence": view.sequence}})
        root.setLevel(level.upper())


async def follow(service: str, settings: ServiceSettings) -> None:
    """Applies the view whenever it changes, for as long as the service runs."""
    follower = Follower(settings.home)
    while True:
        view = await asyncio.to_thread(follower.changed)
        if view is not None:
            apply(service, settings, view)
        await asyncio.sleep(POLL_SECONDS)
