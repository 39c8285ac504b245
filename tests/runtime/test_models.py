import json
from pathlib import Path

import numpy as np
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.runtime import artifacts
from fenlei.runtime.models import LoadedModels, ModelStore


def publish_version(store: ModelStore, name: str, weight: float) -> str:
    version = store.create_version(name)
    artifacts.write_array(store.writable_part(name, version, "classifier"), "coef", np.array([weight]))
    store.publish(name, version, {"note": "test"})
    return version


def test_versions_resolve_newest_published_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert publish_version(store, "news", 1.0) == "v1"
    assert publish_version(store, "news", 2.0) == "v2"
    unpublished = store.create_version("news")
    assert unpublished == "v3"
    assert store.versions("news") == ["v1", "v2"]
    assert store.resolve("news") == "v2"
    assert store.resolve("news", "v3") == "v3"  # training reads its own version before publishing
    assert store.names() == ["news"]


def test_unknown_models_and_bad_names(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(NotFound, match="no model named 'news'"):
        store.resolve("news")
    publish_version(store, "news", 1.0)
    with pytest.raises(NotFound, match="v9"):
        store.resolve("news", "v9")
    with pytest.raises(InvalidInput, match="not valid"):
        store.resolve("../etc")
    with pytest.raises(InvalidInput, match="not valid"):
        store.resolve("news", "latest/../../x")


def test_published_versions_are_immutable_and_verified(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = publish_version(store, "news", 1.0)
    with pytest.raises(FailedPrecondition, match="published"):
        store.writable_part("news", version, "classifier")
    store.verify("news", version)
    manifest = store.manifest("news", version)
    assert list(manifest["files"]) == ["classifier/coef.npy"] and manifest["note"] == "test"
    (store.version_dir("news", version) / "classifier" / "coef.npy").write_bytes(b"tampered")
    with pytest.raises(artifacts.ArtifactError, match="does not match"):
        store.verify("news", version)


def test_loaded_models_cache_by_version_and_evict(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for weight in (1.0, 2.0, 3.0):
        publish_version(store, "news", weight)
    loads: list[Path] = []

    def load(directory: Path) -> float:
        loads.append(directory)
        return float(artifacts.read_array(directory, "coef")[0])

    models = LoadedModels(store, "classifier", load, capacity=2)
    assert models.get("news", "") == 3.0
    assert models.get("news", "v1") == 1.0
    assert models.get("news", "v3") == 3.0
    assert len(loads) == 2  # v3 came from the cache
    models.get("news", "v2")  # evicts v1, the least recently used
    models.get("news", "v1")
    assert len(loads) == 4
    with pytest.raises(NotFound, match="no features part"):
        LoadedModels(store, "features", load).get("news", "v1")


def test_damaged_artifacts_are_refused_not_executed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = store.create_version("news")
    part = store.writable_part("news", version, "classifier")
    part.mkdir(parents=True)
    # An object array would need pickle to load: refused.
    np.save(part / "coef.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    models = LoadedModels(store, "classifier", lambda d: artifacts.read_array(d, "coef"))
    with pytest.raises(FailedPrecondition, match="damaged"):
        models.get("news", version)
    (part / "config.json").write_text("{not json")
    with pytest.raises(artifacts.ArtifactError, match="damaged"):
        artifacts.read_json(part, "config")
    assert json.loads(artifacts.write_json(part, "ok", {"标签": 1}).read_text(encoding="utf-8")) == {"标签": 1}
