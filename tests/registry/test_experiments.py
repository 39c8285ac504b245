"""The experiments core over a real registry database (fenlei.registry.store.Registry on a
temporary home): creation and its refusals, sticky assignment, records, feedback and
scores, weights, Thompson allocation, ending with a promotion."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.registry import servicer as registry_servicer
from fenlei.registry.experiments import (
    FIXED,
    FLOOR,
    THOMPSON,
    ArmSpec,
    Experiments,
    arm_at,
    key_point,
    routing_of,
    thompson_weights,
    users_of,
)
from fenlei.registry.experiments_servicer import Rebalancer
from fenlei.registry.store import Registry
from fenlei.runtime.models import ModelStore
from fenlei.services import STAGE_NAMES
from fenlei.v1 import registry_pb2, registry_pb2_grpc

LABELS = ["finance", "sports"]


def register(registry: Registry, name: str) -> str:
    """A version of `name` as training registers one (a draft with a file for every stage)."""
    with registry.store.create_draft(name) as draft:
        for part in STAGE_NAMES:
            draft.part(part).mkdir(parents=True)
            (draft.part(part) / "config.json").write_text(json.dumps({"part": part, "draft": draft.id}))
        return registry.register(name, draft.id, {}, {}, {}, LABELS, "trainer")["version"]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path)
    registry.open()
    for _ in range(3):
        register(registry, "news")
    registry.set_alias("news", "production", "v1", "admin", "first")
    yield registry
    registry.close()


@pytest.fixture
def experiments(registry: Registry) -> Experiments:
    return Experiments(registry)


def two_arms(a: float = 1.0, b: float = 1.0) -> list[ArmSpec]:
    return [ArmSpec("a", "production", a), ArmSpec("b", "v2", b)]


def events(registry: Registry, name: str) -> list[tuple[str, str, dict]]:
    with registry.db.read() as conn:
        rows = conn.execute("SELECT kind, by, detail FROM experiment_events WHERE experiment = ? ORDER BY sequence", (name,)).fetchall()
    return [(kind, by, json.loads(detail)) for kind, by, detail in rows]


def test_create_resolves_targets_writes_the_routing_and_an_event(registry: Registry, experiments: Experiments) -> None:
    view = experiments.create("ab", "news", two_arms(1, 3), FIXED, "v2 against production", "alice")
    assert [(a.name, a.target, a.weight, a.version) for a in view.arms] == [("a", "production", 1.0, "v1"), ("b", "v2", 3.0, "v2")]
    assert (view.model, view.allocation, view.running, view.created_by, view.revision, view.leader) == ("news", FIXED, True, "alice", 1, "")
    assert [(s.arm, s.predictions, s.feedback, s.accuracy) for s in view.scores] == [("a", 0, 0, 0.0), ("b", 0, 0, 0.0)]
    routing = ModelStore(registry.home).routing("news")
    assert routing["experiment"] == {
        "name": "ab",
        "revision": 1,
        "arms": [
            {"name": "a", "target": "production", "version": "v1", "weight": 1.0},
            {"name": "b", "target": "v2", "version": "v2", "weight": 3.0},
        ],
    }
    assert routing["aliases"] == {"production": "v1"}
    assert events(registry, "ab") == [
        (
            "created",
            "alice",
            {
                "allocation": FIXED,
                "arms": [{"name": "a", "target": "production", "weight": 1.0}, {"name": "b", "target": "v2", "weight": 3.0}],
            },
        )
    ]
    with registry.db.read() as conn:
        assert users_of(conn, "news") == {"production": ["ab"], "v2": ["ab"]}
    assert [v.name for v in experiments.list()] == ["ab"]


def test_an_alias_move_moves_the_arm_that_targets_it(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    registry.set_alias("news", "production", "v3", "admin", "hotfix")
    assert [arm["version"] for arm in ModelStore(registry.home).routing("news")["experiment"]["arms"]] == ["v3", "v2"]
    assert [a.version for a in experiments.get("ab").arms] == ["v3", "v2"]


@pytest.mark.parametrize(
    ("arms", "allocation", "error", "message"),
    [
        ([ArmSpec("a", "v1", 1)], FIXED, InvalidInput, "an experiment has 2 to 10 arms, not 1"),
        ([ArmSpec("a", "v1", 1), ArmSpec("a", "v2", 1)], FIXED, InvalidInput, "arm names must differ: 'a' given more than once"),
        ([ArmSpec("a", "v1", -1), ArmSpec("b", "v2", 1)], FIXED, InvalidInput, "arm 'a': a weight is a share of the traffic, a finite number >= 0, not -1"),
        ([ArmSpec("a", "v1", math.nan), ArmSpec("b", "v2", 1)], FIXED, InvalidInput, "a finite number >= 0, not nan"),
        ([ArmSpec("a", "v1", 0), ArmSpec("b", "v2", 0)], FIXED, InvalidInput, "the arms' weights (a=0, b=0) add up to 0"),
        ([ArmSpec("a", "v1", 1), ArmSpec("B!", "v2", 1)], FIXED, InvalidInput, "arm name 'B!' is not valid"),
        ([ArmSpec("a", "v1", 1), ArmSpec("b", "", 1)], FIXED, InvalidInput, "arm 'b' has no target: name a version (v3) or an alias"),
        ([ArmSpec("a", "v1", 1), ArmSpec("b", "v9", 1)], FIXED, NotFound, "model 'news' has no version or alias 'v9'; versions: v1, v2, v3; aliases: production"),
        ([ArmSpec("a", "v1", 1), ArmSpec("b", "staging", 1)], FIXED, NotFound, "has no version or alias 'staging'"),
        (two_arms(), "greedy", InvalidInput, "allocation 'greedy' is not one of fixed, thompson"),
    ],
)  # fmt: skip
def test_create_refuses_what_cannot_route(experiments: Experiments, arms, allocation, error, message) -> None:
    with pytest.raises(error) as refused:
        experiments.create("ab", "news", arms, allocation, "", "alice")
    assert message in str(refused.value)
    assert experiments.list(include_ended=True) == []


def test_one_running_experiment_per_model_and_names_are_never_reused(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    with pytest.raises(FailedPrecondition, match="model 'news' is in experiment 'ab' already: end it first"):
        experiments.create("cd", "news", two_arms(), FIXED, "", "alice")
    experiments.end("ab", "", "", "", "alice")
    with pytest.raises(FailedPrecondition, match="an experiment named 'ab' exists already"):
        experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    assert experiments.create("cd", "news", two_arms(), FIXED, "", "alice").running
    with pytest.raises(NotFound, match="no experiment named 'zz'; running experiments: 'cd'"):
        experiments.get("zz")


def test_a_key_keeps_its_first_arm_while_weights_change_in_every_replica(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(1, 1), FIXED, "", "alice")
    keys = [f"user-{i}" for i in range(300)]
    first = {key: experiments.assign("ab", key) for key in keys}
    assert {arm for arm, _ in first.values()} == {"a", "b"}
    # assigned by the hash of the key over the weights of that moment: what a pipeline falls back to
    assert all(arm == arm_at([("a", 1), ("b", 1)], key_point("ab", key)) for key, (arm, _) in first.items())
    assert {revision for _, revision in first.values()} == {1}
    for revision, weights in ((2, {"a": 0.0}), (3, {"a": 1.0, "b": 0.0}), (4, {"a": 0.1, "b": 5.0})):
        experiments.set_weights("ab", weights, "alice")
        assert {key: experiments.assign("ab", key) for key in keys} == {key: (arm, revision) for key, (arm, _) in first.items()}
    # another registry process on the same database (a restart, a replacement) answers the same
    again = Registry(registry.home)
    try:
        assert {key: Experiments(again).assign("ab", key)[0] for key in keys} == {key: arm for key, (arm, _) in first.items()}
    finally:
        again.close()
    # a key never seen gets the weights of now: b=5, a=0.1
    fresh = [experiments.assign("ab", f"new-{i}")[0] for i in range(300)]
    assert 0 < fresh.count("a") < 30 and fresh.count("b") > 270


def test_assign_refuses_an_unknown_or_ended_experiment_and_a_bad_key(experiments: Experiments) -> None:
    with pytest.raises(NotFound, match="no experiment named 'ab'"):
        experiments.assign("ab", "k")
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    kept = experiments.assign("ab", "k")
    with pytest.raises(InvalidInput, match="a routing key has 1 to 256 characters, not 0"):
        experiments.assign("ab", "")
    with pytest.raises(InvalidInput, match="not 257"):
        experiments.assign("ab", "k" * 257)
    experiments.end("ab", "", "", "", "alice")
    assert experiments.assign("ab", "k") == kept  # what was assigned stays readable
    with pytest.raises(FailedPrecondition, match="experiment 'ab' has ended"):
        experiments.assign("ab", "another")


def served(request_id: str, arm: str, label: str, document_id: str = "", experiment: str = "ab") -> tuple[str, str, str, str, str, str]:
    return (request_id, document_id, experiment, arm, {"a": "v1", "b": "v2"}[arm], label)


def test_feedback_scores_each_arm_with_accuracy_and_a_confusion_matrix(experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    recorded = experiments.record(
        [served("r1", "a", "sports"), served("r2", "a", "sports"), served("r3", "a", "finance"), served("r4", "b", "finance")]
        + [served("batch", "b", "sports", "d1"), served("batch", "b", "finance", "d2")]
    )
    assert recorded == 6
    # a retried request is kept once; a prediction of no arm of the experiment is not stored
    assert (
        experiments.record([served("r1", "a", "finance"), ("r9", "", "ab", "c", "v1", "x"), served("r9", "a", "x", experiment="cd")]) == 0
    )
    truth = {("r1", ""): "sports", ("r2", ""): "finance", ("r3", ""): "finance", ("r4", ""): "sports", ("batch", "d1"): "sports"}
    answers = {key: experiments.feedback(*key, label, "viewer") for key, label in truth.items()}
    assert [(f.experiment, f.arm, f.correct) for f in answers.values()] == [
        ("ab", "a", True), ("ab", "a", False), ("ab", "a", True), ("ab", "b", False), ("ab", "b", True)
    ]  # fmt: skip
    view = experiments.get("ab")
    a, b = view.scores
    assert (a.arm, a.predictions, a.feedback, a.correct, a.accuracy) == ("a", 3, 3, 2, pytest.approx(2 / 3))
    assert a.confusion == {"finance": {"finance": 1, "sports": 1}, "sports": {"sports": 1}}
    assert (b.arm, b.predictions, b.feedback, b.correct, b.accuracy) == ("b", 3, 2, 1, 0.5)
    assert b.confusion == {"sports": {"finance": 1, "sports": 1}}
    assert view.leader == "a"
    # a second feedback for the same prediction replaces the first
    assert experiments.feedback("r2", "", "sports", "viewer").correct
    a, _ = experiments.get("ab").scores
    assert (a.feedback, a.correct, a.confusion) == (3, 3, {"finance": {"finance": 1}, "sports": {"sports": 2}})


def test_feedback_for_what_no_experiment_served_is_refused_with_what_to_do(experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    experiments.record([served("batch", "a", "sports", "d1"), served("batch", "a", "sports", "d2")])
    with pytest.raises(NotFound) as refused:
        experiments.feedback("nobody", "", "sports", "viewer")
    assert "no prediction an experiment served has request id 'nobody'" in str(refused.value)
    assert "about a second after they were given" in str(refused.value)
    with pytest.raises(NotFound, match="request 'batch' has no document '': its documents are 'd1', 'd2'"):
        experiments.feedback("batch", "", "sports", "viewer")
    with pytest.raises(InvalidInput, match="give the true label"):
        experiments.feedback("batch", "d1", "", "viewer")
    with pytest.raises(InvalidInput, match="the request_id its answer carried"):
        experiments.feedback("", "d1", "sports", "viewer")


def test_set_weights_moves_the_routing_records_an_event_and_refuses_nonsense(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(1, 1), FIXED, "", "alice")
    view = experiments.set_weights("ab", {"b": 9}, "bob")
    assert ([a.weight for a in view.arms], view.revision) == ([1.0, 9.0], 2)
    routing = ModelStore(registry.home).routing("news")["experiment"]
    assert (routing["revision"], [a["weight"] for a in routing["arms"]]) == (2, [1.0, 9.0])
    assert events(registry, "ab")[-1] == ("weights", "bob", {"weights": {"b": 9.0}})
    with pytest.raises(InvalidInput, match="experiment 'ab' has no arm 'c': its arms are 'a', 'b'"):
        experiments.set_weights("ab", {"c": 1}, "bob")
    with pytest.raises(InvalidInput, match=r"add up to 0"):
        experiments.set_weights("ab", {"a": 0, "b": 0}, "bob")
    with pytest.raises(InvalidInput, match="name at least one arm"):
        experiments.set_weights("ab", {}, "bob")
    assert experiments.get("ab").revision == 2  # nothing of the refused ones stayed
    experiments.end("ab", "", "", "", "bob")
    with pytest.raises(FailedPrecondition, match="experiment 'ab' has ended"):
        experiments.set_weights("ab", {"a": 2}, "bob")


def test_ending_promotes_the_leader_in_the_alias_history(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    with pytest.raises(
        FailedPrecondition, match="experiment 'ab' has no leader \\(no feedback yet\\): name the winning arm to promote, one of 'a', 'b'"
    ):
        experiments.end("ab", "production", "", "", "alice")
    experiments.record([served("r1", "a", "sports"), served("r2", "b", "sports")])
    experiments.feedback("r1", "", "finance", "viewer")
    experiments.feedback("r2", "", "sports", "viewer")
    with pytest.raises(InvalidInput, match="experiment 'ab' has no arm 'c'"):
        experiments.end("ab", "production", "c", "", "alice")
    # a promotion that fails leaves the experiment running: one transaction
    with pytest.raises(InvalidInput, match="alias 'v7' is not valid"):
        experiments.end("ab", "v7", "", "", "alice")
    assert experiments.get("ab").running
    view, move = experiments.end("ab", "production", "", "b is better", "alice")
    assert (view.running, view.leader, move["from_version"], move["to_version"], move["moved_by"], move["reason"]) == (
        False, "b", "v1", "v2", "alice", "b is better"
    )  # fmt: skip
    assert registry.history("news", "production")[-1] == move
    assert ModelStore(registry.home).routing("news") == {"aliases": {"production": "v2"}, "experiment": None}
    assert events(registry, "ab")[-1] == (
        "ended",
        "alice",
        {"winner": "b", "reason": "b is better", "promoted": {"alias": "production", "version": "v2"}, "versions": {"a": "v1", "b": "v2"}},
    )
    # Arm a named production, which now points at v2: the ended experiment still shows what a served.
    assert [(arm.name, arm.target, arm.version) for arm in view.arms] == [("a", "production", "v1"), ("b", "v2", "v2")]
    with pytest.raises(FailedPrecondition, match="experiment 'ab' has ended already"):
        experiments.end("ab", "", "", "", "alice")
    assert experiments.list() == [] and [v.name for v in experiments.list(include_ended=True)] == ["ab"]
    with registry.db.read() as conn:
        assert users_of(conn, "news") == {} and routing_of(conn, "news", str) is None


def test_ending_without_a_promotion_names_the_winner_given(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(), FIXED, "", "alice")
    view, move = experiments.end("ab", "", "a", "", "alice")
    assert move is None and not view.running
    assert events(registry, "ab")[-1] == ("ended", "alice", {"winner": "a", "reason": "", "versions": {"a": "v1", "b": "v2"}})
    assert registry.history("news", "production")[-1]["to_version"] == "v1"


def test_thompson_weights_follow_the_chance_of_being_best_above_a_floor() -> None:
    weights = thompson_weights([(80, 20), (20, 80)], seed=1)
    assert weights == [pytest.approx(1 - FLOOR), pytest.approx(FLOOR)]
    even = thompson_weights([(50, 50), (50, 50)], seed=1)
    assert even[0] == pytest.approx(0.5, abs=0.04) and sum(even) == pytest.approx(1)
    close = thompson_weights([(55, 45), (45, 55), (10, 90)], seed=7)
    assert close[0] > close[1] > close[2] == pytest.approx(FLOOR) and sum(close) == pytest.approx(1)
    assert thompson_weights([(55, 45), (45, 55), (10, 90)], seed=7) == close  # seeded: the same feedback, the same weights


def test_thompson_feedback_moves_the_weights_toward_the_better_arm(registry: Registry, experiments: Experiments) -> None:
    experiments.create("ab", "news", two_arms(1, 1), THOMPSON, "", "alice")
    with pytest.raises(FailedPrecondition, match="allocates by Thompson sampling: its weights follow the feedback"):
        experiments.set_weights("ab", {"a": 3}, "alice")
    assert not experiments.rebalance("ab")  # without feedback the weights given stay
    experiments.record([served(f"a{i}", "a", "sports") for i in range(30)] + [served(f"b{i}", "b", "sports") for i in range(30)])
    for i in range(30):
        experiments.feedback(f"a{i}", "", "sports" if i % 3 else "finance", "viewer")  # a: 20 of 30 right
        experiments.feedback(f"b{i}", "", "sports" if i % 3 == 0 else "finance", "viewer")  # b: 10 of 30
    assert experiments.rebalance("ab")
    view = experiments.get("ab")
    a, b = (arm.weight for arm in view.arms)
    assert a > 0.9 and b == pytest.approx(FLOOR, abs=0.01) and a + b == pytest.approx(1)
    assert [arm["weight"] for arm in ModelStore(registry.home).routing("news")["experiment"]["arms"]] == [a, b]
    kind, by, detail = events(registry, "ab")[-1]
    assert (kind, by, detail["feedback"]) == ("weights", "thompson", {"a": {"correct": 20, "wrong": 10}, "b": {"correct": 10, "wrong": 20}})
    assert not experiments.rebalance("ab")  # nothing new: no new revision
    assert experiments.get("ab").revision == view.revision
    experiments.end("ab", "", "", "", "alice")
    assert not experiments.rebalance("ab")


def test_keys_spread_over_the_arms_by_their_weights() -> None:
    picks = [arm_at([("a", 0.2), ("b", 0.8)], key_point("exp", f"k{i}")) for i in range(20_000)]
    assert picks.count("a") / len(picks) == pytest.approx(0.2, abs=0.015)
    assert arm_at([("a", 0.0), ("b", 1.0), ("c", 0.0)], 0.0) == "b" and arm_at([("a", 0.0), ("b", 1.0), ("c", 0.0)], 0.99999) == "b"
    assert key_point("exp", "k1") == key_point("exp", "k1") != key_point("other", "k1")


def test_the_rebalancer_runs_at_once_then_once_more_for_a_burst() -> None:
    async def burst(every: float) -> list[str]:
        ran: list[str] = []
        rebalancer = Rebalancer(lambda name: ran.append(name) or True, every=every)
        rebalancer.soon("ab")
        while not ran:  # the first feedback moves the weights at once
            await asyncio.sleep(0.005)
        for _ in range(5):
            rebalancer.soon("ab")
        if every < 1:
            while len(ran) < 2:  # the burst: once more when the period is over
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        return ran

    assert asyncio.run(asyncio.wait_for(burst(every=3600), 30)) == ["ab"]  # not again within the period
    assert asyncio.run(asyncio.wait_for(burst(every=0.05), 30)) == ["ab", "ab"]  # five feedbacks, one more run


def test_the_servicer_refuses_what_the_contract_cannot_mean(servers, helpers, tmp_path) -> None:
    served = servers.start("registry", registry_servicer.register, helpers.settings_for(tmp_path))
    registry = Registry(tmp_path)
    try:
        register(registry, "news")
        register(registry, "news")
    finally:
        registry.close()
    stub = registry_pb2_grpc.ExperimentsStub(served.channel)
    arms = [registry_pb2.Arm(name="a", target="v1", weight=1), registry_pb2.Arm(name="b", target="v2", weight=1)]
    error = helpers.rpc_error(stub.CreateExperiment, registry_pb2.CreateExperimentRequest(name="ab", model="news", arms=arms, allocation=7))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "ALLOCATION_FIXED, ALLOCATION_THOMPSON" in error.details()
    created = stub.CreateExperiment(registry_pb2.CreateExperimentRequest(name="ab", model="news", arms=arms), timeout=30).experiment
    assert (created.allocation, created.running, created.created_by, created.HasField("ended")) == (
        registry_pb2.ALLOCATION_FIXED, True, "anonymous", False
    )  # fmt: skip
    routing = registry_pb2_grpc.ExperimentRoutingStub(served.channel)
    error = helpers.rpc_error(
        routing.RecordPredictions, registry_pb2.RecordPredictionsRequest(predictions=[registry_pb2.ServedPrediction(request_id="r")])
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "names its request id, experiment and arm" in error.details()
    error = helpers.rpc_error(stub.SetWeights, registry_pb2.SetWeightsRequest(name="ab", weights={"c": 1}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "its arms are 'a', 'b'" in error.details()
    ended = stub.EndExperiment(registry_pb2.EndExperimentRequest(name="ab", winner="b"), timeout=30)
    assert not ended.experiment.running and ended.experiment.ended.seconds > 0 and not ended.HasField("move")
    error = helpers.rpc_error(stub.EndExperiment, registry_pb2.EndExperimentRequest(name="ab"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "has ended already" in error.details()
    assert [e.name for e in stub.ListExperiments(registry_pb2.ListExperimentsRequest(all=True), timeout=30).experiments] == ["ab"]
    assert not stub.ListExperiments(registry_pb2.ListExperimentsRequest(), timeout=30).experiments
