"""Live configuration: the settings an operator changes while the mesh runs, the gateway's
deny list, and the history of every change (who, when, what, before, after, why).

    <home>/config/config.db      the truth (this service is its only writer)
    <home>/config/live.json      the view the mesh follows (fenlei.runtime.live), rewritten after each commit

The services apply log levels and the batch limit from the view; the local mesh's
supervisor (the control plane) turns the gateway's limits, the deny list and the mesh
scenarios into the proxies' configuration (file xDS, no restart).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fenlei import services
from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote, quote_list
from fenlei.runtime import live
from fenlei.runtime.db import Database, Migrations

MIGRATIONS: Migrations = (
    (
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE deny_rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subject TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',  -- a network in CIDR form
            reason TEXT NOT NULL,
            created REAL NOT NULL,
            created_by TEXT NOT NULL
        )""",
        """CREATE TABLE changes (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            who TEXT NOT NULL,
            key TEXT NOT NULL,
            before TEXT NOT NULL,
            after TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
    ),
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
EXPERIMENTS = "experiments."
MAX_TEXT = 256  # a subject's, a reason's characters
HISTORY_LIMIT = 50


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise InvalidInput(f"{quote(value)} is no log level; use one of {', '.join(LOG_LEVELS)}")
    return level


def _count(low: int, high: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            number = int(value.strip().replace("_", "").replace(",", ""))
        except ValueError:
            raise InvalidInput(f"{quote(value)} is not a whole number") from None
        if not low <= number <= high:
            raise InvalidInput(f"{number:,} is out of range: use {low:,} to {high:,}")
        return str(number)

    return parse


@dataclass(frozen=True)
class Key:
    name: str
    description: str
    parse: Callable[[str], str]  # the value in its canonical form, or InvalidInput saying what is wrong
    choices: tuple[str, ...] = ()  # the values it takes, where they are a list


def _keys() -> dict[str, Key]:
    keys = [
        Key("log_level", "log level of every service", _log_level, LOG_LEVELS),
        *(
            Key(f"log_level.{w.name}", f"log level of the {w.name} service, over log_level", _log_level, LOG_LEVELS)
            for w in services.WORKLOADS
        ),
        Key("max_batch_documents", "documents one call may carry to a stage or the pipeline", _count(1, 1_000_000)),
        Key("gateway.rate_limit_per_second", "calls per second one caller may make to one method at the gateway", _count(1, 1_000_000)),
        Key("gateway.rate_limit_burst", "calls one caller may make at once to one method at the gateway", _count(1, 1_000_000)),
        Key("gateway.max_request_bytes", "the largest request body the gateway takes", _count(1024, 1 << 30)),
        Key(live.SCENARIOS, "scenarios of the mesh policy applied on top of its defaults, comma-separated", lambda value: value),
    ]
    return {key.name: key for key in keys}


KEYS = _keys()


def deny_key(rule_id: int) -> str:
    return f"deny.{rule_id}"


class Scenarios(Protocol):
    """The mesh scenarios this service can see (the local mesh's policy)."""

    def names(self) -> list[str]: ...

    def check(self, names: list[str]) -> None:
        """Raises naming what is wrong: an unknown name, a mesh that cannot carry scenarios."""


class LiveConfig:
    def __init__(self, home: Path, scenarios: Scenarios) -> None:
        self.home = Path(home)
        self.directory = self.home / "config"
        self.view = live.view_path(home)
        self.scenarios = scenarios
        self.db = Database(self.directory / "config.db", MIGRATIONS, what="configuration")
        self._write_view()  # a view lost or left behind by a crash is made again from the truth

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ reading
    def settings(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            values = dict(conn.execute("SELECT key, value FROM settings").fetchall())
        return [
            {
                "key": key.name,
                "value": values.get(key.name, ""),
                "description": key.description,
                "choices": self.scenarios.names() if key.name == live.SCENARIOS else list(key.choices),
            }
            for key in KEYS.values()
        ]

    def deny_rules(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(row) for row in conn.execute("SELECT * FROM deny_rules ORDER BY id")]

    def sequence(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute("SELECT coalesce(max(sequence), 0) FROM changes").fetchone()[0])

    def changes(self, limit: int = 0, key: str = "") -> list[dict[str, Any]]:
        limit = limit or HISTORY_LIMIT
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM changes WHERE ? = '' OR key = ? OR key LIKE ? || '.%' ORDER BY sequence DESC LIMIT ?",
                (key, key, key, limit),
            ).fetchall()
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ changing
    def set(self, key: str, value: str, who: str, reason: str = "") -> dict[str, Any]:
        """Sets one key ("" unsets it); the change is recorded, a change to the same value too."""
        if key not in KEYS:
            raise NotFound(f"no setting named {quote(key)}; the settings are {quote_list(list(KEYS), count=len(KEYS))}")
        canonical = KEYS[key].parse(value) if value.strip() else ""
        if key == live.SCENARIOS:
            canonical = ",".join(_names(canonical))
            self.scenarios.check(_names(canonical))
        with self.db.transaction() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            before = row["value"] if row else ""
            if canonical:
                conn.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, canonical))
            else:
                conn.execute("DELETE FROM settings WHERE key = ?", (key,))
            return self._record(conn, who, key, before, canonical, reason)

    def record(self, who: str, key: str, before: str, after: str, reason: str) -> dict[str, Any]:
        """A change made elsewhere (an experiment's weights, in the registry), for the history."""
        with self.db.transaction() as conn:
            return self._record(conn, who, key, before, after, reason)

    def add_deny_rule(self, who: str, *, subject: str = "", address: str = "", reason: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        subject, address = subject.strip(), address.strip()
        if bool(subject) == bool(address):
            raise InvalidInput("a deny rule names either a token subject or a client address (an IP address or a network)")
        if subject:
            _check_text(subject, "a subject")
        else:
            address = _network(address)
        reason = _check_text(reason.strip(), "a reason") if reason.strip() else ""
        with self.db.transaction() as conn:
            same = conn.execute("SELECT id FROM deny_rules WHERE subject = ? AND address = ?", (subject, address)).fetchone()
            if same:
                raise FailedPrecondition(f"deny rule {same['id']} already blocks {describe({'subject': subject, 'address': address})}")
            cursor = conn.execute(
                "INSERT INTO deny_rules (subject, address, reason, created, created_by) VALUES (?, ?, ?, ?, ?)",
                (subject, address, reason, time.time(), who),
            )
            rule = dict(conn.execute("SELECT * FROM deny_rules WHERE id = ?", (cursor.lastrowid,)).fetchone())
            change = self._record(conn, who, deny_key(rule["id"]), "", describe(rule), reason)
        return rule, change

    def remove_deny_rule(self, rule_id: int, who: str, reason: str = "") -> dict[str, Any]:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM deny_rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                raise NotFound(f"no deny rule {rule_id}; `fenlei config deny list` shows them")
            conn.execute("DELETE FROM deny_rules WHERE id = ?", (rule_id,))
            return self._record(conn, who, deny_key(rule_id), describe(dict(row)), "", reason)

    def _record(self, conn: Any, who: str, key: str, before: str, after: str, reason: str) -> dict[str, Any]:
        cursor = conn.execute(
            "INSERT INTO changes (time, who, key, before, after, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), who or "anonymous", key, before, after, reason),
        )
        self.db.after_commit("view", self._write_view)
        return dict(conn.execute("SELECT * FROM changes WHERE sequence = ?", (cursor.lastrowid,)).fetchone())

    def _write_view(self) -> None:
        values = {entry["key"]: entry["value"] for entry in self.settings() if entry["value"]}
        rules = [{"id": r["id"], "subject": r["subject"], "address": r["address"]} for r in self.deny_rules()]
        live.write_view(self.view, live.View(self.sequence(), values, rules))


def describe(rule: dict[str, Any]) -> str:
    return f"subject {rule['subject']}" if rule["subject"] else f"address {rule['address']}"


def _names(value: str) -> list[str]:
    return [name.strip().removesuffix(".yaml") for name in value.split(",") if name.strip()]


def _check_text(text: str, what: str) -> str:
    if len(text) > MAX_TEXT or any(not character.isprintable() for character in text):
        raise InvalidInput(f"{what} is {MAX_TEXT} printable characters at most (no line breaks or control characters)")
    return text


def _network(address: str) -> str:
    try:
        return str(ipaddress.ip_network(address, strict=False))
    except ValueError:
        raise InvalidInput(f"{quote(address)} is no IP address or network; e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32") from None
