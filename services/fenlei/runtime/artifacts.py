"""Model artifacts as plain data: JSON documents and NumPy arrays, never pickle.

A model version is a directory; each stage owns one sub-directory ("part") of it.
Arrays are written with allow_pickle=False and read the same way, so loading a model,
wherever its files came from, can never execute code.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fenlei.errors import InvalidInput

T = TypeVar("T")


class ArtifactError(Exception):
    """An artifact is missing, damaged or of the wrong shape."""


def config_from_json(cls: type[T], data: Any, what: str) -> T:
    """A stage's configuration dataclass from its JSON: unknown keys refused by name, enum
    fields from their values, lists as the tuples the (frozen, hashable) configs keep."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} options must be a JSON object, not {type(data).__name__}")
    known = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidInput(f"unknown {what} options {', '.join(unknown)}; known: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        kind = hints[name]
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            try:
                value = kind(value)
            except ValueError:
                raise InvalidInput(f"{name} must be one of {', '.join(str(k.value) for k in kind)}, not {value!r}") from None
        values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def write_json(directory: Path, name: str, value: Any) -> Path:
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return path


def read_json(directory: Path, name: str) -> Any:
    path = Path(directory) / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing artifact {path}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"damaged artifact {path}: {exc}") from exc


def write_array(directory: Path, name: str, array: np.ndarray) -> Path:
    path = Path(directory) / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npy.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_array(directory: Path, name: str) -> np.ndarray:
    path = Path(directory) / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing artifact {path}") from exc
    except ValueError as exc:
        raise ArtifactError(f"damaged artifact {path}: {exc}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Makes the directory's entries (files created, renamed or removed in it) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
