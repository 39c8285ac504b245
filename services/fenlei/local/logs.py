"""The local mesh's logs, merged: every line of <home>/logs/*.log in time order, filtered
by process, trace and time (`fenlei logs`).

    <home>/logs/<process>.log         what each process writes (the services' JSON lines, Envoy's own log)
    <home>/logs/<proxy>.access.log    an Envoy's access log, JSON lines with the services' keys

Lines are sorted by their "time" (UTC, milliseconds: they sort as text). Envoy's own log
lines say their time in front ([2026-12-01 14:13:59.688], local time); any other line that
is not JSON (a traceback) keeps its place after the line before it in its file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fenlei import services
from fenlei.errors import InvalidInput
from fenlei.runtime.logging import format_time

ACCESS_SUFFIX = ".access.log"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ENVOY_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\]")


def directory(home: Path) -> Path:
    return home / "logs"


def access_log_file(home: Path, proxy: str) -> Path:
    return directory(home) / f"{proxy}{ACCESS_SUFFIX}"


def process_of(path: Path) -> str:
    """The process a log file belongs to: pipeline.log and pipeline-sidecar.access.log name theirs."""
    name = path.name
    return name.removesuffix(ACCESS_SUFFIX) if name.endswith(ACCESS_SUFFIX) else name.removesuffix(".log")


@dataclass(frozen=True)
class Line:
    time: str  # "" when neither it nor a line before it in its file says
    file: str  # the file's name
    text: str  # as written
    entry: dict[str, Any] | None  # the JSON object, None for a line that is not one

    def field(self, key: str) -> str:
        value = self.entry.get(key) if self.entry else None
        return "" if value is None else str(value)  # Envoy writes null for a missing header


@dataclass(frozen=True)
class Selection:
    """Which lines: of these processes or services (none: all), of this trace, since this time."""

    names: frozenset[str] = frozenset()
    trace_id: str = ""
    since: str = ""

    def __call__(self, line: Line) -> bool:
        if self.names and not ({line.field("service"), process_of(Path(line.file))} & self.names):
            return False
        if self.trace_id and line.field("trace_id").lower() != self.trace_id.lower():
            return False
        return not self.since or line.time >= self.since


def since(text: str, now: float | None = None) -> str:
    """--since: a duration back from now (90s, 10m, 2h, 1d) or an ISO time (UTC unless it
    names its zone), as a log line's time."""
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip())
    if match:
        return format_time(now - timedelta(**{_UNITS[match[2]]: float(match[1])}).total_seconds())
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--since takes a duration (90s, 10m, 2h, 1d) or an ISO time (2026-12-01T14:00:00), not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_time(moment.timestamp())


def check(home: Path, names: Iterable[str]) -> None:
    """A home without logs, or names that are neither a service nor a process with a log
    there, are mistakes to report, not an empty answer."""
    if not directory(home).is_dir():
        raise InvalidInput(f"no logs under {directory(home)}: start the mesh there with `fenlei up` (or set FENLEI_HOME)")
    logged = {process_of(path) for path in directory(home).glob("*.log")}
    unknown = sorted(set(names) - logged - set(services.BY_NAME))
    if unknown:
        known = ", ".join(sorted(logged)) or "none yet"
        raise InvalidInput(f"no service or process named {', '.join(unknown)}; processes with logs: {known}")


@dataclass
class _File:
    """One log file read so far: where to go on, the unfinished last line, the last time seen."""

    path: Path
    offset: int = 0
    partial: bytes = b""
    time: str = ""

    def read(self) -> list[Line]:
        try:
            with open(self.path, "rb") as handle:
                if handle.seek(0, 2) < self.offset:
                    self.offset, self.partial = 0, b""  # truncated or replaced: read it again
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [self._line(raw.decode("utf-8", errors="replace")) for raw in complete if raw.strip()]

    def _line(self, text: str) -> Line:
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            entry = None
            envoy = _ENVOY_TIME.match(text)
            if envoy:
                self.time = format_time(time.mktime(time.strptime(envoy[1], "%Y-%m-%d %H:%M:%S")) + int(envoy[2]) / 1000)
        elif isinstance(entry.get("time"), str):
            self.time = entry["time"]
        return Line(self.time, self.path.name, text, entry)


@dataclass
class Reader:
    """Reads <home>/logs/*.log, and then what is added to them (follow)."""

    home: Path
    files: dict[Path, _File] = field(default_factory=dict)

    def read(self) -> list[Line]:
        """The lines written since the last read (all of them the first time), in time order."""
        for path in sorted(directory(self.home).glob("*.log")):
            self.files.setdefault(path, _File(path))
        lines = [line for log in self.files.values() for line in log.read()]
        return sorted(lines, key=lambda line: line.time)  # stable: a file's lines keep their order


def merged(home: Path, selection: Selection) -> list[Line]:
    return [line for line in Reader(home).read() if selection(line)]


def follow(home: Path, selection: Selection, interval: float = 0.25) -> Iterator[list[Line]]:
    """What is there, then whatever is written later, batch by batch; forever."""
    reader = Reader(home)
    while True:
        yield [line for line in reader.read() if selection(line)]
        time.sleep(interval)


# Keys every line has, shown in its own columns or not at all.
_SHOWN_FIRST = ("time", "service", "level", "message")
_NOT_SHOWN = ("logger",)


def render(line: Line) -> str:
    """time service level message key=value ...; a line that is not JSON as it is, after its file's name."""
    if line.entry is None:
        return f"{line.file}: {line.text}"
    rest = " ".join(
        f"{key}={_value(value)}" for key, value in line.entry.items() if key not in (*_SHOWN_FIRST, *_NOT_SHOWN) and value not in ("", None)
    )
    message = line.field("message")
    message = json.dumps(message, ensure_ascii=False) if "\n" in message else message  # an entry stays one line
    return " ".join(filter(None, (line.field("time"), line.field("service"), line.field("level"), message, rest)))


def _value(value: Any) -> str:
    plain = isinstance(value, str) and value and not any(character.isspace() for character in value)
    return value if plain else json.dumps(value, ensure_ascii=False)
