"""The registry's core: model versions with lineage, metrics and tags; aliases with the
history of every move; the content-addressed artifact store; and the views the data plane
serves from (fenlei.runtime.models reads them, never the database).

    <home>/registry/registry.db          the truth (fenlei.registry.schema)
    <home>/artifacts/sha256/<aa>/<hex>   blobs, named by their SHA-256 and never changed
    <home>/models/<name>/<vN>/           a version's view: hard links to its blobs + manifest.json
    <home>/models/<name>/routing.json    the model's aliases and running experiment

Every change is one transaction; the views it changes are written after its commit (temp +
rename) under the writer lock, so they follow the commits in order. A crash before a commit
leaves only blobs nobody references and temporary files, a crash after it views out of step:
`open`, before the registry serves, removes the first and rewrites the second.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote
from fenlei.registry import experiments
from fenlei.registry.schema import MIGRATIONS
from fenlei.runtime import artifacts
from fenlei.runtime.db import Database
from fenlei.runtime.models import (
    MANIFEST_FILE,
    NAME_PATTERN,
    PRODUCTION,
    ROUTING,
    ROUTING_FILE,
    VERSION_PATTERN,
    ModelStore,
    check_alias,
    check_name,
)
from fenlei.services import STAGE_NAMES

log = logging.getLogger("fenlei.registry")

# What the registry writes before renaming it into place; `open` removes what a crash left.
TEMPORARY = ".tmp-"
# manifest.json of a view the registry wrote says so; one without it predates the registry.
VIEW_SOURCE = "registry"
ADOPTED_BY = "adopted"  # created_by of a version found in a pre-registry home
# Metrics a search can filter and order by (fields of fenlei.v1.Metrics).
METRICS = ("accuracy", "macro_f1", "train_documents", "test_documents", "dimension", "train_seconds")
TAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
MAX_TAG_VALUE = 256
MAX_REASON = 1000
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def version_text(number: int | None) -> str:
    return f"v{number}" if number else ""


def version_number(version: str) -> int:
    match = VERSION_PATTERN.match(version)
    if not match:
        raise InvalidInput(f"{quote(version)} is not a version: versions look like v1, v2, ...")
    return int(match.group(1))


def digest_of(files: Mapping[str, str]) -> str:
    """SHA-256 over the paths and checksums of a version's files: equal digests, equal artifacts."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\n".encode())
    return digest.hexdigest()


def safe_relative(path: str) -> bool:
    """Whether path stays inside the directory it is relative to."""
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and path == str(Path(*parts))


def _listed(items: Sequence[str], count: int = 10) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[-count:])
    return f"{shown} and {len(items) - count} older" if len(items) > count else shown


def _checked_tags(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        _check_tag_key(key)
        if len(value) > MAX_TAG_VALUE:
            raise InvalidInput(f"tag {key!r}: a value has at most {MAX_TAG_VALUE} characters, not {len(value)}")
    return dict(tags)


def _check_tag_key(key: str) -> str:
    if not TAG_KEY.match(key or ""):
        raise InvalidInput(
            f"tag key {quote(key)} is not valid: 1-63 letters, digits, '_', '.', ':', '/' or '-', starting with a letter or digit"
        )
    return key


def _check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason has at most {MAX_REASON} characters, not {len(reason)}")
    return reason


def _metrics_of_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """fenlei.v1.Metrics (by field name) of the report a pre-registry manifest kept."""
    if not report:
        return {}
    per_class = {
        label: {
            "precision": float(row.get("precision", 0.0)),
            "recall": float(row.get("recall", 0.0)),
            "f1": float(row.get("f1-score", 0.0)),
            "support": int(row.get("support", 0)),
        }
        for label, row in dict(report.get("per_class", {})).items()
    }
    return {
        "accuracy": float(report.get("accuracy", 0.0)),
        "macro_f1": float(report.get("macro_f1", 0.0)),
        "per_class": per_class,
        "train_documents": int(report.get("train_documents", 0)),
        "test_documents": int(report.get("test_documents", 0)),
        "dimension": int(report.get("dimension", 0)),
        "train_seconds": float(report.get("seconds", 0.0)),
    }


def _fsync_written(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(source, target)  # another file system, or one without hard links


class Registry:
    """The registry of the models under `home`. Construct it, then `open()` it before use:
    that repairs what a crash left (and adopts a pre-registry home)."""

    def __init__(self, home: Path, clock: Callable[[], float] = time.time) -> None:
        self.home = Path(home)
        self.clock = clock
        self.store = ModelStore(self.home)
        self.blobs = self.home / "artifacts" / "sha256"
        self.work = self.home / "registry"
        self.db = Database(self.work / "registry.db", MIGRATIONS)

    # ------------------------------------------------------------------ start

    def open(self) -> dict[str, Any]:
        """What the registry does before it serves: removes what a crash left before a commit,
        adopts the versions of a pre-registry home, removes blobs no version references and
        rewrites every view out of step with the database. Returns what it did."""
        with self.db.transaction():  # the writer lock: nothing else writes meanwhile
            done: dict[str, Any] = {"temporaries_removed": self._remove_temporaries()}
        done["adopted"] = self._adopt()
        done["blobs_removed"] = self._remove_unreferenced_blobs()
        done.update(self._reconcile())
        log.info("registry opened", extra={"fields": done})
        return done

    def close(self) -> None:
        self.db.close()

    def _remove_temporaries(self) -> list[str]:
        found = [p for p in self.work.glob(f"{TEMPORARY}*")]
        found += [p for p in self.blobs.glob(f"{TEMPORARY}*")]
        found += [p for p in self.store.root.glob(f"*/{TEMPORARY}*")]
        for path in found:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return sorted(str(path.relative_to(self.home)) for path in found)

    def _adopt(self) -> list[str]:
        """Versions published before the registry (a manifest.json without its mark) become
        versions of the registry with their files, metrics and labels: nothing is lost."""
        adopted = []
        for name in self._model_directories():
            with self.db.read() as conn:
                known = {row[0] for row in conn.execute("SELECT number FROM versions WHERE name = ?", (name,))}
            found = []
            for version in self.store.versions(name):
                if version_number(version) not in known and self._source(name, version) == "":
                    taken = self._adoptable(name, version)
                    if taken is not None:
                        found.append((version_number(version), *taken))
            if not found:
                continue
            with self.db.transaction() as conn:
                for number, manifest, files in found:
                    self._insert_version(
                        conn,
                        name,
                        number,
                        created=float(manifest.get("created") or self.clock()),
                        created_by=ADOPTED_BY,
                        lineage={},
                        metrics=_metrics_of_report(manifest.get("report") or {}),
                        labels=[str(label) for label in manifest.get("labels", [])],
                        files=files,
                        tags={},
                        report={},
                    )
            adopted += [f"{name}/{version_text(number)}" for number, _, _ in found]
        return adopted

    def _adoptable(self, name: str, version: str) -> tuple[dict[str, Any], dict[str, tuple[str, int]]] | None:
        """A pre-registry version's manifest and its files taken into the blob store; None
        (and a warning) when it is damaged: it never served, and stays as it is."""
        directory = self.store.version_dir(name, version)
        try:
            self.store.verify(name, version)
            manifest = self.store.manifest(name, version)
            return manifest, {path: self.take_blob(directory / path, digest) for path, digest in manifest["files"].items()}
        except (artifacts.ArtifactError, FailedPrecondition) as exc:
            log.warning("a pre-registry version is damaged and not adopted: %s", exc, extra={"fields": {"model": name, "version": version}})
            return None

    def _source(self, name: str, version: str) -> str | None:
        """Who wrote the version's manifest: VIEW_SOURCE, "" before the registry, None when it is unreadable."""
        try:
            return str(self.store.manifest(name, version).get("source", ""))
        except (artifacts.ArtifactError, AttributeError):
            return None

    def _model_directories(self) -> list[str]:
        root = self.store.root
        return [p.name for p in sorted(root.iterdir()) if p.is_dir() and NAME_PATTERN.match(p.name)] if root.is_dir() else []

    def _remove_unreferenced_blobs(self) -> int:
        with self.db.transaction() as conn:
            referenced = {row[0] for row in conn.execute("SELECT DISTINCT sha256 FROM files")}
            unreferenced = [path for path in self.blobs.glob("*/*") if SHA256.match(path.name) and path.name not in referenced]
            for path in unreferenced:
                path.unlink()
        return len(unreferenced)

    def _reconcile(self) -> dict[str, list[str]]:
        with self.db.transaction() as conn:  # the writer lock while the views are compared and written
            keys = {(row[0], row[1]) for row in conn.execute("SELECT name, number FROM versions")}
            written = [f"{name}/{version_text(number)}" for name, number in sorted(keys) if self._write_view(name, number)]
            removed = []
            models = {name for name, _ in keys}
            for name in self._model_directories():
                if (self.store.model_dir(name) / ROUTING_FILE).is_file():
                    models.add(name)
                for version in self.store.versions(name):
                    if (name, version_number(version)) not in keys and self._source(name, version) == VIEW_SOURCE:
                        self._remove_view(name, version_number(version), [])  # deleted, and the crash came before its view went
                        removed.append(f"{name}/{version}")
            for name in sorted(models):
                self._write_routing_now(name)
        return {"views_written": written, "views_removed": removed}

    # ------------------------------------------------------------------ blobs and views

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def take_blob(self, source: Path, sha256: str = "") -> tuple[str, int]:
        """Puts the content of `source` into the blob store (a hard link where it can, so no
        bytes are copied) and returns its SHA-256 and size. With `sha256`, the content must
        have that checksum (FailedPrecondition otherwise)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        temporary = self.blobs / f"{TEMPORARY}{secrets.token_hex(8)}"
        link_or_copy(source, temporary)
        try:
            found = artifacts.sha256_file(temporary)
            if sha256 and found != sha256:
                raise FailedPrecondition(f"{source} changed: its SHA-256 is {found}, not {sha256}")
            size = temporary.stat().st_size
            target = self.blob(found)
            if not target.is_file():
                _fsync_written(temporary)
                os.chmod(temporary, 0o444)  # blobs never change: a view's file is no place to write
                target.parent.mkdir(exist_ok=True)
                os.rename(temporary, target)
                artifacts.fsync_directory(target.parent)
        finally:
            temporary.unlink(missing_ok=True)
        return found, size

    @contextmanager
    def temporary_directory(self) -> Iterator[Path]:
        """A directory of the registry's own for work in progress (an import, an export)."""
        directory = self.work / f"{TEMPORARY}{secrets.token_hex(8)}"
        directory.mkdir(parents=True)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def write_views(self, name: str, numbers: Iterable[int]) -> None:
        """Writes the views of these versions once the calling transaction commits."""
        for number in numbers:
            self.db.after_commit(("view", name, number), functools.partial(self._write_view, name, number))

    def write_routing(self, conn: sqlite3.Connection, name: str) -> None:
        """The one writer of routing.json. Inside a transaction, the model's routing is
        written once it commits; outside one (`conn` a read's), at once. Either way it is read
        afresh under the writer lock, so it always shows the last commit."""
        with self.db.transaction():
            self.db.after_commit(("routing", name), functools.partial(self._write_routing_now, name))

    def _manifest(self, conn: sqlite3.Connection, name: str, number: int) -> tuple[dict[str, Any], dict[str, int]]:
        """The manifest.json of a version's view, and the size of each of its files."""
        row = conn.execute("SELECT created, labels, digest FROM versions WHERE name = ? AND number = ?", (name, number)).fetchone()
        files = conn.execute("SELECT path, sha256, size FROM files WHERE name = ? AND number = ? ORDER BY path", (name, number)).fetchall()
        manifest = {
            "name": name,
            "version": version_text(number),
            "created": row["created"],
            "files": {file["path"]: file["sha256"] for file in files},
            "labels": json.loads(row["labels"]),
            "digest": row["digest"],
            "source": VIEW_SOURCE,
        }
        return manifest, {file["path"]: file["size"] for file in files}

    def _write_view(self, name: str, number: int) -> bool:
        """Makes the version's view what the database says; False when it already was."""
        with self.db.read() as conn:
            manifest, sizes = self._manifest(conn, name, number)
        model = self.store.model_dir(name)
        directory = model / version_text(number)
        on_disk = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} - {MANIFEST_FILE}
        if on_disk == set(sizes) and all((directory / path).stat().st_size == size for path, size in sizes.items()):
            try:
                current = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                current = None
            if current == manifest:
                return False
            if current is not None and current.get("files") == manifest["files"]:
                # The same files (an adopted version): only the manifest changes, in one rename.
                self._replace_file(directory / MANIFEST_FILE, manifest)
                return True
        model.mkdir(parents=True, exist_ok=True)
        building = model / f"{TEMPORARY}{secrets.token_hex(8)}"
        for path, sha256 in manifest["files"].items():
            target = building / path
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(self.blob(sha256), target)
        artifacts.write_json(building, "manifest", manifest)
        for folder in sorted({p for p in building.rglob("*") if p.is_dir()} | {building}):
            artifacts.fsync_directory(folder)
        if directory.exists():
            old = model / f"{TEMPORARY}{secrets.token_hex(8)}"
            os.rename(directory, old)
            os.rename(building, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(building, directory)
        artifacts.fsync_directory(model)
        return True

    def _replace_file(self, path: Path, value: Any) -> None:
        """Writes JSON to path atomically, its temporary file beside the directory it replaces
        a file of (a stray file inside a view would fail its verification)."""
        temporary = path.parent.parent / f"{TEMPORARY}{secrets.token_hex(8)}"
        temporary.write_bytes(json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        _fsync_written(temporary)
        os.replace(temporary, path)
        artifacts.fsync_directory(path.parent)

    def _remove_view(self, name: str, number: int, blobs: Iterable[str]) -> None:
        """Removes a deleted version's view (one rename: it is gone at once) and its blobs
        that no other version references."""
        model = self.store.model_dir(name)
        directory = model / version_text(number)
        if directory.exists():
            leaving = model / f"{TEMPORARY}{secrets.token_hex(8)}"
            os.rename(directory, leaving)
            artifacts.fsync_directory(model)
            shutil.rmtree(leaving, ignore_errors=True)
        for sha256 in blobs:
            self.blob(sha256).unlink(missing_ok=True)

    def _write_routing_now(self, name: str) -> None:
        with self.db.read() as conn:
            aliases = {
                row[0]: version_text(row[1])
                for row in conn.execute("SELECT alias, number FROM aliases WHERE name = ? ORDER BY alias", (name,))
            }
            experiment = experiments.routing_of(conn, name, functools.partial(self.resolve_in, conn, name))
            registered = conn.execute("SELECT 1 FROM versions WHERE name = ? LIMIT 1", (name,)).fetchone() is not None
        directory = self.store.model_dir(name)
        if not (registered or aliases or experiment):
            (directory / ROUTING_FILE).unlink(missing_ok=True)
            return
        directory.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(directory, ROUTING, {"aliases": aliases, "experiment": experiment})

    # ------------------------------------------------------------------ versions

    def register(
        self,
        name: str,
        draft_id: str,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any],
        tags: Mapping[str, str],
        labels: Sequence[str],
        created_by: str,
        report: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Makes a draft its model's next version: its files go into the blob store, one
        transaction numbers the version and records it (with the training's report), then
        its view appears."""
        check_name(name)
        tags = _checked_tags(tags)
        directory = self.store.draft_dir(name, draft_id)
        if not directory.is_dir():
            raise NotFound(f"model {name!r} has no draft {draft_id!r}: it was registered or discarded, or its training never made it")
        if not self.store.in_training(name, draft_id):
            raise FailedPrecondition(
                f"draft {draft_id} of model {name!r} is held by no running training (its process exited): "
                "it may be incomplete and is never registered; train again"
            )
        # As publishing always did: an interrupted write (.tmp) is no artifact, and the manifest is the view's own.
        paths = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".tmp") and p != directory / MANIFEST_FILE)
        relative = [str(p.relative_to(directory)) for p in paths]
        missing = [part for part in STAGE_NAMES if not any(path.startswith(f"{part}/") for path in relative)]
        if missing:
            raise FailedPrecondition(
                f"draft {draft_id} of model {name!r} has no {', '.join(missing)} part: fit every stage into it before registering it"
            )
        files = {path: self.take_blob(directory / path) for path in relative}
        with self.db.transaction() as conn:
            for path, (sha256, _) in files.items():
                if not self.blob(sha256).is_file():  # a deletion took it away meanwhile
                    self.take_blob(directory / path, sha256)
            row = conn.execute("SELECT last_version FROM models WHERE name = ?", (name,)).fetchone()
            # Past any version directory too (one published without the registry is adopted at its next start, never overwritten).
            on_disk = [version_number(p.name) for p in self.store.model_dir(name).iterdir() if VERSION_PATTERN.match(p.name)]
            number = max([row[0] if row else 0, *on_disk]) + 1
            self._insert_version(conn, name, number, self.clock(), created_by, lineage, metrics, list(labels), files, tags, report or {})
            return self._describe(conn, name, number)

    def _insert_version(
        self,
        conn: sqlite3.Connection,
        name: str,
        number: int,
        created: float,
        created_by: str,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any],
        labels: Sequence[str],
        files: Mapping[str, tuple[str, int]],
        tags: Mapping[str, str],
        report: Mapping[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO models (name, last_version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_version = MAX(last_version, excluded.last_version)",
            (name, number),
        )
        conn.execute(
            "INSERT INTO versions (name, number, created, created_by, lineage, metrics, labels, digest, size_bytes, report) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                number,
                created,
                created_by,
                json.dumps(dict(lineage), ensure_ascii=False, sort_keys=True),
                json.dumps(dict(metrics), ensure_ascii=False, sort_keys=True),
                json.dumps(list(labels), ensure_ascii=False),
                digest_of({path: sha256 for path, (sha256, _) in files.items()}),
                sum(size for _, size in files.values()),
                json.dumps(dict(report), ensure_ascii=False, sort_keys=True),
            ),
        )
        conn.executemany(
            "INSERT INTO files (name, number, path, sha256, size) VALUES (?, ?, ?, ?, ?)",
            [(name, number, path, sha256, size) for path, (sha256, size) in files.items()],
        )
        conn.executemany("INSERT INTO tags (name, number, key, value) VALUES (?, ?, ?, ?)", [(name, number, k, v) for k, v in tags.items()])
        self.write_views(name, [number])
        self.write_routing(conn, name)

    def get(self, name: str, reference: str = "") -> dict[str, Any]:
        """One version, with its training's report: `reference` a version, an alias, or empty
        for the one the name answers with."""
        with self.db.read() as conn:
            return self._describe(conn, name, self._number(conn, name, reference), with_report=True)

    def list_models(self) -> list[dict[str, Any]]:
        """Every model with versions: how many, its newest, its aliases and running experiment."""
        with self.db.read() as conn:
            aliases: dict[str, dict[str, str]] = {}
            for row in conn.execute("SELECT name, alias, number FROM aliases ORDER BY name, alias"):
                aliases.setdefault(row["name"], {})[row["alias"]] = version_text(row["number"])
            running = {row["model"]: row["name"] for row in conn.execute("SELECT model, name FROM experiments WHERE ended IS NULL")}
            return [
                {
                    "name": row["name"],
                    "versions": row["count"],
                    "newest_version": version_text(row["newest"]),
                    "aliases": aliases.get(row["name"], {}),
                    "experiment": running.get(row["name"], ""),
                }
                for row in conn.execute("SELECT name, COUNT(*) AS count, MAX(number) AS newest FROM versions GROUP BY name ORDER BY name")
            ]

    def search(
        self,
        name: str = "",
        tags: Sequence[str] = (),
        metric: str = "",
        min_value: float = 0.0,
        order_by_metric: bool = False,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Versions (of one model, or of all) that have every tag (`key` or `key=value`) and
        at least `min_value` of `metric`; newest first, or largest metric first."""
        where: list[str] = []
        parameters: list[Any] = []
        if name:
            where.append("name = ?")
            parameters.append(check_name(name))
        for tag in tags:
            key, has_value, value = tag.partition("=")
            _check_tag_key(key)
            where.append(
                "EXISTS (SELECT 1 FROM tags WHERE tags.name = versions.name AND tags.number = versions.number AND tags.key = ?"
                + (" AND tags.value = ?)" if has_value else ")")
            )
            parameters += [key, value] if has_value else [key]
        if metric and metric not in METRICS:
            raise InvalidInput(f"metric {quote(metric)} is not one a search knows: {', '.join(METRICS)}")
        if (min_value or order_by_metric) and not metric:
            raise InvalidInput(f"name the metric to filter or order by: {', '.join(METRICS)}")
        # The metric's name is one of METRICS, never the caller's text.
        value_of = f"COALESCE(json_extract(metrics, '$.{metric}'), 0)"
        if metric:
            where.append(f"{value_of} >= ?")
            parameters.append(min_value)
        order = f"{value_of} DESC, created DESC" if order_by_metric else "created DESC, name, number DESC"
        query = f"SELECT name, number FROM versions {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY {order}"
        if limit:
            query += f" LIMIT {int(limit)}"
        with self.db.read() as conn:
            return [self._describe(conn, row["name"], row["number"]) for row in conn.execute(query, parameters).fetchall()]

    def tag(self, name: str, reference: str, tags: Mapping[str, str], remove: Sequence[str] = ()) -> dict[str, Any]:
        """Sets `tags` and removes the tags `remove` names of a version; returns the version."""
        tags = _checked_tags(tags)
        both = sorted(set(tags) & {_check_tag_key(key) for key in remove})
        if both:
            raise InvalidInput(f"tag {both[0]!r} is both set and removed: do one or the other")
        with self.db.transaction() as conn:
            number = self._number(conn, name, reference)
            conn.executemany(
                "INSERT INTO tags (name, number, key, value) VALUES (?, ?, ?, ?) ON CONFLICT (name, number, key) DO UPDATE SET value = excluded.value",
                [(name, number, key, value) for key, value in tags.items()],
            )
            conn.executemany("DELETE FROM tags WHERE name = ? AND number = ? AND key = ?", [(name, number, key) for key in remove])
            return self._describe(conn, name, number)

    def delete(self, name: str, version: str) -> str:
        """Deletes a version nothing uses: its view goes, and its blobs that no other version
        references. Refused, naming them, while an alias or a running experiment uses it."""
        check_name(name)
        if not VERSION_PATTERN.match(version):
            raise InvalidInput(f"name the version to delete (v1, v2, ...), not {quote(version)}")
        number = version_number(version)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM versions WHERE name = ? AND number = ?", (name, number)).fetchone() is None:
                raise self._unknown(conn, name, version)
            aliases = [
                row[0] for row in conn.execute("SELECT alias FROM aliases WHERE name = ? AND number = ? ORDER BY alias", (name, number))
            ]
            users = experiments.users_of(conn, name).get(version, [])
            if aliases or users:
                uses = []
                if aliases:
                    uses.append(f"alias {', '.join(aliases)} points at it (move or delete the alias first)")
                if users:
                    uses.append(f"running experiment {', '.join(users)} routes traffic to it (end the experiment first)")
                raise FailedPrecondition(f"model {name!r} version {version!r} is in use and was not deleted: {'; '.join(uses)}")
            blobs = {row[0] for row in conn.execute("SELECT sha256 FROM files WHERE name = ? AND number = ?", (name, number))}
            conn.execute("DELETE FROM versions WHERE name = ? AND number = ?", (name, number))
            unreferenced = sorted(s for s in blobs if conn.execute("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1", (s,)).fetchone() is None)
            self.db.after_commit(("view", name, number), functools.partial(self._remove_view, name, number, unreferenced))
            self.write_routing(conn, name)
        return version

    # ------------------------------------------------------------------ aliases

    def set_alias(
        self, name: str, alias: str, reference: str, moved_by: str, reason: str = "", expected: str | None = None
    ) -> dict[str, Any]:
        """Points an alias at a version (or at another alias's version), creating it; with
        `expected`, only if it points at that version now ("": only if it does not exist)."""
        with self.db.transaction() as conn:
            return self.set_alias_in(conn, name, alias, reference, moved_by, reason, expected)

    def set_alias_in(
        self,
        conn: sqlite3.Connection,
        name: str,
        alias: str,
        reference: str,
        moved_by: str,
        reason: str = "",
        expected: str | None = None,
    ) -> dict[str, Any]:
        """set_alias inside the caller's transaction (an experiment's promotion)."""
        check_alias(alias)
        _check_reason(reason)
        if not reference:
            raise InvalidInput(f"name the version alias {alias!r} is to point at (v3, or another alias)")
        target = self._number(conn, name, reference)
        current = self._alias(conn, name, alias)
        if expected is not None:
            if expected and not VERSION_PATTERN.match(expected):
                raise InvalidInput(
                    f"expected_version is a version (v3), or empty for an alias that does not exist yet; not {quote(expected)}"
                )
            if version_text(current) != expected:
                now = f"points at {version_text(current)}" if current else "does not exist"
                wanted = f"at {expected}" if expected else "nowhere"
                raise FailedPrecondition(
                    f"alias {alias!r} of model {name!r} {now}, not {wanted} as expected: it moved meanwhile; read it again and decide anew"
                )
        return self._move(conn, name, alias, current, target, moved_by, reason)

    def rollback(self, name: str, alias: str, moved_by: str, reason: str = "") -> dict[str, Any]:
        """Moves an alias back to where it pointed before its last move."""
        check_alias(alias)
        _check_reason(reason)
        with self.db.transaction() as conn:
            self._number(conn, name, "")  # NotFound for an unknown model
            last = conn.execute(
                "SELECT sequence, from_version, to_version FROM alias_moves WHERE name = ? AND alias = ? ORDER BY sequence DESC LIMIT 1",
                (name, alias),
            ).fetchone()
            if last is None:
                raise NotFound(f"model {name!r} has no alias {alias!r} and never had; its aliases: {_listed(self._aliases(conn, name))}")
            if not last["from_version"]:
                raise FailedPrecondition(
                    f"alias {alias!r} of model {name!r} was created by its last move (move {last['sequence']}, to {last['to_version']}): "
                    "there is no earlier version to roll back to"
                )
            previous = version_number(last["from_version"])
            if conn.execute("SELECT 1 FROM versions WHERE name = ? AND number = ?", (name, previous)).fetchone() is None:
                raise FailedPrecondition(
                    f"alias {alias!r} of model {name!r} pointed at {last['from_version']} before its last move, "
                    f"but {last['from_version']} has been deleted: point the alias at a version instead"
                )
            why = reason or f"rollback of move {last['sequence']}"
            return self._move(conn, name, alias, self._alias(conn, name, alias), previous, moved_by, why)

    def delete_alias(self, name: str, alias: str, moved_by: str, reason: str = "") -> dict[str, Any]:
        """Removes an alias (a move to nothing, in its history); refused while a running experiment uses it."""
        check_alias(alias)
        _check_reason(reason)
        with self.db.transaction() as conn:
            current = self._alias(conn, name, alias)
            if current is None:
                self._number(conn, name, "")  # NotFound for an unknown model
                raise NotFound(f"model {name!r} has no alias {alias!r}; its aliases: {_listed(self._aliases(conn, name))}")
            users = experiments.users_of(conn, name).get(alias)
            if users:
                raise FailedPrecondition(
                    f"alias {alias!r} of model {name!r} is the target of an arm of running experiment {', '.join(users)}: end it first"
                )
            return self._move(conn, name, alias, current, None, moved_by, reason)

    def history(self, name: str, alias: str = "") -> list[dict[str, Any]]:
        """Every move of the model's aliases (or of one), oldest first."""
        check_name(name)
        if alias:
            check_alias(alias)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM alias_moves WHERE name = ? AND (? = '' OR alias = ?) ORDER BY sequence", (name, alias, alias)
            ).fetchall()
            if not rows:
                self._number(conn, name, "")  # NotFound for an unknown model
            return [self._move_of(row) for row in rows]

    def _move(
        self, conn: sqlite3.Connection, name: str, alias: str, current: int | None, target: int | None, moved_by: str, reason: str
    ) -> dict[str, Any]:
        if target is None:
            conn.execute("DELETE FROM aliases WHERE name = ? AND alias = ?", (name, alias))
        else:
            conn.execute(
                "INSERT INTO aliases (name, alias, number) VALUES (?, ?, ?) ON CONFLICT (name, alias) DO UPDATE SET number = excluded.number",
                (name, alias, target),
            )
        conn.execute(
            "INSERT INTO alias_moves (name, sequence, alias, from_version, to_version, moved_by, moved, reason) "
            "SELECT ?, COALESCE(MAX(sequence), 0) + 1, ?, ?, ?, ?, ?, ? FROM alias_moves WHERE name = ?",
            (name, alias, version_text(current), version_text(target), moved_by, self.clock(), reason, name),
        )
        self.write_routing(conn, name)
        row = conn.execute("SELECT * FROM alias_moves WHERE name = ? ORDER BY sequence DESC LIMIT 1", (name,)).fetchone()
        return self._move_of(row)

    @staticmethod
    def _move_of(row: sqlite3.Row) -> dict[str, Any]:
        return {key: row[key] for key in ("name", "alias", "from_version", "to_version", "moved_by", "moved", "reason", "sequence")}

    # ------------------------------------------------------------------ references

    def resolve_in(self, conn: sqlite3.Connection, name: str, reference: str) -> str:
        """The version (v3) `reference` names now: a version, an alias, or empty for the
        "production" alias's, else the newest version. NotFound names the model's versions
        and aliases."""
        return version_text(self._number(conn, name, reference))

    def _number(self, conn: sqlite3.Connection, name: str, reference: str) -> int:
        check_name(name)
        if not reference:
            production = self._alias(conn, name, PRODUCTION)
            if production is not None:
                return production
            newest = conn.execute("SELECT MAX(number) FROM versions WHERE name = ?", (name,)).fetchone()[0]
            if newest is None:
                raise self._unknown(conn, name, reference)
            return int(newest)
        if VERSION_PATTERN.match(reference):
            number = version_number(reference)
            if conn.execute("SELECT 1 FROM versions WHERE name = ? AND number = ?", (name, number)).fetchone() is None:
                raise self._unknown(conn, name, reference)
            return number
        check_alias(reference)
        target = self._alias(conn, name, reference)
        if target is None:
            raise self._unknown(conn, name, reference)
        return target

    @staticmethod
    def _alias(conn: sqlite3.Connection, name: str, alias: str) -> int | None:
        row = conn.execute("SELECT number FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _aliases(conn: sqlite3.Connection, name: str) -> list[str]:
        return [row[0] for row in conn.execute("SELECT alias FROM aliases WHERE name = ? ORDER BY alias", (name,))]

    def _unknown(self, conn: sqlite3.Connection, name: str, reference: str) -> NotFound:
        versions = [version_text(row[0]) for row in conn.execute("SELECT number FROM versions WHERE name = ? ORDER BY number", (name,))]
        if not versions:
            # Only the name asked for: a caller of one model learns nothing of the others.
            return NotFound(f"no model named {name!r}: check the name, or train and register it with `fenlei train FILE --name {name}`")
        return NotFound(
            f"model {name!r} has no version or alias {quote(reference)}; versions: {_listed(versions)}; "
            f"aliases: {_listed(self._aliases(conn, name))}"
        )

    def _describe(self, conn: sqlite3.Connection, name: str, number: int, with_report: bool = False) -> dict[str, Any]:
        """A version as the API shows it; the report (large) only when asked for."""
        row = conn.execute("SELECT * FROM versions WHERE name = ? AND number = ?", (name, number)).fetchone()
        tags = {
            tag[0]: tag[1] for tag in conn.execute("SELECT key, value FROM tags WHERE name = ? AND number = ? ORDER BY key", (name, number))
        }
        aliases = [
            alias[0] for alias in conn.execute("SELECT alias FROM aliases WHERE name = ? AND number = ? ORDER BY alias", (name, number))
        ]
        return {
            "name": name,
            "version": version_text(number),
            "created": row["created"],
            "created_by": row["created_by"],
            "lineage": json.loads(row["lineage"]),
            "metrics": json.loads(row["metrics"]),
            "tags": tags,
            "aliases": aliases,
            "labels": json.loads(row["labels"]),
            "digest": row["digest"],
            "size_bytes": row["size_bytes"],
        } | ({"report": json.loads(row["report"])} if with_report else {})
