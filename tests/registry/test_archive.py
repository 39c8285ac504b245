"""Backup and restore: export → wipe → import gives the same registry with byte-identical
artifacts; a damaged or foreign archive is refused before anything changes; a merge refuses
clashing versions and keeps identical ones as they are."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput
from fenlei.registry import archive
from fenlei.registry.experiments import ArmSpec, Experiments
from fenlei.registry.store import Registry
from fenlei.runtime import artifacts
from fenlei.services import STAGE_NAMES

LABELS = ["finance", "sports"]


def register(registry: Registry, name: str, weight: float, tags: dict | None = None) -> str:
    with registry.store.create_draft(name) as draft:
        for part in STAGE_NAMES[:-1]:
            artifacts.write_json(draft.part(part), part, {"part": part, "名字": name})
        artifacts.write_array(draft.part("classifier"), "coef", np.arange(1000) * weight)
        return registry.register(
            name, draft.id, {"dataset_source": f"{name}.txt"}, {"accuracy": weight / 10}, tags or {}, LABELS, "trainer"
        )["version"]


def exported(registry: Registry) -> bytes:
    return b"".join(archive.export_archive(registry))


def imported(registry: Registry, data: bytes, chunk: int = 4096) -> dict:
    with archive.Upload(registry) as upload:
        for start in range(0, len(data), chunk):
            upload.write(data[start : start + chunk])
        return upload.finish()


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar}  # type: ignore[union-attr]


def rebuilt(found: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in found.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def state(registry: Registry) -> dict:
    """Everything the registry holds, as its tables say, and what its views hold on disk."""
    tables = json.loads(members(exported(registry))[archive.REGISTRY])["tables"]
    views = {}
    for model in sorted(registry.store.root.iterdir()) if registry.store.root.is_dir() else ():
        for path in sorted(model.rglob("*")):
            if path.is_file() and ".drafts" not in path.parts:
                views[str(path.relative_to(registry.store.root))] = path.read_bytes()
    return {"tables": tables, "views": views}


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Registry]:
    """A registry with two models, aliases and their history, tags and an experiment with records."""
    registry = Registry(tmp_path / "source")
    registry.open()
    for weight in (1.0, 2.0, 3.0):
        register(registry, "news", weight, tags={"team": "nlp"})
    register(registry, "reviews", 5.0)
    registry.set_alias("news", "production", "v1", "alice", "first")
    registry.set_alias("news", "production", "v2", "bob", "better")
    registry.set_alias("news", "staging", "v3", "bob")
    registry.set_alias("reviews", "production", "v1", "alice")
    experiments = Experiments(registry)
    experiments.create("ab", "news", [ArmSpec("a", "production", 1), ArmSpec("b", "staging", 1)], "fixed", "v3 or v2", "alice")
    arm, _ = experiments.assign("ab", "user-1")
    experiments.record([("r1", "", "ab", arm, "v2", "sports")])
    experiments.feedback("r1", "", "sports", "carol")
    yield registry
    registry.close()


def test_export_wipe_import_restores_everything_byte_for_byte(source: Registry, tmp_path: Path) -> None:
    data = exported(source)
    before = state(source)
    found = members(data)
    assert list(found)[:2] == [archive.CHECKSUMS, archive.REGISTRY]
    checksums = json.loads(found[archive.CHECKSUMS])
    assert (checksums["format"], checksums["format_version"]) == ("fenlei-registry", 1)
    assert set(checksums["files"]) == set(found) - {archive.CHECKSUMS}
    document = json.loads(found[archive.REGISTRY])
    assert [len(document["tables"][t]) for t in ("experiments", "arms", "assignments", "predictions")] == [1, 2, 1, 1]
    assert len(document["tables"]["alias_moves"]) == 4 and document["blobs"] == sorted(
        checksums["files"][n] for n in found if "sha256/" in n
    )

    home = source.home
    source.close()
    shutil.rmtree(home)  # the disaster
    restored = Registry(home)
    restored.open()
    result = imported(restored, data)
    assert result == {"added": ["news/v1", "news/v2", "news/v3", "reviews/v1"], "unchanged": [], "aliases": 3, "experiments": 1}
    after = state(restored)
    assert after["tables"] == before["tables"]
    assert after["views"] == before["views"]  # artifacts byte for byte, manifests and routing alike
    for name, version in (("news", "v1"), ("news", "v2"), ("news", "v3"), ("reviews", "v1")):
        restored.store.verify(name, version)
    assert restored.store.resolve("news") == "v2" and restored.history("news")[-1]["reason"] == ""
    scores = {score.arm: score for score in Experiments(restored).get("ab").scores}
    assert scores[arm_of(restored)].correct == 1  # the experiment's records came back too
    # importing the same archive again changes nothing
    again = imported(restored, data)
    assert again == {"added": [], "unchanged": ["news/v1", "news/v2", "news/v3", "reviews/v1"], "aliases": 0, "experiments": 0}
    assert state(restored) == after
    restored.close()


def arm_of(registry: Registry) -> str:
    with registry.db.read() as conn:
        return conn.execute("SELECT arm FROM predictions WHERE request_id = 'r1'").fetchone()[0]


def test_a_merge_adds_what_is_new_and_refuses_every_clash(source: Registry, tmp_path: Path) -> None:
    data = exported(source)
    target = Registry(tmp_path / "target")
    target.open()
    register(target, "sports", 9.0)
    target.set_alias("sports", "production", "v1", "dave")
    merged = imported(target, data)
    assert merged["added"] == ["news/v1", "news/v2", "news/v3", "reviews/v1"] and merged["aliases"] == 3
    assert [m["name"] for m in target.list_models()] == ["news", "reviews", "sports"]
    assert target.get("sports")["version"] == "v1" and target.history("sports")[0]["moved_by"] == "dave"

    # a registry that went on from the archive keeps its own later moves
    target.set_alias("news", "production", "v3", "erin")
    assert imported(target, data)["unchanged"] == ["news/v1", "news/v2", "news/v3", "reviews/v1"]
    assert target.get("news", "production")["version"] == "v3"

    other = Registry(tmp_path / "other")
    other.open()
    register(other, "news", 7.0)  # news/v1 with other artifacts
    register(other, "sports", 1.0)
    before, blobs = state(other), sorted(other.blobs.glob("*/*"))
    with pytest.raises(
        FailedPrecondition, match=r"clashes with this registry, so nothing was imported: news/v1 holds other artifacts here"
    ):
        imported(other, data)
    assert state(other) == before and sorted(other.blobs.glob("*/*")) == blobs  # not even reviews/v1, which did not clash
    target.close()
    other.close()


def test_damaged_and_foreign_archives_are_refused_before_anything_changes(source: Registry, tmp_path: Path) -> None:
    data = exported(source)
    target = Registry(tmp_path / "target")
    target.open()
    register(target, "sports", 1.0)
    before = state(target)
    found = members(data)
    blob = next(name for name in found if name.startswith(archive.ARTIFACTS))
    document = json.loads(found[archive.CHECKSUMS])
    cases = {
        "truncated": (data[: len(data) // 2], "damaged"),
        "a changed artifact": (
            rebuilt({**found, blob: found[blob][:-1] + b"x"}),
            f"damaged and nothing was imported: {blob} does not match",
        ),
        "a missing artifact": (rebuilt({k: v for k, v in found.items() if k != blob}), f"misses {blob}"),
        "a changed registry.json": (
            rebuilt({**found, archive.REGISTRY: found[archive.REGISTRY].replace(b'"alice"', b'"mallory"')}),
            "registry.json does not match its checksum",
        ),
        "a stray member": (rebuilt({**found, "run.sh": b"rm -rf /"}), "not a fenlei registry archive: it holds 'run.sh'"),
        "no checksums": (rebuilt({k: v for k, v in found.items() if k != archive.CHECKSUMS}), f"no {archive.CHECKSUMS}"),
        "another format": (
            rebuilt({**found, archive.CHECKSUMS: json.dumps({**document, "format": "mlflow"}).encode()}),
            "not a fenlei registry archive: its checksums.json names the format 'mlflow'",
        ),
        "a newer format version": (
            rebuilt({**found, archive.CHECKSUMS: json.dumps({**document, "format_version": 2}).encode()}),
            "format_version '2', and this fenlei reads format_version 1",
        ),
        "not a tar": (b"PK\x03\x04 a zip file" * 100, "not a fenlei registry archive: it is not a tar archive"),
        "nothing": (b"", "it is empty"),
    }
    for case, (damaged, message) in cases.items():
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
            imported(target, damaged)
        assert state(target) == before, case
    assert not list(target.work.glob(".tmp-*"))  # nothing received is left behind
    target.close()


def test_rows_that_do_not_fit_together_are_refused(source: Registry, tmp_path: Path) -> None:
    """An archive with valid checksums whose rows lie (rewritten and checksummed again) is refused too."""
    found = members(exported(source))
    document = json.loads(found[archive.REGISTRY])
    escaping = json.loads(json.dumps(document))
    escaping["tables"]["files"][0]["path"] = "../../escape.json"
    lying = json.loads(json.dumps(document))
    lying["tables"]["versions"][0]["digest"] = "0" * 64

    def sealed(changed: dict) -> bytes:
        content = json.dumps(changed).encode()
        checksums = json.loads(found[archive.CHECKSUMS])
        checksums["files"][archive.REGISTRY] = hashlib.sha256(content).hexdigest()
        return rebuilt({**found, archive.CHECKSUMS: json.dumps(checksums).encode(), archive.REGISTRY: content})

    target = Registry(tmp_path / "target")
    target.open()
    with pytest.raises(InvalidInput, match="names a file '../../escape.json' it does not hold"):
        imported(target, sealed(escaping))
    with pytest.raises(InvalidInput, match="does not match its digest"):
        imported(target, sealed(lying))
    assert target.list_models() == [] and not (tmp_path / "target" / "escape.json").exists()
    target.close()
