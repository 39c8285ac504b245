from pathlib import Path

import pytest

from fenlei.errors import InvalidInput, NotFound
from fenlei.pipeline.core import ModelRouter, Route, split
from fenlei.runtime.models import ModelStore


def publish(store: ModelStore, name: str) -> str:
    with store.create_draft(name) as draft:
        return store.publish(draft, {})


def test_router_resolves_default_newest_and_pinned(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "news")
    router = ModelRouter(store, default_model="news", ttl=0)
    assert router.route("") == Route("news", "v1")
    publish(store, "news")
    assert router.route("news") == Route("news", "v2")
    assert router.route("news", "v1") == Route("news", "v1")
    with pytest.raises(NotFound, match="no model named 'other'"):
        router.route("other")
    with pytest.raises(InvalidInput, match="name a model"):
        ModelRouter(store).route("")


def test_router_caches_newest_for_its_ttl(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "news")
    router = ModelRouter(store, ttl=3600)
    assert router.route("news").version == "v1"
    publish(store, "news")
    assert router.route("news").version == "v1"
    assert router.route("news", "v2").version == "v2"


def test_split_keeps_order() -> None:
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split([], 3) == []
