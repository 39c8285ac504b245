"""Model artifacts as plain data: JSON documents and NumPy arrays, never pickle.

A model version is a directory; each stage owns one sub-directory ("part") of it.
Arrays are written with allow_pickle=False and read the same way, so loading a model,
or restoring a backup of one, can never execute code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(Exception):
    """An artifact is missing, damaged or of the wrong shape."""


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


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
