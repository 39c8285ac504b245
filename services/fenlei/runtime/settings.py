"""Typed settings from environment variables.

Every field of a settings dataclass is read from FENLEI_<SERVICE>_<FIELD>, falling back
to FENLEI_<FIELD> (shared by every service, e.g. FENLEI_HOME), then to the default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from fenlei.errors import InvalidInput

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """What every service reads. Services subclass it to add their own fields."""

    home: Path = Path(".fenlei")
    host: str = "127.0.0.1"
    # 0 picks a free port; the bound address is written to address_file.
    port: int = 0
    # A gRPC address to listen on instead of host:port, e.g. unix:/path (behind a sidecar).
    listen: str = ""
    address_file: str = ""
    # The Prometheus endpoint (/metrics): 0 picks a free port (written to address_file), -1 serves none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    log_level: str = "INFO"
    max_message_bytes: int = 16 * 1024 * 1024
    max_batch_documents: int = 4096
    max_document_chars: int = 100_000
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = 10.0
    # Model versions a stage keeps loaded at once.
    loaded_models: int = 8


def _convert(raw: str, kind: Any, name: str) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError as exc:
        raise InvalidInput(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from exc


def load_settings(cls: type[T], service: str, environ: Mapping[str, str] | None = None) -> T:
    environ = os.environ if environ is None else environ
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        for name in (f"FENLEI_{service.upper()}_{field.name.upper()}", f"FENLEI_{field.name.upper()}"):
            if name in environ:
                values[field.name] = _convert(environ[name], hints[field.name], name)
                break
    return cls(**values)
