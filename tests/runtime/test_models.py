import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.runtime import artifacts
from fenlei.runtime.models import MANIFEST_FILE, LoadedModels, ModelStore


def publish_version(store: ModelStore, name: str, weight: float) -> str:
    with store.create_draft(name) as draft:
        artifacts.write_array(store.writable_part(name, draft.id, "classifier"), "coef", np.array([weight]))
        return store.publish(draft, {"note": "test"})


def load_coef(directory: Path) -> float:
    return float(artifacts.read_array(directory, "coef")[0])


def test_versions_resolve_newest_published_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert publish_version(store, "news", 1.0) == "v1"
    assert publish_version(store, "news", 2.0) == "v2"
    with store.create_draft("news") as draft:
        artifacts.write_array(draft.part("classifier"), "coef", np.array([3.0]))
        assert store.versions("news") == ["v1", "v2"]
        assert store.resolve("news") == "v2"
        # training reads its own draft by id before it publishes; nothing else names it
        assert LoadedModels(store, "classifier", load_coef).get("news", draft.id) == 3.0
        with pytest.raises(NotFound, match="no published version 'v3'"):
            store.resolve("news", "v3")
    assert not draft.directory.exists()  # a draft closed unpublished is gone


def test_a_published_version_is_the_draft_renamed_into_place_with_its_manifest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with store.create_draft("news") as draft:
        part = store.writable_part("news", draft.id, "classifier")
        artifacts.write_array(part, "coef", np.array([1.0]))
        artifacts.write_json(part, "classifier", {"classes": ["a", "b"]})
        (part / "coef.npy.tmp").write_bytes(b"an interrupted write")
        version = store.publish(draft, {"note": "test"})
    directory = store.version_dir("news", version)
    assert not draft.directory.exists() and draft.version == version == "v1"
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert (manifest["name"], manifest["version"], manifest["note"]) == ("news", "v1", "test")
    # every file but the manifest is listed with its checksum, and nothing else is there
    assert sorted(manifest["files"]) == ["classifier/classifier.json", "classifier/coef.npy"]
    assert {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} == {*manifest["files"], MANIFEST_FILE}
    for relative, digest in manifest["files"].items():
        assert artifacts.sha256_file(directory / relative) == digest


def test_unknown_models_name_only_what_was_asked_for(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_version(store, "secret-project", 1.0)
    with pytest.raises(NotFound, match="no model named 'news'") as unknown:
        store.resolve("news")
    assert "secret-project" not in str(unknown.value) and "fenlei train" in str(unknown.value)
    with pytest.raises(NotFound, match="v9"):
        store.resolve("secret-project", "v9")
    with pytest.raises(InvalidInput, match="not valid"):
        store.resolve("../etc")
    with pytest.raises(InvalidInput, match="not valid"):
        store.resolve("news", "latest/../../x")
    with pytest.raises(InvalidInput, match="not valid") as long_name:
        store.resolve("名" * 10_000)
    assert len(str(long_name.value)) < 300  # the input is quoted, not copied whole


def test_published_versions_are_immutable_and_verified_by_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = publish_version(store, "news", 1.0)
    with pytest.raises(FailedPrecondition, match="published"):
        store.writable_part("news", version, "classifier")
    store.verify("news", version)
    models = LoadedModels(store, "classifier", load_coef)
    (store.version_dir("news", version) / "classifier" / "coef.npy").write_bytes(b"tampered")
    with pytest.raises(artifacts.ArtifactError, match="classifier/coef.npy does not match its checksum"):
        store.verify("news", version)
    with pytest.raises(FailedPrecondition, match="'v1' is damaged.*classifier/coef.npy does not match its checksum"):
        models.get("news", "")
    # a file slipped in beside the published ones is refused by name too
    other = publish_version(store, "other", 1.0)
    (store.version_dir("other", other) / "classifier" / "extra.npy").write_bytes(b"")
    with pytest.raises(FailedPrecondition, match="classifier/extra.npy is not in its manifest.json"):
        models.get("other", other)


def test_versions_without_a_manifest_never_serve_and_are_cleaned(tmp_path: Path) -> None:
    # what a killed `fenlei train` of older fenlei left: v3 and v4 filled, without manifests
    store = ModelStore(tmp_path)
    publish_version(store, "news", 1.0)
    publish_version(store, "news", 2.0)
    for version in ("v3", "v4"):
        artifacts.write_array(store.version_dir("news", version) / "classifier", "coef", np.array([9.0]))
    models = LoadedModels(store, "classifier", load_coef)
    assert store.versions("news") == ["v1", "v2"] and models.get("news", "") == 2.0
    with pytest.raises(NotFound, match="no published version 'v4' .*incomplete.*published versions: v1, v2"):
        models.get("news", "v4")
    with pytest.raises(NotFound, match="no draft 'v4'"):
        store.writable_part("news", "v4", "classifier")  # nor can a fit fill one in
    assert store.incomplete("news") == [store.version_dir("news", "v3"), store.version_dir("news", "v4")]
    # the next training removes them and publishes after the published ones
    assert publish_version(store, "news", 3.0) == "v3"
    assert store.incomplete("news") == [] and not store.version_dir("news", "v4").exists()
    assert models.get("news", "") == 3.0


TRAINER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fenlei.runtime import artifacts
    from fenlei.runtime.models import ModelStore

    draft = ModelStore(sys.argv[1]).create_draft("news")
    artifacts.write_array(draft.part("classifier"), "coef", np.array([7.0]))
    print(draft.id, flush=True)
    sys.stdin.read()  # trains until killed
    """
)


def test_a_killed_trainers_draft_never_serves_and_the_next_training_removes_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_version(store, "news", 1.0)
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        draft_id = trainer.stdout.readline().strip()
        assert draft_id.startswith("draft-"), draft_id
        # while its trainer lives, a draft is in progress: not incomplete, and another training leaves it alone
        assert store.incomplete("news") == []
        assert publish_version(store, "news", 2.0) == "v2"
        assert store.draft_dir("news", draft_id).is_dir()
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.communicate()
    assert trainer.returncode == -signal.SIGKILL
    assert store.versions("news") == ["v1", "v2"] and store.resolve("news") == "v2"
    assert store.incomplete("news") == [store.draft_dir("news", draft_id)]
    assert publish_version(store, "news", 3.0) == "v3"
    assert store.incomplete("news") == [] and not store.draft_dir("news", draft_id).exists()
    with pytest.raises(NotFound, match="published or discarded"):
        LoadedModels(store, "classifier", load_coef).get("news", draft_id)


def test_loaded_models_cache_by_version_and_evict(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for weight in (1.0, 2.0, 3.0):
        publish_version(store, "news", weight)
    loads: list[Path] = []

    def load(directory: Path) -> float:
        loads.append(directory)
        return load_coef(directory)

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


def test_a_published_drafts_cache_entry_is_dropped(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    models = LoadedModels(store, "classifier", load_coef)
    with store.create_draft("news") as draft:
        artifacts.write_array(draft.part("classifier"), "coef", np.array([1.0]))
        assert models.get("news", draft.id) == 1.0
        store.publish(draft, {})
    assert models.get("news", "v1") == 1.0
    assert list(models._loaded) == [("news", "v1")]


def test_damaged_artifacts_are_refused_not_executed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with store.create_draft("news") as draft:
        part = store.writable_part("news", draft.id, "classifier")
        part.mkdir(parents=True)
        # An object array would need pickle to load: refused.
        np.save(part / "coef.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
        models = LoadedModels(store, "classifier", lambda d: artifacts.read_array(d, "coef"))
        with pytest.raises(FailedPrecondition, match="damaged"):
            models.get("news", draft.id)
        (part / "config.json").write_text("{not json")
        with pytest.raises(artifacts.ArtifactError, match="damaged"):
            artifacts.read_json(part, "config")
        assert json.loads(artifacts.write_json(part, "ok", {"标签": 1}).read_text(encoding="utf-8")) == {"标签": 1}


def test_fits_write_only_into_live_drafts(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(InvalidInput, match="name and version"):
        store.writable_part("news", "", "classifier")
    with pytest.raises(NotFound, match="v9"):
        store.writable_part("news", "v9", "classifier")
    with pytest.raises(NotFound, match="published or discarded"):
        store.writable_part("news", "draft-" + "0" * 32, "classifier")
    assert not any(tmp_path.rglob("classifier"))


def write_routing(store: ModelStore, name: str, aliases: dict[str, str]) -> None:
    """routing.json as the registry writes it."""
    artifacts.write_json(store.model_dir(name), "routing", {"aliases": aliases, "experiment": None})


def test_references_are_versions_aliases_or_production_else_the_newest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for weight in (1.0, 2.0, 3.0):
        publish_version(store, "news", weight)
    assert store.routing("news") == {"aliases": {}, "experiment": None}  # nothing written: no aliases
    assert store.resolve("news") == "v3"
    write_routing(store, "news", {"production": "v1", "staging": "v2"})
    assert (store.resolve("news"), store.resolve("news", "staging"), store.resolve("news", "v3")) == ("v1", "v2", "v3")
    with pytest.raises(NotFound, match=r"no version or alias 'canary'; versions: v1, v2, v3; aliases: production, staging"):
        store.resolve("news", "canary")
    with pytest.raises(InvalidInput, match="not valid: versions look like v1, v2, ..., aliases like production"):
        store.resolve("news", "v01")
    with pytest.raises(NotFound, match="no model named 'sports'"):
        store.resolve("sports", "production")
    write_routing(store, "news", {"production": "v7"})
    with pytest.raises(NotFound, match="no published version 'v7' \\(its alias 'production'\\)"):
        store.resolve("news")


def test_loaded_models_follow_aliases_and_never_serve_a_deleted_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_version(store, "news", 1.0)
    publish_version(store, "news", 2.0)
    loads: list[Path] = []

    def load(directory: Path) -> float:
        loads.append(directory)
        return load_coef(directory)

    models = LoadedModels(store, "classifier", load)
    write_routing(store, "news", {"production": "v1"})
    assert models.get("news", "production") == models.get("news", "") == 1.0
    write_routing(store, "news", {"production": "v2"})  # a promotion: no restart, no stale answer
    assert models.get("news", "production") == 2.0 and len(loads) == 2
    # the registry deleted v1 (its view is gone): the cached copy never answers again
    shutil.rmtree(store.version_dir("news", "v1"))
    with pytest.raises(NotFound, match="no published version 'v1'"):
        models.get("news", "v1")
    # and a view written anew under the same name (a restore) is loaded anew
    publish_version(store, "news", 5.0)
    shutil.rmtree(store.version_dir("news", "v2"))
    store.version_dir("news", "v3").rename(store.version_dir("news", "v2"))
    assert models.get("news", "v2") == 5.0


def test_a_draft_is_in_training_while_its_lease_is_held(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    draft = store.create_draft("news")
    assert store.in_training("news", draft.id)
    os.close(draft._lease)  # as when its trainer dies
    draft._lease = None
    assert not store.in_training("news", draft.id)
    shutil.rmtree(draft.directory)
    assert not store.in_training("news", draft.id)
