"""The model store: versions of named models on disk, and the stages' caches of them.

    <home>/models/<name>/<version>/<part>/...      a published version, one part per stage
    <home>/models/<name>/<version>/manifest.json   every other file of it with its SHA-256
    <home>/models/<name>/.drafts/<draft>/<part>/   a version being trained

Training fills a draft, a directory under an id nobody can guess, and holds a lease on it
(a flock the kernel drops when the training process dies, kill -9 included). Publishing
syncs every file, writes the manifest last and renames the draft into place as the next
version, so a version directory is complete from the moment it exists. A stage loads a
draft only by its id (training evaluates before it publishes); a version, named or
"newest", is only ever a published one, and a stage checks its files against the manifest
before it serves them.

A draft whose lease is free (its training died) and a version directory without a manifest
(left by fenlei before drafts) can never serve: `incomplete` lists them, and the next
training of the model removes them.

With the model registry (fenlei.registry), the versions and routing.json are views the
registry writes after each commit of its database, and the data plane reads only them:

    <home>/models/<name>/routing.json   {"aliases": {alias: version}, "experiment": null | {...}}

A reference is a version (v3), an alias of routing.json (production), a draft id, or empty:
the "production" alias when the model has one, else its newest version.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import gc
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound, quote
from fenlei.runtime import artifacts

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
VERSION_PATTERN = re.compile(r"^v([1-9][0-9]{0,8})$")
DRAFT_PATTERN = re.compile(r"^draft-[0-9a-f]{32}$")
MANIFEST = "manifest"
MANIFEST_FILE = f"{MANIFEST}.json"
DRAFTS = ".drafts"  # not a model version name, nor a model name
ROUTING = "routing"
ROUTING_FILE = f"{ROUTING}.json"
PRODUCTION = "production"  # the alias a reference naming no version answers with
LOOKS_LIKE_VERSION = re.compile(r"^v[0-9]+$")

log = logging.getLogger("fenlei.models")

T = TypeVar("T")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput(
            f"model name {quote(name)} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _version_number(version: str) -> int:
    match = VERSION_PATTERN.match(version)
    if not match:
        raise InvalidInput(f"model version {quote(version)} is not valid: versions look like v1, v2, ...")
    return int(match.group(1))


def _is_alias(reference: str) -> bool:
    """Aliases are named as models are, but never look like a version or a draft."""
    return bool(NAME_PATTERN.match(reference)) and not LOOKS_LIKE_VERSION.match(reference) and not reference.startswith("draft-")


def check_alias(alias: str) -> str:
    if not _is_alias(alias or ""):
        raise InvalidInput(
            f"alias {quote(alias)} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "and neither a version (v1, v2, ...) nor a draft id"
        )
    return alias


def _no_model(name: str) -> NotFound:
    # Only the name asked for: a caller of one model learns nothing of the others.
    return NotFound(f"no model named {name!r}: check the name, or train and publish it with `fenlei train FILE --name {name}`")


def _is_draft(reference: str) -> bool:
    return DRAFT_PATTERN.match(reference) is not None


def _is_published(directory: Path) -> bool:
    return (directory / MANIFEST_FILE).is_file()


def _lock(directory: Path) -> int | None:
    """An open descriptor of directory holding its exclusive flock; None while another holds
    it or once the directory is gone."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


class Draft:
    """A model version in training, leased to this process until closed (or the process ends)."""

    def __init__(self, name: str, draft_id: str, directory: Path, lease: int) -> None:
        self.name = name
        self.id = draft_id
        self.directory = directory
        self.version = ""  # set once published
        self._lease: int | None = lease

    def part(self, part: str) -> Path:
        return self.directory / part

    def close(self) -> None:
        """Ends the lease; a draft that was not published is removed."""
        if self._lease is None:
            return
        if not self.version:
            shutil.rmtree(self.directory, ignore_errors=True)
        os.close(self._lease)
        self._lease = None

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "models"

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        _version_number(version)
        return self.model_dir(name) / version

    def draft_dir(self, name: str, draft_id: str) -> Path:
        if not _is_draft(draft_id):
            raise InvalidInput(f"{quote(draft_id)} is not a draft id")
        return self.model_dir(name) / DRAFTS / draft_id

    def versions(self, name: str) -> list[str]:
        """Published versions, oldest first."""
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if VERSION_PATTERN.match(p.name) and _is_published(p)]
        return sorted(found, key=_version_number)

    def routing(self, name: str) -> dict[str, Any]:
        """The model's aliases and running experiment as the registry last wrote them; no
        aliases and no experiment while it has written none."""
        directory = self.model_dir(name)
        if not (directory / ROUTING_FILE).is_file():
            return {"aliases": {}, "experiment": None}
        try:
            written = artifacts.read_json(directory, ROUTING)
        except artifacts.ArtifactError as exc:
            raise FailedPrecondition(f"the routing of model {name!r} is damaged ({exc}): the registry rewrites it when it starts") from exc
        return {"aliases": {}, "experiment": None, **written}

    def resolve(self, name: str, reference: str = "") -> str:
        """The published version that answers for (name, reference): a version as named, an
        alias's target, or with no reference the "production" alias's, else the newest version."""
        if not reference:
            production = self.routing(name)["aliases"].get(PRODUCTION)
            if production:
                return self._published(name, production, f" (its alias {PRODUCTION!r})")
            versions = self.versions(name)
            if not versions:
                raise _no_model(name)
            return versions[-1]
        if VERSION_PATTERN.match(reference):
            return self._published(name, reference)
        if not _is_alias(reference):
            raise InvalidInput(f"model version {quote(reference)} is not valid: versions look like v1, v2, ..., aliases like production")
        aliases = self.routing(name)["aliases"]
        if reference not in aliases:
            versions = self.versions(name)
            if not versions:
                raise _no_model(name)
            named = ", ".join(sorted(aliases)) or "none"
            raise NotFound(f"model {name!r} has no version or alias {reference!r}; versions: {', '.join(versions)}; aliases: {named}")
        return self._published(name, aliases[reference], f" (its alias {reference!r})")

    def _published(self, name: str, version: str, via: str = "") -> str:
        directory = self.version_dir(name, version)
        if not _is_published(directory):
            left = " (a training that did not finish left it incomplete: it never serves)" if directory.is_dir() else ""
            published = ", ".join(self.versions(name)) or "none"
            raise NotFound(f"model {name!r} has no published version {version!r}{via}{left}; published versions: {published}")
        return version

    def part_to_serve(self, name: str, reference: str, part: str) -> Path:
        """Where a stage loads its part of (name, reference) from: a draft by its id, else a
        published version whose files of that part match its manifest."""
        if _is_draft(reference):
            directory = self.draft_dir(name, reference)
            if not directory.is_dir():
                raise NotFound(f"model {name!r} has no draft {reference!r}: it was published or discarded")
            return directory / part
        version = self.resolve(name, reference)
        try:
            self.verify(name, version, part)
        except artifacts.ArtifactError as exc:
            raise FailedPrecondition(f"model {name!r} version {version!r} is damaged and does not serve: {exc}") from exc
        return self.version_dir(name, version) / part

    def writable_part(self, name: str, reference: str, part: str) -> Path:
        """Where a stage stores what it fitted: a part of a draft."""
        if not name or not reference:
            raise InvalidInput("fitting needs the model's name and version: the id of the draft its training made")
        if _is_draft(reference):
            directory = self.draft_dir(name, reference)
            if not directory.is_dir():
                raise NotFound(f"model {name!r} has no draft {reference!r}: it was published or discarded")
            return directory / part
        if _is_published(self.version_dir(name, reference)):
            raise FailedPrecondition(f"model {name!r} version {reference!r} is published and cannot be changed")
        raise NotFound(f"model {name!r} has no draft {reference!r}: fit into the draft its training made (draft-...)")

    def in_training(self, name: str, draft_id: str) -> bool:
        """Whether a live training holds the draft's lease (its process has not exited)."""
        directory = self.draft_dir(name, draft_id)
        lease = _lock(directory)
        if lease is None:
            return directory.is_dir()
        os.close(lease)
        return False

    def create_draft(self, name: str) -> Draft:
        """A new draft of the model, leased to this process. Removes the model's incomplete
        versions first, so a training that died is cleaned up by the next one."""
        drafts = self.model_dir(name) / DRAFTS
        drafts.mkdir(parents=True, exist_ok=True)
        self.clean(name)
        while True:
            draft_id = f"draft-{secrets.token_hex(16)}"
            directory = drafts / draft_id
            directory.mkdir()
            lease = _lock(directory)
            if lease is None:
                continue  # a cleaner took the new directory for an abandoned one and removes it
            try:
                if os.path.samestat(os.fstat(lease), directory.stat()):
                    return Draft(name, draft_id, directory, lease)
            except FileNotFoundError:
                pass  # the same, and the cleaner was done before the lock
            os.close(lease)

    def incomplete(self, name: str) -> list[Path]:
        """What of the model can never serve: version directories without a manifest and
        drafts whose training is gone."""
        found = []
        for directory, lease in self._incomplete(name):
            if lease is not None:
                os.close(lease)
            found.append(directory)
        return found

    def clean(self, name: str) -> list[Path]:
        """Removes what `incomplete` lists; returns it."""
        removed = []
        for directory, lease in self._incomplete(name):
            log.warning("removing %s: a model version left incomplete", directory, extra={"fields": {"path": str(directory)}})
            shutil.rmtree(directory, ignore_errors=True)
            if lease is not None:
                os.close(lease)
            removed.append(directory)
        return removed

    def _incomplete(self, name: str) -> Iterator[tuple[Path, int | None]]:
        """Each incomplete directory; a draft with its lock taken, so that nobody starts on it meanwhile."""
        model = self.model_dir(name)
        if not model.is_dir():
            return
        for directory in sorted(model.iterdir()):
            if VERSION_PATTERN.match(directory.name) and directory.is_dir() and not _is_published(directory):
                yield directory, None
        drafts = model / DRAFTS
        for directory in sorted(drafts.iterdir()) if drafts.is_dir() else ():
            if _is_draft(directory.name):
                lease = _lock(directory)
                if lease is not None:
                    yield directory, lease

    def publish(self, draft: Draft, metadata: dict[str, Any]) -> str:
        """Makes the draft the model's next version and returns it: every file synced, the
        manifest (their checksums) last, then one rename into place."""
        if draft.version:
            raise FailedPrecondition(f"draft {draft.id} of model {draft.name!r} is already published as {draft.version}")
        directory = draft.directory
        files = {}
        for path in sorted(directory.rglob("*")):
            if path.is_file() and path.name.endswith(".tmp"):
                path.unlink()  # a write that never finished: no artifact
            elif path.is_file() and path != directory / MANIFEST_FILE:
                artifacts.fsync_file(path)
                files[str(path.relative_to(directory))] = artifacts.sha256_file(path)
        for path in sorted(p for p in directory.rglob("*") if p.is_dir()):
            artifacts.fsync_directory(path)
        model = self.model_dir(draft.name)
        while True:
            taken = [_version_number(p.name) for p in model.iterdir() if VERSION_PATTERN.match(p.name)]
            version = f"v{max(taken, default=0) + 1}"
            manifest = {"name": draft.name, "version": version, "created": time.time(), "files": files, **metadata}
            artifacts.write_json(directory, MANIFEST, manifest)
            artifacts.fsync_directory(directory)
            try:
                os.rename(directory, model / version)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another training published that number first
                raise
            artifacts.fsync_directory(model)
            artifacts.fsync_directory(directory.parent)
            draft.version = version
            return version

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        return artifacts.read_json(self.version_dir(name, version), MANIFEST)

    def verify(self, name: str, version: str, part: str = "") -> None:
        """Raises ArtifactError naming the first file (of `part`, or of every part) that is
        missing, changed or not in the manifest of a published version."""
        directory = self.version_dir(name, version)
        try:
            listed = dict(self.manifest(name, version)["files"])
        except (KeyError, TypeError, ValueError) as exc:
            raise artifacts.ArtifactError(f"its {MANIFEST_FILE} lists no files") from exc
        prefix = f"{part}/" if part else ""
        listed = {relative: digest for relative, digest in listed.items() if relative.startswith(prefix)}
        root = directory / part if part else directory
        on_disk = {str(p.relative_to(directory)) for p in root.rglob("*") if p.is_file()} - {MANIFEST_FILE}
        unlisted = sorted(on_disk - set(listed))
        if unlisted:
            raise artifacts.ArtifactError(f"{unlisted[0]} is not in its {MANIFEST_FILE}")
        for relative, digest in sorted(listed.items()):
            path = directory / relative
            if not path.is_file():
                raise artifacts.ArtifactError(f"{relative} is missing")
            if artifacts.sha256_file(path) != digest:
                raise artifacts.ArtifactError(f"{relative} does not match its checksum in {MANIFEST_FILE}")


class LoadedModels(Generic[T]):
    """A stage's least-recently-used cache of loaded model parts, keyed by (name, version or draft)."""

    def __init__(self, store: ModelStore, part: str, load: Callable[[Path], T], capacity: int = 8) -> None:
        self.store = store
        self.part = part
        self.load = load
        self.capacity = capacity
        self._loaded: collections.OrderedDict[tuple[str, str], tuple[T, tuple[int, int, int] | None]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, reference: str) -> T:
        if not (VERSION_PATTERN.match(reference) or _is_draft(reference)):
            reference = self.store.resolve(name, reference)  # an alias or no reference: the version it answers with now
        key = (name, reference)
        with self._lock:
            entry = self._loaded.get(key)
        if entry is not None:
            value, loaded_from = entry
            # A version the registry deleted (or replaced) since it was loaded never serves from here.
            if loaded_from == self._identity(*key):
                with self._lock:
                    if key in self._loaded:
                        self._loaded.move_to_end(key)
                return value
            with self._lock:
                self._loaded.pop(key, None)
        loaded_from = self._identity(*key)
        directory = self.store.part_to_serve(name, reference, self.part)
        if not directory.is_dir():
            raise NotFound(f"model {name!r} version {reference!r} has no {self.part} part")
        try:
            value = self.load(directory)
        except artifacts.ArtifactError as exc:
            raise FailedPrecondition(f"model {name!r} version {reference!r} is damaged: {exc}") from exc
        # A model is large and lives long: keep the garbage collector from re-walking it.
        gc.collect()
        gc.freeze()
        with self._lock:
            # Drafts end as versions (or are discarded): what was loaded of them is never asked for again.
            for gone in [key for key in self._loaded if _is_draft(key[1]) and not self.store.draft_dir(*key).is_dir()]:
                del self._loaded[gone]
            self._loaded[key] = (value, loaded_from)
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return value

    def loaded(self) -> list[tuple[str, str]]:
        """(name, version or draft) of what is held now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _identity(self, name: str, reference: str) -> tuple[int, int, int] | None:
        """Which manifest a published version was loaded under (None for a draft, or once it is gone)."""
        if _is_draft(reference):
            return None
        try:
            found = os.stat(self.store.version_dir(name, reference) / MANIFEST_FILE)
        except FileNotFoundError:
            return None
        return (found.st_dev, found.st_ino, found.st_mtime_ns)
