"""The registry's core on a temporary home: versions numbered by the database and their
views, search, tags, aliases with history, rollback and compare-and-set, deletion and its
refusals, migrations, adoption of a pre-registry home, the repairs of `open`, and many
threads moving one alias at once."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.registry import schema
from fenlei.registry.experiments import ArmSpec, Experiments
from fenlei.registry.store import TEMPORARY, Registry
from fenlei.runtime import artifacts
from fenlei.runtime.db import Database
from fenlei.runtime.models import LoadedModels, ModelStore
from fenlei.services import STAGE_NAMES

LABELS = ["finance", "sports"]
DESIGNED_TABLES = {
    "models",
    "versions",
    "files",
    "tags",
    "aliases",
    "alias_moves",
    "experiments",
    "arms",
    "assignments",
    "predictions",
    "experiment_events",
}


def fill(store: ModelStore, name: str, weight: float):
    """A draft as training leaves it: a part for every stage; only the classifier's weight
    differs between drafts, so versions share the other parts' blobs."""
    draft = store.create_draft(name)
    for part in STAGE_NAMES[:-1]:
        artifacts.write_json(draft.part(part), part, {"part": part})
    artifacts.write_array(draft.part("classifier"), "coef", np.array([weight]))
    return draft


def register(registry: Registry, name: str, weight: float, accuracy: float = 0.5, tags: dict | None = None, by: str = "trainer") -> str:
    with fill(registry.store, name, weight) as draft:
        metrics = {"accuracy": accuracy, "macro_f1": accuracy - 0.01}
        return registry.register(name, draft.id, {"dataset_sha256": "ab" * 32}, metrics, tags or {}, LABELS, by)["version"]


def coef(directory: Path) -> float:
    return float(artifacts.read_array(directory, "coef")[0])


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path)
    registry.open()
    yield registry
    registry.close()


# ---------------------------------------------------------------- versions


def test_a_registered_draft_is_the_next_version_with_its_files_in_the_blob_store(registry: Registry) -> None:
    store = registry.store
    with fill(store, "news", 1.0) as draft:
        version = registry.register("news", draft.id, {"dataset_source": "a.txt"}, {"accuracy": 0.9}, {"team": "nlp"}, LABELS, "alice")
        drafted = {path: artifacts.sha256_file(draft.directory / path) for path in files_under(draft.directory)}
    assert (version["name"], version["version"], version["created_by"], version["labels"]) == ("news", "v1", "alice", LABELS)
    assert (version["lineage"], version["metrics"], version["tags"], version["aliases"]) == (
        {"dataset_source": "a.txt"},
        {"accuracy": 0.9},
        {"team": "nlp"},
        [],
    )
    view = store.version_dir("news", "v1")
    manifest = store.manifest("news", "v1")
    assert manifest["files"] == drafted and manifest["digest"] == version["digest"]
    store.verify("news", "v1")  # what a stage checks before it serves
    for path, sha in drafted.items():
        blob = registry.blob(sha)
        assert blob.is_file() and os.path.samefile(blob, view / path)  # a hard link: no copy
    assert version["size_bytes"] == sum((view / path).stat().st_size for path in drafted)
    assert register(registry, "news", 2.0) == "v2"
    assert store.versions("news") == ["v1", "v2"]
    # the parts both versions have alike are one blob
    assert len(list(registry.blobs.glob("*/*"))) == len(drafted) + 1


def test_version_numbers_come_from_the_database_and_are_never_given_twice(registry: Registry) -> None:
    for weight in (1.0, 2.0, 3.0):
        register(registry, "news", weight)
    registry.delete("news", "v3")
    assert register(registry, "news", 4.0) == "v4"
    assert register(registry, "other", 1.0) == "v1"
    assert [v["version"] for v in registry.search("news")] == ["v4", "v2", "v1"]
    # a version published beside the registry (an older fenlei) is stepped over, then adopted
    with fill(registry.store, "news", 5.0) as draft:
        assert registry.store.publish(draft, {}) == "v5"
    assert register(registry, "news", 6.0) == "v6"
    assert registry.open()["adopted"] == ["news/v5"]
    assert LoadedModels(registry.store, "classifier", coef).get("news", "v5") == 5.0


def test_what_is_not_a_live_complete_draft_is_refused(registry: Registry, tmp_path: Path) -> None:
    store = registry.store
    with pytest.raises(NotFound, match="no draft 'draft-0+'"):
        registry.register("news", "draft-" + "0" * 32, {}, {}, {}, LABELS, "x")
    with pytest.raises(InvalidInput, match="not a draft id"):
        registry.register("news", "v1", {}, {}, {}, LABELS, "x")
    with store.create_draft("news") as draft:
        artifacts.write_json(draft.part("segmenter"), "segmenter", {})
        with pytest.raises(FailedPrecondition, match="no preprocessor, features, classifier part"):
            registry.register("news", draft.id, {}, {}, {}, LABELS, "x")
    # a draft whose training is gone (its lease free) may be incomplete: never registered
    abandoned = fill(store, "news", 1.0)
    os.close(abandoned._lease)
    abandoned._lease = None
    with pytest.raises(FailedPrecondition, match="held by no running training"):
        registry.register("news", abandoned.id, {}, {}, {}, LABELS, "x")
    with pytest.raises(InvalidInput, match="tag key"):
        with fill(store, "news", 1.0) as draft:
            registry.register("news", draft.id, {}, {}, {"bad key": "x"}, LABELS, "x")
    assert store.versions("news") == [] and registry.list_models() == []


def test_references_resolve_like_the_data_plane_and_unknown_ones_are_named(registry: Registry) -> None:
    register(registry, "news", 1.0)
    register(registry, "news", 2.0)
    store = registry.store
    assert registry.get("news")["version"] == store.resolve("news") == "v2"  # newest without production
    registry.set_alias("news", "production", "v1", "admin")
    registry.set_alias("news", "staging", "production", "admin")  # an alias names its target
    for reference, version in (("", "v1"), ("production", "v1"), ("staging", "v1"), ("v2", "v2")):
        assert registry.get("news", reference)["version"] == store.resolve("news", reference) == version
    assert registry.get("news", "v1")["aliases"] == ["production", "staging"]
    with pytest.raises(NotFound, match=r"no version or alias 'canary'; versions: v1, v2; aliases: production, staging"):
        registry.get("news", "canary")
    with pytest.raises(NotFound, match="no version or alias 'canary'.*aliases: production, staging"):
        store.resolve("news", "canary")
    with pytest.raises(NotFound, match="no version or alias 'v9'"):
        registry.get("news", "v9")
    with pytest.raises(NotFound, match="no model named 'sport'") as unknown:
        registry.get("sport")
    assert "news" not in str(unknown.value)
    with pytest.raises(InvalidInput, match="not valid"):
        registry.get("news", "../v1")


def test_search_by_name_tag_and_metric_always_with_aliases(registry: Registry) -> None:
    register(registry, "news", 1.0, accuracy=0.80, tags={"team": "nlp", "data": "2024"})
    register(registry, "news", 2.0, accuracy=0.90, tags={"team": "nlp"})
    register(registry, "news", 3.0, accuracy=0.85, tags={"team": "web"})
    register(registry, "reviews", 1.0, accuracy=0.95)
    registry.set_alias("news", "production", "v2", "admin")
    registry.set_alias("reviews", "production", "v1", "admin")

    def found(**query) -> list[tuple[str, str, list[str]]]:
        return [(v["name"], v["version"], v["aliases"]) for v in registry.search(**query)]

    assert found() == [("reviews", "v1", ["production"]), ("news", "v3", []), ("news", "v2", ["production"]), ("news", "v1", [])]
    assert found(name="news", tags=["team=nlp"]) == [("news", "v2", ["production"]), ("news", "v1", [])]
    assert found(tags=["data"]) == [("news", "v1", [])]
    assert found(tags=["team=nlp", "data=2024"]) == [("news", "v1", [])]
    assert found(metric="accuracy", min_value=0.85) == [
        ("reviews", "v1", ["production"]),
        ("news", "v3", []),
        ("news", "v2", ["production"]),
    ]
    assert found(name="news", metric="accuracy", order_by_metric=True) == [
        ("news", "v2", ["production"]),
        ("news", "v3", []),
        ("news", "v1", []),
    ]
    assert found(metric="macro_f1", order_by_metric=True, limit=1) == [("reviews", "v1", ["production"])]
    with pytest.raises(InvalidInput, match="metric 'recall' is not one a search knows: accuracy, macro_f1"):
        registry.search(metric="recall")
    with pytest.raises(InvalidInput, match="name the metric"):
        registry.search(order_by_metric=True)


def test_tags_are_set_replaced_and_removed(registry: Registry) -> None:
    register(registry, "news", 1.0, tags={"team": "nlp", "stale": "yes"})
    registry.set_alias("news", "production", "v1", "admin")
    tagged = registry.tag("news", "production", {"team": "search", "reviewed": "true"}, ["stale"])
    assert tagged["version"] == "v1" and tagged["tags"] == {"reviewed": "true", "team": "search"}
    assert registry.get("news", "v1")["tags"] == tagged["tags"]
    with pytest.raises(InvalidInput, match="both set and removed"):
        registry.tag("news", "v1", {"team": "x"}, ["team"])
    with pytest.raises(InvalidInput, match="at most 256 characters"):
        registry.tag("news", "v1", {"team": "x" * 257})


# ---------------------------------------------------------------- aliases


def test_every_alias_move_is_history_and_rollback_moves_back(tmp_path: Path) -> None:
    now = [1000.0]
    registry = Registry(tmp_path, clock=lambda: now[0])
    registry.open()
    for weight in (1.0, 2.0, 3.0):
        register(registry, "news", weight)
    steps = [
        lambda: registry.set_alias("news", "production", "v1", "alice", "first release"),
        lambda: registry.set_alias("news", "staging", "v3", "bob"),
        lambda: registry.set_alias("news", "production", "v2", "bob", "better on the test set"),
        lambda: registry.rollback("news", "production", "carol", "v2 misroutes sports"),
        lambda: registry.delete_alias("news", "staging", "alice", "no staging now"),
    ]
    for step in steps:
        now[0] += 1
        step()
    moves = [
        (m["sequence"], m["alias"], m["from_version"], m["to_version"], m["moved_by"], m["moved"], m["reason"])
        for m in registry.history("news")
    ]
    assert moves == [
        (1, "production", "", "v1", "alice", 1001.0, "first release"),
        (2, "staging", "", "v3", "bob", 1002.0, ""),
        (3, "production", "v1", "v2", "bob", 1003.0, "better on the test set"),
        (4, "production", "v2", "v1", "carol", 1004.0, "v2 misroutes sports"),
        (5, "staging", "v3", "", "alice", 1005.0, "no staging now"),
    ]
    assert [m["sequence"] for m in registry.history("news", "production")] == [1, 3, 4]
    assert registry.store.routing("news")["aliases"] == {"production": "v1"}
    # a rollback of a rollback moves forward again; one of a removal brings the alias back
    forward = registry.rollback("news", "production", "dave")
    assert (forward["sequence"], forward["from_version"], forward["to_version"], forward["reason"]) == (6, "v1", "v2", "rollback of move 4")
    back = registry.rollback("news", "staging", "dave")
    assert (back["sequence"], back["from_version"], back["to_version"], back["reason"]) == (7, "", "v3", "rollback of move 5")
    assert registry.store.routing("news")["aliases"] == {"production": "v2", "staging": "v3"}
    registry.close()


def test_refused_moves_change_nothing_and_say_why(registry: Registry) -> None:
    register(registry, "news", 1.0)
    register(registry, "news", 2.0)
    registry.set_alias("news", "production", "v1", "alice")
    with pytest.raises(FailedPrecondition, match="created by its last move.*no earlier version"):
        registry.rollback("news", "production", "bob")
    with pytest.raises(FailedPrecondition, match="'production' of model 'news' points at v1, not at v2 as expected: it moved meanwhile"):
        registry.set_alias("news", "production", "v2", "bob", expected="v2")
    with pytest.raises(FailedPrecondition, match="points at v1, not nowhere as expected"):
        registry.set_alias("news", "production", "v2", "bob", expected="")
    assert registry.set_alias("news", "production", "v2", "bob", expected="v1")["from_version"] == "v1"
    assert registry.set_alias("news", "canary", "v1", "bob", expected="")["to_version"] == "v1"
    with pytest.raises(NotFound, match="no alias 'beta' and never had; its aliases: canary, production"):
        registry.rollback("news", "beta", "bob")
    with pytest.raises(NotFound, match="no alias 'beta'"):
        registry.delete_alias("news", "beta", "bob")
    with pytest.raises(InvalidInput, match="not valid.*neither a version"):
        registry.set_alias("news", "v7", "v1", "bob")
    with pytest.raises(InvalidInput, match="name the version"):
        registry.set_alias("news", "beta", "", "bob")
    with pytest.raises(NotFound, match="no version or alias 'v5'"):
        registry.set_alias("news", "beta", "v5", "bob")
    assert len(registry.history("news")) == 3
    # a rollback to a version deleted since is refused by name
    registry.set_alias("news", "canary", "v2", "bob")
    registry.delete("news", "v1")
    with pytest.raises(FailedPrecondition, match="pointed at v1 before its last move, but v1 has been deleted"):
        registry.rollback("news", "canary", "bob")


def test_concurrent_alias_moves_lose_no_update(registry: Registry) -> None:
    """Threads move one alias by compare-and-set, retrying when another moved it first: every
    move lands, each from the version the move before it left."""
    versions = [register(registry, "news", float(weight)) for weight in range(4)]
    threads, moves_each = 8, 25
    landed: list[list[int]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def mover(index: int) -> None:
        try:
            for _ in range(moves_each):
                while True:
                    current = registry.list_models()[0]["aliases"].get("production", "")
                    target = versions[(versions.index(current) + 1) % len(versions)] if current else versions[0]
                    try:
                        move = registry.set_alias("news", "production", target, f"mover-{index}", expected=current)
                    except FailedPrecondition:
                        continue  # another moved it first: read again
                    landed[index].append(move["sequence"])
                    break
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    workers = [threading.Thread(target=mover, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures, failures
    history = registry.history("news")
    assert [m["sequence"] for m in history] == list(range(1, threads * moves_each + 1))
    assert sorted(s for mine in landed for s in mine) == [m["sequence"] for m in history]
    for earlier, later in zip(history, history[1:]):
        assert later["from_version"] == earlier["to_version"]  # no move was lost between them
    for index, mine in enumerate(landed):
        assert [m["sequence"] for m in history if m["moved_by"] == f"mover-{index}"] == mine
    assert registry.store.routing("news")["aliases"]["production"] == history[-1]["to_version"]


# ---------------------------------------------------------------- deletion


def test_delete_is_refused_while_an_alias_or_a_running_experiment_uses_the_version(registry: Registry) -> None:
    for weight in (1.0, 2.0, 3.0):
        register(registry, "news", weight)
    registry.set_alias("news", "production", "v1", "admin")
    registry.set_alias("news", "stable", "v1", "admin")
    experiments = Experiments(registry)
    experiments.create("ab", "news", [ArmSpec("a", "production", 1), ArmSpec("b", "v2", 1)], "fixed", "", "admin")
    with pytest.raises(FailedPrecondition, match=r"'v1' is in use and was not deleted: alias production, stable points at it"):
        registry.delete("news", "v1")
    with pytest.raises(FailedPrecondition, match=r"'v2' is in use.*running experiment ab routes traffic to it"):
        registry.delete("news", "v2")
    with pytest.raises(FailedPrecondition, match="'production' of model 'news' is the target of an arm of running experiment ab"):
        registry.delete_alias("news", "production", "admin")
    with pytest.raises(InvalidInput, match="name the version to delete"):
        registry.delete("news", "production")
    assert registry.store.versions("news") == ["v1", "v2", "v3"]
    experiments.end("ab", "", "", "done", "admin")
    assert registry.delete("news", "v2") == "v2"
    with pytest.raises(NotFound, match="no version or alias 'v2'"):
        registry.delete("news", "v2")


def test_delete_removes_the_view_and_the_blobs_no_other_version_uses(registry: Registry) -> None:
    register(registry, "news", 1.0)
    register(registry, "news", 2.0)
    store = registry.store
    models = LoadedModels(store, "classifier", coef)
    assert models.get("news", "v2") == 2.0  # loaded, and cached
    own = store.manifest("news", "v2")["files"]["classifier/coef.npy"]
    shared = store.manifest("news", "v2")["files"]["features/features.json"]
    registry.delete("news", "v2")
    assert store.versions("news") == ["v1"] and not store.version_dir("news", "v2").exists()
    assert not registry.blob(own).exists() and registry.blob(shared).is_file()
    store.verify("news", "v1")
    with pytest.raises(NotFound, match="no published version 'v2'"):
        models.get("news", "v2")  # the stage's cache does not serve a deleted version
    assert models.get("news", "") == 1.0


# ---------------------------------------------------------------- the database


def test_the_schema_is_migrated_from_an_empty_database(tmp_path: Path) -> None:
    database = Database(tmp_path / "registry.db", schema.MIGRATIONS)
    assert database.migrated_from == 0
    with database.read() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == len(schema.MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert tables == DESIGNED_TABLES and "experiments_running" in indexes
    database.close()
    again = Database(tmp_path / "registry.db", schema.MIGRATIONS)
    assert again.migrated_from == schema.SCHEMA_VERSION  # nothing to do the second time
    again.close()


def test_a_later_migration_runs_in_one_transaction_with_its_version(tmp_path: Path) -> None:
    Database(tmp_path / "registry.db", schema.MIGRATIONS).close()
    broken = (*schema.MIGRATIONS, ("CREATE TABLE notes (text TEXT)", "INSERT INTO no_such_table VALUES (1)"))
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        Database(tmp_path / "registry.db", broken)
    with sqlite3.connect(tmp_path / "registry.db") as conn:  # the step left nothing, its version included
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(broken) - 1
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'notes'").fetchone() is None
    working = (*schema.MIGRATIONS, ("CREATE TABLE notes (text TEXT)",))
    assert Database(tmp_path / "registry.db", working).migrated_from == len(working) - 1


def test_a_database_of_a_newer_fenlei_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "registry.db") as conn:
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    newer = f"registry database .* schema version {schema.SCHEMA_VERSION + 1}, newer than this fenlei's {schema.SCHEMA_VERSION}"
    with pytest.raises(FailedPrecondition, match=newer):
        Database(tmp_path / "registry.db", schema.MIGRATIONS)


def test_a_versions_report_is_kept_and_returned_by_get_only(registry: Registry) -> None:
    register(registry, "news", 1.0)
    with fill(registry.store, "news", 2.0) as draft:
        report = {"accuracy": 0.5, "labels": ["体育", "财经"], "confusion": [{"counts": [1, 1]}, {"counts": [0, 2]}]}
        registry.register("news", draft.id, {}, {"accuracy": 0.5}, {}, LABELS, "alice", report)
    assert registry.get("news", "v2")["report"] == report and registry.get("news", "v1")["report"] == {}
    assert all("report" not in version for version in registry.search(name="news"))  # searches stay small


def test_versions_of_before_reports_gain_an_empty_one(tmp_path: Path) -> None:
    before = Database(tmp_path / "registry.db", schema.MIGRATIONS[:1])
    with before.transaction() as conn:
        conn.execute("INSERT INTO models VALUES ('news', 1)")
        conn.execute("INSERT INTO versions VALUES ('news', 1, 0, 'alice', '{}', '{}', '[]', 'd', 0)")
    before.close()
    database = Database(tmp_path / "registry.db", schema.MIGRATIONS)
    assert database.migrated_from == 1
    with database.read() as conn:
        assert [row["report"] for row in conn.execute("SELECT report FROM versions")] == ["{}"]
    database.close()


def test_transactions_are_all_or_nothing_and_views_follow_only_commits(registry: Registry) -> None:
    register(registry, "news", 1.0)
    written: list[str] = []
    with pytest.raises(sqlite3.IntegrityError):
        with registry.db.transaction() as conn:
            conn.execute("INSERT INTO aliases (name, alias, number) VALUES ('news', 'a', 1)")
            registry.db.after_commit("x", lambda: written.append("x"))
            conn.execute("INSERT INTO aliases (name, alias, number) VALUES ('news', 'b', 9)")  # no v9: a foreign key fails
    with registry.db.transaction() as conn:
        conn.execute("INSERT INTO aliases (name, alias, number) VALUES ('news', 'a', 1)")
        with pytest.raises(NotFound):
            with registry.db.transaction() as inner:  # a savepoint: only it is undone
                inner.execute("INSERT INTO aliases (name, alias, number) VALUES ('news', 'c', 1)")
                registry.db.after_commit("c", lambda: written.append("c"))
                raise NotFound("refused")
        registry.db.after_commit("a", lambda: written.append("a"))
    with registry.db.read() as conn:
        assert [row[0] for row in conn.execute("SELECT alias FROM aliases")] == ["a"]
    assert written == ["a"]


# ---------------------------------------------------------------- start: adoption and repairs


def test_a_pre_registry_home_is_adopted_with_nothing_lost(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    report = {"accuracy": 0.75, "macro_f1": 0.7, "per_class": {"sports": {"precision": 1.0, "recall": 0.5, "f1-score": 0.66, "support": 4}}}
    for weight in (1.0, 2.0):
        with fill(store, "news", weight) as draft:
            store.publish(draft, {"report": {**report, "train_documents": 10, "seconds": 1.5}, "labels": LABELS})
    damaged = None
    with fill(store, "old", 3.0) as draft:
        damaged = store.publish(draft, {})
    (store.version_dir("old", damaged) / "classifier" / "coef.npy").write_bytes(b"damaged")
    before = {version: files_under(store.version_dir("news", version)) for version in ("v1", "v2")}
    models = LoadedModels(store, "classifier", coef)
    assert models.get("news", "") == 2.0

    registry = Registry(tmp_path)
    opened = registry.open()
    assert opened["adopted"] == ["news/v1", "news/v2"]  # the damaged one never served and stays as it was
    adopted = registry.get("news", "v1")
    assert (adopted["created_by"], adopted["labels"], adopted["metrics"]["accuracy"], adopted["metrics"]["train_documents"]) == (
        "adopted",
        LABELS,
        0.75,
        10,
    )
    assert adopted["metrics"]["per_class"]["sports"] == {"precision": 1.0, "recall": 0.5, "f1": 0.66, "support": 4}
    assert adopted["metrics"]["train_seconds"] == 1.5
    for version, files in before.items():
        assert files_under(store.version_dir("news", version)) == files
        store.verify("news", version)
        assert store.manifest("news", version)["source"] == "registry"
    assert models.get("news", "v1") == 1.0 and models.get("news", "") == 2.0
    assert store.versions("old") == [damaged] and registry.list_models() == [
        {"name": "news", "versions": 2, "newest_version": "v2", "aliases": {}, "experiment": ""}
    ]
    # the next version follows the adopted ones; the next start adopts nothing again
    assert register(registry, "news", 4.0) == "v3"
    registry.close()
    again = Registry(tmp_path)
    assert again.open()["adopted"] == [] and [v["version"] for v in again.search("news")] == ["v3", "v2", "v1"]
    again.close()


def test_open_repairs_what_a_crash_left(registry: Registry) -> None:
    for weight in (1.0, 2.0, 3.0):
        register(registry, "news", weight)
    registry.set_alias("news", "production", "v2", "admin")
    store, home = registry.store, registry.home
    expected_routing = store.routing("news")
    v1 = files_under(store.version_dir("news", "v1"))
    # a crash after a deletion's commit: the row is gone, its view is not
    with registry.db.transaction() as conn:
        conn.execute("DELETE FROM versions WHERE name = 'news' AND number = 3")
    # a crash after a registration's commit: the row is there, its view is not (nor the routing)
    for path in sorted(store.version_dir("news", "v1").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    store.version_dir("news", "v1").rmdir()
    (store.model_dir("news") / "routing.json").unlink()
    # a crash before an import's commit: a blob nobody references, temporary files
    stray = registry.blob("f" * 64)
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    (registry.work / f"{TEMPORARY}import").mkdir()
    (store.model_dir("news") / f"{TEMPORARY}view").mkdir()
    registry.close()

    again = Registry(home)
    opened = again.open()
    assert opened["views_written"] == ["news/v1"] and opened["views_removed"] == ["news/v3"]
    assert opened["blobs_removed"] == 2  # the stray, and v3's own classifier blob
    assert sorted(opened["temporaries_removed"]) == [f"models/news/{TEMPORARY}view", f"registry/{TEMPORARY}import"]
    assert store.versions("news") == ["v1", "v2"] and files_under(store.version_dir("news", "v1")) == v1
    store.verify("news", "v1")
    assert store.routing("news") == expected_routing
    assert again.open() == {"temporaries_removed": [], "adopted": [], "blobs_removed": 0, "views_written": [], "views_removed": []}
    again.close()


def test_routing_json_is_the_registrys_view_of_aliases(registry: Registry) -> None:
    register(registry, "news", 1.0)
    store = registry.store
    assert store.routing("news") == {"aliases": {}, "experiment": None}
    registry.set_alias("news", "production", "v1", "admin")
    routing = json.loads((store.model_dir("news") / "routing.json").read_text(encoding="utf-8"))
    assert routing == {"aliases": {"production": "v1"}, "experiment": None}
    (store.model_dir("news") / "routing.json").write_text("{damaged")
    with pytest.raises(FailedPrecondition, match="routing of model 'news' is damaged"):
        store.resolve("news")
