"""What the pipeline decides, apart from moving bytes: which model version answers a
request, and how a request's documents are cut into stage batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from fenlei.errors import InvalidInput
from fenlei.runtime.models import ModelStore

T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    name: str
    version: str


class ModelRouter:
    """Resolves a model name (or the default model) to the version that answers for it.

    "Newest" is re-read from the store at most once per `ttl` seconds, so a newly
    published version starts answering within that time without a directory listing
    on every request.
    """

    def __init__(self, store: ModelStore, default_model: str = "", ttl: float = 1.0) -> None:
        self.store = store
        self.default_model = default_model
        self.ttl = ttl
        self._newest: dict[str, tuple[float, str]] = {}

    def route(self, name: str, version: str = "") -> Route:
        name = name or self.default_model
        if not name:
            raise InvalidInput("name a model: this pipeline has no default model (FENLEI_PIPELINE_DEFAULT_MODEL)")
        if version:
            return Route(name, self.store.resolve(name, version))
        now = time.monotonic()
        cached = self._newest.get(name)
        if cached is None or now - cached[0] > self.ttl:
            cached = (now, self.store.resolve(name))
            self._newest[name] = cached
        return Route(name, cached[1])


def split(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
