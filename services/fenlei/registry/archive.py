"""Backup and restore: the whole registry as one tar archive.

    checksums.json           {"format": "fenlei-registry", "format_version": 1, "files": {member: SHA-256}}
    registry.json            every row of every table (versions, tags, aliases and their history,
                             experiments with arms, assignments, predictions and events) and the
                             SHA-256 of every blob the versions use
    artifacts/sha256/<hex>   each blob once, named by its SHA-256

An import receives the whole archive into a temporary directory of the registry, verifies
its format and every checksum, checks it against the database (a version of the same name
and number with other artifacts refuses the whole import, naming it; one with the same
digest stays as it is), and only then changes anything: blobs first (unreferenced until the
commit), then one transaction, then the views. A crash before the commit leaves nothing the
registry shows (its next start removes the strays); after it, the next start writes the views.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import tarfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote
from fenlei.registry.schema import SCHEMA_VERSION
from fenlei.registry.store import SHA256, Registry, digest_of, link_or_copy, safe_relative, version_text
from fenlei.runtime.models import NAME_PATTERN, check_alias

FORMAT = "fenlei-registry"
FORMAT_VERSION = 1
CHECKSUMS = "checksums.json"
REGISTRY = "registry.json"
ARTIFACTS = "artifacts/sha256/"
CHUNK_BYTES = 1 << 20
# Every table, parents before children (the order rows are inserted in).
TABLES = (
    "models",
    "versions",
    "files",
    "tags",
    "aliases",
    "alias_moves",
    "experiments",
    "arms",
    "assignments",
    "predictions",
    "experiment_events",
)
MOVE_COLUMNS = ("sequence", "alias", "from_version", "to_version", "moved_by", "moved", "reason")
# The tables of one experiment's records (each names it in its column "experiment").
EXPERIMENT_TABLES = ("arms", "assignments", "predictions", "experiment_events")
# The columns an import reads of each table, and their types (SQLite checks the rest as it inserts).
REQUIRED: dict[str, dict[str, type]] = {
    "models": {"name": str, "last_version": int},
    "versions": {"name": str, "number": int, "digest": str},
    "files": {"name": str, "number": int, "path": str, "sha256": str},
    "tags": {"name": str, "number": int},
    "aliases": {"name": str, "alias": str, "number": int},
    "alias_moves": {"name": str, "sequence": int, "alias": str, "from_version": str, "to_version": str},
    "experiments": {"name": str, "model": str},
    "arms": {"experiment": str, "name": str, "target": str},
    "assignments": {"experiment": str},
    "predictions": {"experiment": str},
    "experiment_events": {"experiment": str},
}
NOT_OURS = "this is not a fenlei registry archive"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")


# ---------------------------------------------------------------------- export


def export_archive(registry: Registry) -> Generator[bytes, None, None]:
    """The registry as an archive, in chunks of about CHUNK_BYTES."""
    with registry.temporary_directory() as directory:
        tables = _snapshot(registry, directory)
        blobs = sorted({row["sha256"] for row in tables["files"]})
        exported = registry.clock()
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": SCHEMA_VERSION,
            "exported": exported,
            "tables": tables,
            "blobs": blobs,
        }
        registry_json = _json_bytes(document)
        checksums = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "files": {REGISTRY: hashlib.sha256(registry_json).hexdigest(), **{ARTIFACTS + sha: sha for sha in blobs}},
        }
        members: list[tuple[str, bytes | Path]] = [(CHECKSUMS, _json_bytes(checksums)), (REGISTRY, registry_json)]
        members += [(ARTIFACTS + sha, directory / sha) for sha in blobs]
        yield from _tar(members, int(exported))


def _snapshot(registry: Registry, directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row, and a hard link in `directory` to every blob the versions use, taken under
    the writer lock: no deletion removes a blob before the export has read it."""
    with registry.db.transaction() as conn:
        tables = {table: [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")] for table in TABLES}
        for sha in {row["sha256"] for row in tables["files"]}:
            link_or_copy(registry.blob(sha), directory / sha)
    return tables


def _tar(members: Sequence[tuple[str, bytes | Path]], mtime: int) -> Iterator[bytes]:
    """A ustar archive of the members (bytes, or a file to stream), in chunks."""
    pending = bytearray()
    for name, content in members:
        info = tarfile.TarInfo(name)
        info.size = len(content) if isinstance(content, bytes) else content.stat().st_size
        info.mtime = mtime
        info.mode = 0o444
        pending += info.tobuf(format=tarfile.USTAR_FORMAT)
        if isinstance(content, bytes):
            pending += content
        else:
            with open(content, "rb") as handle:
                for piece in iter(lambda: handle.read(CHUNK_BYTES), b""):
                    pending += piece
                    if len(pending) >= CHUNK_BYTES:
                        yield bytes(pending)
                        pending.clear()
        pending += bytes(-info.size % tarfile.BLOCKSIZE)
        if len(pending) >= CHUNK_BYTES:
            yield bytes(pending)
            pending.clear()
    pending += bytes(2 * tarfile.BLOCKSIZE)  # the end of the archive
    yield bytes(pending)


# ---------------------------------------------------------------------- import


class Upload:
    """An archive being received (`write` its chunks), then imported (`finish`). Closing it
    removes what it received."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._stack = contextlib.ExitStack()
        self.directory = self._stack.enter_context(registry.temporary_directory())
        self._file = self._stack.enter_context(open(self.directory / "archive.tar", "wb"))
        self.received = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.received += len(chunk)

    def finish(self) -> dict[str, Any]:
        """Verifies the archive whole, then merges it into the registry; returns what was
        added and what was there already: {"added", "unchanged", "aliases", "experiments"}."""
        self._file.close()
        if not self.received:
            raise InvalidInput(f"{NOT_OURS}: it is empty (send the bytes of `fenlei registry export`)")
        blobs, tables = _read(self.directory / "archive.tar", self.directory / "members")
        _check_rows(tables, blobs)
        with self.registry.db.read() as conn:
            plan = _plan(conn, tables)
        plan.refuse_clashes()
        for sha in plan.blobs(tables):  # the long part, outside the writer lock
            self.registry.take_blob(blobs[sha], sha)
        with self.registry.db.transaction() as conn:
            plan = _plan(conn, tables)  # the registry may have changed meanwhile
            plan.refuse_clashes()
            for sha in plan.blobs(tables):
                if not self.registry.blob(sha).is_file():  # a deletion took it away meanwhile
                    self.registry.take_blob(blobs[sha], sha)
            try:
                _merge(self.registry, conn, tables, plan)
            except sqlite3.IntegrityError as exc:
                raise _damaged(f"its rows do not fit together ({exc})") from exc
        return {
            "added": [f"{name}/{version_text(number)}" for name, number in sorted(plan.added)],
            "unchanged": [f"{name}/{version_text(number)}" for name, number in sorted(plan.unchanged)],
            "aliases": sum(1 for row in tables["aliases"] if row["name"] in plan.alias_models),
            "experiments": len(plan.experiments),
        }

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _damaged(why: str) -> InvalidInput:
    return InvalidInput(f"the archive is damaged and nothing was imported: {why}")


def _read(archive: Path, members: Path) -> tuple[dict[str, Path], dict[str, list[dict[str, Any]]]]:
    """Extracts and verifies every member: the format, and each checksum. Returns the blobs
    (SHA-256 → file) and the tables of registry.json."""
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as exc:
        raise InvalidInput(f"{NOT_OURS}: it is not a tar archive ({exc})") from exc
    found: dict[str, str] = {}
    with tar:
        try:
            for member in tar:
                name = member.name
                known = name in (CHECKSUMS, REGISTRY) or (name.startswith(ARTIFACTS) and SHA256.match(name[len(ARTIFACTS) :]) is not None)
                if not (known and member.isfile()):
                    raise InvalidInput(f"{NOT_OURS}: it holds {quote(name, 80)}, which a fenlei registry archive never does")
                if name in found:
                    raise _damaged(f"it holds {name} twice")
                found[name] = _extract(tar, member, members / name)
        except tarfile.TarError as exc:
            raise _damaged(f"{exc} (was it cut short?)") from exc
    if CHECKSUMS not in found:
        raise InvalidInput(f"{NOT_OURS}: it has no {CHECKSUMS}")
    checksums = _document(members / CHECKSUMS, CHECKSUMS)
    listed = checksums.get("files")
    if not isinstance(listed, dict):
        raise _damaged(f"its {CHECKSUMS} lists no files")
    for name in sorted(set(found) - {CHECKSUMS}):
        if name not in listed:
            raise _damaged(f"it holds {name}, which its {CHECKSUMS} does not list")
        if found[name] != listed[name] or (name.startswith(ARTIFACTS) and found[name] != name[len(ARTIFACTS) :]):
            raise _damaged(f"{name} does not match its checksum")
    missing = sorted(set(listed) - set(found))
    if missing:
        raise _damaged(f"it misses {', '.join(missing[:3])}{' and more' if len(missing) > 3 else ''}")
    document = _document(members / REGISTRY, REGISTRY)
    tables = document.get("tables")
    if not isinstance(tables, dict) or any(not isinstance(tables.get(table), list) for table in TABLES):
        raise _damaged(f"its {REGISTRY} lacks tables of the registry")
    blobs = {name[len(ARTIFACTS) :]: members / name for name in found if name.startswith(ARTIFACTS)}
    return blobs, tables


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Writes a member to target; returns its SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    with source, open(target, "wb") as out:
        for piece in iter(lambda: source.read(CHUNK_BYTES), b""):
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def _document(path: Path, what: str) -> dict[str, Any]:
    """checksums.json or registry.json, of this format and version."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(f"its {what} is not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise InvalidInput(f"{NOT_OURS}: its {what} names the format {quote(str(found))}, not {FORMAT!r}")
    if document.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"this registry archive has format_version {quote(str(document.get('format_version')))}, and this fenlei reads "
            f"format_version {FORMAT_VERSION}: import it with the fenlei that exported it, or a newer one"
        )
    return document


def _check_rows(tables: dict[str, list[dict[str, Any]]], blobs: dict[str, Path]) -> None:
    """What the checksums cannot tell: that the rows make sense. A version's files must be
    safe paths with their blobs in the archive, and its digest must be theirs."""
    for table, required in REQUIRED.items():
        for row in tables[table]:
            if not (isinstance(row, dict) and all(isinstance(row.get(column), kind) for column, kind in required.items())):
                raise _damaged(f"a row of {table} in its {REGISTRY} lacks one of {', '.join(required)}")
    files: dict[tuple[str, int], dict[str, str]] = {}
    for row in tables["files"]:
        if not safe_relative(row["path"]) or row["sha256"] not in blobs:
            raise _damaged(f"version {row['name']}/{version_text(row['number'])} names a file {quote(row['path'])} it does not hold")
        files.setdefault((row["name"], row["number"]), {})[row["path"]] = row["sha256"]
    for row in tables["versions"]:
        key = (row["name"], row["number"])
        if not (NAME_PATTERN.match(key[0]) and key[1] > 0):
            raise _damaged(f"a version is named {quote(key[0])} {key[1]}")
        if key not in files or digest_of(files[key]) != row["digest"]:
            raise _damaged(f"version {key[0]}/{version_text(key[1])} does not match its digest")
    for row in tables["aliases"]:
        try:
            check_alias(row["alias"])
        except InvalidInput as exc:
            raise _damaged(str(exc)) from exc


@dataclass
class _Plan:
    added: set[tuple[str, int]] = field(default_factory=set)
    unchanged: set[tuple[str, int]] = field(default_factory=set)
    alias_models: set[str] = field(default_factory=set)  # models whose aliases and history come from the archive
    experiments: set[str] = field(default_factory=set)
    clashes: list[str] = field(default_factory=list)

    def blobs(self, tables: dict[str, list[dict[str, Any]]]) -> list[str]:
        """The blobs of the versions it adds."""
        return sorted({row["sha256"] for row in tables["files"] if (row["name"], row["number"]) in self.added})

    def refuse_clashes(self) -> None:
        if self.clashes:
            shown = "; ".join(self.clashes[:5]) + (f"; and {len(self.clashes) - 5} more" if len(self.clashes) > 5 else "")
            raise FailedPrecondition(f"the archive clashes with this registry, so nothing was imported: {shown}")


def _plan(conn: sqlite3.Connection, tables: dict[str, list[dict[str, Any]]]) -> _Plan:
    """What the archive adds, what is there already, and what clashes."""
    plan = _Plan()
    for row in tables["versions"]:
        key = (row["name"], row["number"])
        here = conn.execute("SELECT digest FROM versions WHERE name = ? AND number = ?", key).fetchone()
        if here is None:
            plan.added.add(key)
        elif here["digest"] == row["digest"]:
            plan.unchanged.add(key)
        else:
            plan.clashes.append(
                f"{key[0]}/{version_text(key[1])} holds other artifacts here (digest {here['digest'][:12]}, not {row['digest'][:12]})"
            )
    archived_moves: dict[str, list[tuple[Any, ...]]] = {}
    for row in sorted(tables["alias_moves"], key=lambda move: move["sequence"]):
        archived_moves.setdefault(row["name"], []).append(tuple(row.get(column) for column in MOVE_COLUMNS))
    for name in sorted(archived_moves.keys() | {row["name"] for row in tables["aliases"]}):
        here = [
            tuple(r) for r in conn.execute(f"SELECT {', '.join(MOVE_COLUMNS)} FROM alias_moves WHERE name = ? ORDER BY sequence", (name,))
        ]
        archived = archived_moves.get(name, [])
        if not here and conn.execute("SELECT 1 FROM aliases WHERE name = ?", (name,)).fetchone() is None:
            plan.alias_models.add(name)
        elif here[: len(archived)] != archived:  # the same history, or this registry's went on from it: kept
            plan.clashes.append(f"the aliases of model {name} have a history here that the archive's is not the start of")
    for row in tables["experiments"]:
        here = conn.execute("SELECT model, created, created_by FROM experiments WHERE name = ?", (row["name"],)).fetchone()
        if here is None:
            running = conn.execute("SELECT name FROM experiments WHERE model = ? AND ended IS NULL", (row["model"],)).fetchone()
            if row.get("ended") is None and running is not None:
                plan.clashes.append(f"experiment {row['name']} would run on model {row['model']}, where {running['name']} runs")
            else:
                plan.experiments.add(row["name"])
        elif tuple(here) != (row["model"], row.get("created"), row.get("created_by")):
            plan.clashes.append(f"experiment {row['name']} is another experiment here")
    return plan


def _merge(registry: Registry, conn: sqlite3.Connection, tables: dict[str, list[dict[str, Any]]], plan: _Plan) -> None:
    """Inserts what the plan adds, in the caller's transaction; the views follow its commit."""
    columns = {table: {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")} for table in TABLES}

    def insert(table: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            unknown = sorted(set(row) - columns[table])
            if unknown:
                raise _damaged(f"a row of {table} has the unknown column {quote(unknown[0])}")
            names = sorted(row)
            conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", [row[n] for n in names])

    touched = {name for name, _ in plan.added} | plan.alias_models
    for row in tables["models"]:
        if row["name"] in touched:
            conn.execute(
                "INSERT INTO models (name, last_version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_version = MAX(last_version, excluded.last_version)",
                (row["name"], row["last_version"]),
            )
    for table in ("versions", "files", "tags"):
        insert(table, [row for row in tables[table] if (row["name"], row["number"]) in plan.added])
    for table in ("aliases", "alias_moves"):
        insert(table, [row for row in tables[table] if row["name"] in plan.alias_models])
    imported = {row["name"]: row for row in tables["experiments"] if row["name"] in plan.experiments}
    insert("experiments", list(imported.values()))
    for table in EXPERIMENT_TABLES:
        insert(table, [row for row in tables[table] if row["experiment"] in imported])
    for row in tables["arms"]:
        experiment = imported.get(row["experiment"])
        if experiment is not None and experiment.get("ended") is None:
            try:
                registry.resolve_in(conn, experiment["model"], row["target"])
            except (NotFound, InvalidInput) as exc:
                raise _damaged(f"arm {row['name']} of experiment {row['experiment']} routes to nothing: {exc}") from exc
    for name in sorted({name for name, _ in plan.added}):
        registry.write_views(name, sorted(number for model, number in plan.added if model == name))
    for name in sorted(touched | {row["model"] for row in imported.values()}):
        registry.write_routing(conn, name)
