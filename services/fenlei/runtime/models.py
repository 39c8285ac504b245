"""The model store: versions of named models on disk, and the stages' caches of them.

    <home>/models/<name>/<version>/<part>/...   one part per stage
    <home>/models/<name>/<version>/manifest.json

A version is published once its manifest (every file with its SHA-256) is written, last
and atomically. Unpublished versions are work in progress: a stage loads one only when
asked for it by exact version (training evaluates before it publishes), and "newest"
never resolves to one, so a crash mid-training leaves nothing that serves.
"""

from __future__ import annotations

import collections
import gc
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.runtime import artifacts

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
VERSION_PATTERN = re.compile(r"^v([1-9][0-9]{0,8})$")
MANIFEST = "manifest"

T = TypeVar("T")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput(
            f"model name {name!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _version_number(version: str) -> int:
    match = VERSION_PATTERN.match(version)
    if not match:
        raise InvalidInput(f"model version {version!r} is not valid: versions look like v1, v2, ...")
    return int(match.group(1))


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "models"

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        _version_number(version)
        return self.model_dir(name) / version

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if NAME_PATTERN.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Published versions, oldest first."""
        directory = self.model_dir(name)
        if not directory.is_dir():
            return []
        found = [p.name for p in directory.iterdir() if VERSION_PATTERN.match(p.name) and (p / f"{MANIFEST}.json").is_file()]
        return sorted(found, key=_version_number)

    def resolve(self, name: str, version: str = "") -> str:
        """The version that answers for (name, version): the newest published one when empty."""
        if version:
            if not self.version_dir(name, version).is_dir():
                raise NotFound(f"model {name!r} has no version {version!r}; published versions: {self.versions(name) or 'none'}")
            return version
        versions = self.versions(name)
        if not versions:
            known = self.names()
            raise NotFound(f"no model named {name!r}; known models: {', '.join(known) if known else 'none (train one with `fenlei train`)'}")
        return versions[-1]

    def part_dir(self, name: str, version: str, part: str) -> Path:
        directory = self.version_dir(name, version)
        if not directory.is_dir():
            raise NotFound(f"model {name!r} has no version {version!r}")
        return directory / part

    def writable_part(self, name: str, version: str, part: str) -> Path:
        """Where a stage stores what it fitted: a reserved, not yet published version."""
        if not name or not version:
            raise InvalidInput("fitting needs the model's name and version (reserve a version with create_version first)")
        directory = self.part_dir(name, version, part)
        if (directory.parent / f"{MANIFEST}.json").exists():
            raise FailedPrecondition(f"model {name!r} version {version!r} is published and cannot be changed")
        return directory

    def create_version(self, name: str) -> str:
        """Reserves the next version number (mkdir is atomic, so concurrent trainers never share one)."""
        directory = self.model_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        taken = [_version_number(p.name) for p in directory.iterdir() if VERSION_PATTERN.match(p.name)]
        number = max(taken, default=0) + 1
        while True:
            try:
                (directory / f"v{number}").mkdir()
                return f"v{number}"
            except FileExistsError:
                number += 1

    def publish(self, name: str, version: str, metadata: dict[str, Any]) -> dict[str, Any]:
        directory = self.version_dir(name, version)
        files = {
            str(path.relative_to(directory)): artifacts.sha256_file(path)
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name != f"{MANIFEST}.json" and not path.name.endswith(".tmp")
        }
        manifest = {"name": name, "version": version, "created": time.time(), "files": files, **metadata}
        artifacts.write_json(directory, MANIFEST, manifest)
        return manifest

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        return artifacts.read_json(self.version_dir(name, version), MANIFEST)

    def verify(self, name: str, version: str) -> None:
        """Raises ArtifactError when a published version's files do not match its manifest."""
        directory = self.version_dir(name, version)
        for relative, digest in self.manifest(name, version)["files"].items():
            path = directory / relative
            if not path.is_file() or artifacts.sha256_file(path) != digest:
                raise artifacts.ArtifactError(f"{path} does not match the manifest of {name} {version}")


class LoadedModels(Generic[T]):
    """A stage's least-recently-used cache of loaded model parts, keyed by (name, version)."""

    def __init__(self, store: ModelStore, part: str, load: Callable[[Path], T], capacity: int = 8) -> None:
        self.store = store
        self.part = part
        self.load = load
        self.capacity = capacity
        self._loaded: collections.OrderedDict[tuple[str, str], T] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, version: str) -> T:
        if not version:
            version = self.store.resolve(name)
        key = (name, version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        directory = self.store.part_dir(name, version, self.part)
        if not directory.is_dir():
            raise NotFound(f"model {name!r} version {version!r} has no {self.part} part")
        try:
            value = self.load(directory)
        except artifacts.ArtifactError as exc:
            raise FailedPrecondition(f"model {name!r} version {version!r} is damaged: {exc}") from exc
        # A model is large and lives long: keep the garbage collector from re-walking it.
        gc.collect()
        gc.freeze()
        with self._lock:
            self._loaded[key] = value
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return value
