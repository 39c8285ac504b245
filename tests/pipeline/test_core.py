import asyncio
from pathlib import Path

import pytest

from fenlei.errors import InvalidInput, NotFound, Unavailable
from fenlei.pipeline.core import ModelRouter, Recorder, Route, request_id, split
from fenlei.registry.experiments import arm_at, key_point
from fenlei.runtime import artifacts
from fenlei.runtime.models import ROUTING, ModelStore

HANG_GUARD = 30  # seconds: a broken recorder fails the test instead of hanging it


def publish(store: ModelStore, name: str) -> str:
    with store.create_draft(name) as draft:
        return store.publish(draft, {})


def route(router: ModelRouter, *args: str, **kwargs: str) -> Route:
    return asyncio.run(router.route(*args, **kwargs))


def write_routing(store: ModelStore, name: str, weights: dict[str, float] | None = None, aliases: dict[str, str] | None = None) -> None:
    """routing.json as the registry writes it: arm a serves v1, arm b v2."""
    experiment = None
    if weights is not None:
        versions = {"a": "v1", "b": "v2"}
        arms = [{"name": arm, "target": versions[arm], "version": versions[arm], "weight": w} for arm, w in weights.items()]
        experiment = {"name": "ab", "revision": 1, "arms": arms}
    artifacts.write_json(store.model_dir(name), ROUTING, {"aliases": aliases or {}, "experiment": experiment})


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path)
    publish(store, "news")
    publish(store, "news")
    return store


class FakeRegistry:
    """AssignArm as the registry answers it: the arm given for a key, or unavailable."""

    def __init__(self, arms: dict[str, str] | None = None) -> None:
        self.arms = arms or {}
        self.asked: list[tuple[str, str]] = []
        self.down = False

    async def assign(self, experiment: str, key: str) -> str:
        self.asked.append((experiment, key))
        if self.down:
            raise Unavailable("connection refused")
        return self.arms[key]


def test_router_resolves_default_newest_and_pinned(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "news")
    router = ModelRouter(store, default_model="news", ttl=0)
    assert route(router, "") == Route("news", "v1")
    publish(store, "news")
    assert route(router, "news") == Route("news", "v2")
    assert route(router, "news", "v1") == Route("news", "v1")
    with pytest.raises(NotFound, match="no model named 'other'"):
        route(router, "other")
    with pytest.raises(InvalidInput, match="name a model"):
        route(ModelRouter(store), "")


def test_router_caches_newest_for_its_ttl(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish(store, "news")
    router = ModelRouter(store, ttl=3600)
    assert route(router, "news").version == "v1"
    publish(store, "news")
    assert route(router, "news").version == "v1"
    assert route(router, "news", "v2").version == "v2"


def test_production_alias_answers_for_the_name(store: ModelStore) -> None:
    write_routing(store, "news", aliases={"production": "v1"})
    assert route(ModelRouter(store, ttl=0), "news") == Route("news", "v1")


def test_arms_are_drawn_by_weight(store: ModelStore) -> None:
    write_routing(store, "news", {"a": 1.0, "b": 3.0})
    draws = iter([0.0, 0.24, 0.26, 0.99])
    router = ModelRouter(store, ttl=0, draw=lambda: next(draws))
    assert [route(router, "news") for _ in range(4)] == [
        Route("news", "v1", "ab", "a"),
        Route("news", "v1", "ab", "a"),
        Route("news", "v2", "ab", "b"),
        Route("news", "v2", "ab", "b"),
    ]


def test_an_arm_of_weight_zero_is_never_drawn(store: ModelStore) -> None:
    write_routing(store, "news", {"a": 0.0, "b": 1.0})
    for point in (0.0, 0.5, 0.999999):
        assert route(ModelRouter(store, ttl=0, draw=lambda point=point: point), "news").arm == "b"


def test_the_arm_header_picks_the_arm_and_an_unknown_one_is_refused(store: ModelStore) -> None:
    write_routing(store, "news", {"a": 1.0, "b": 0.0})
    router = ModelRouter(store, ttl=0)
    assert route(router, "news", arm="b") == Route("news", "v2", "ab", "b")
    with pytest.raises(InvalidInput, match=r"x-fenlei-arm 'c' is not an arm of experiment 'ab' on model 'news': its arms are 'a', 'b'"):
        route(router, "news", arm="c")


def test_an_overlong_routing_key_is_refused(store: ModelStore) -> None:
    registry = FakeRegistry()
    with pytest.raises(InvalidInput, match="a routing key has at most 256 characters, not 257"):
        route(ModelRouter(store, assign=registry.assign), "news", routing_key="k" * 257)
    assert registry.asked == []


def test_a_named_version_or_alias_bypasses_the_experiment(store: ModelStore) -> None:
    write_routing(store, "news", {"a": 1.0, "b": 1.0}, aliases={"staging": "v2"})
    registry = FakeRegistry()
    router = ModelRouter(store, ttl=0, assign=registry.assign)
    assert route(router, "news", "v1", arm="b", routing_key="k") == Route("news", "v1")
    assert route(router, "news", "staging", arm="b") == Route("news", "v2")
    assert registry.asked == []


def test_a_routing_key_keeps_the_arm_the_registry_assigned_while_weights_change(store: ModelStore) -> None:
    # the registry's answers disagree with the hash of the keys: what it says wins
    keys = [f"user-{i}" for i in range(20)]
    by_hash = {key: arm_at([("a", 1.0), ("b", 1.0)], key_point("ab", key)) for key in keys}
    registry = FakeRegistry({key: "b" if by_hash[key] == "a" else "a" for key in keys})
    write_routing(store, "news", {"a": 1.0, "b": 1.0})
    router = ModelRouter(store, ttl=0, assign=registry.assign)
    first = {key: route(router, "news", routing_key=key).arm for key in keys}
    assert first == registry.arms
    for weights in ({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}):
        write_routing(store, "news", weights)
        assert {key: route(router, "news", routing_key=key).arm for key in keys} == first
    assert registry.asked == [("ab", key) for key in keys]  # once each: the pipeline remembers


def test_remembered_keys_are_bounded_least_recently_used_first(store: ModelStore) -> None:
    registry = FakeRegistry({"k1": "a", "k2": "b", "k3": "a"})
    write_routing(store, "news", {"a": 1.0, "b": 1.0})
    router = ModelRouter(store, ttl=0, assign=registry.assign, assignments_cached=2)
    for key in ("k1", "k2", "k1", "k3", "k1", "k2"):
        route(router, "news", routing_key=key)
    assert [key for _, key in registry.asked] == ["k1", "k2", "k3", "k2"]


def test_without_the_registry_a_key_goes_by_its_hash_over_the_current_weights_uncached(store: ModelStore) -> None:
    registry = FakeRegistry()
    registry.down = True
    write_routing(store, "news", {"a": 1.0, "b": 1.0})
    router = ModelRouter(store, ttl=0, assign=registry.assign)
    keys = [f"user-{i}" for i in range(40)]
    arms = {key: route(router, "news", routing_key=key).arm for key in keys}
    assert arms == {key: arm_at([("a", 1.0), ("b", 1.0)], key_point("ab", key)) for key in keys}
    assert set(arms.values()) == {"a", "b"}
    assert router.fallbacks == 40
    assert {key: route(router, "news", routing_key=key).arm for key in keys} == arms  # stable
    write_routing(store, "news", {"a": 0.0, "b": 1.0})
    assert {route(router, "news", routing_key=key).arm for key in keys} == {"b"}  # by the weights of now
    registry.down = False
    registry.arms = dict.fromkeys(keys, "a")
    assert {route(router, "news", routing_key=key).arm for key in keys} == {"a"}  # nothing was cached while it was down
    # a pipeline without a registry at all does the same
    assert route(ModelRouter(store, ttl=0), "news", routing_key="user-1").arm == "b"


def test_weights_and_the_experiment_are_reread_after_the_ttl_only(store: ModelStore) -> None:
    write_routing(store, "news", {"a": 1.0, "b": 0.0})
    router = ModelRouter(store, ttl=3600, draw=lambda: 0.5)
    assert route(router, "news").arm == "a"
    write_routing(store, "news", {"a": 0.0, "b": 1.0})
    assert route(router, "news").arm == "a"
    router.ttl = 0
    assert route(router, "news").arm == "b"
    write_routing(store, "news")  # the experiment ended
    assert route(router, "news") == Route("news", "v2")


def test_request_ids_keep_a_sane_incoming_token_else_are_fresh() -> None:
    assert request_id("3f1c-aa.b:7_x") == "3f1c-aa.b:7_x"
    assert request_id("a" * 128) == "a" * 128
    fresh = {request_id(bad) for bad in ("", "a" * 129, "has space", "slash/in", "-leading", "中文", "new\nline")}
    assert len(fresh) == 7 and all(len(rid) == 32 and int(rid, 16) >= 0 for rid in fresh)


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    async def send(self, items: list[int]) -> None:
        if self.fail:
            raise ConnectionError("the registry is down")
        self.batches.append(items)


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_recorder_sends_full_batches_at_once_and_the_rest_after_its_interval() -> None:
    async def run() -> tuple[list[list[int]], list[list[int]]]:
        sink = Sink()
        recorder = Recorder(sink.send, interval=3600, batch=4)
        recorder.add(list(range(10)))
        await until(lambda: len(sink.batches) == 2)  # without waiting for the (hour-long) interval
        recorder.add([10, 11])
        await until(lambda: len(sink.batches) == 3)
        prompt = Sink()
        recorder = Recorder(prompt.send, interval=0.01, batch=100)
        recorder.add([1, 2])
        recorder.add([3])
        await until(lambda: prompt.batches)
        return sink.batches, prompt.batches

    full, prompt = asyncio.run(asyncio.wait_for(run(), HANG_GUARD))
    assert full == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert prompt == [[1, 2, 3]]


def test_recorder_drops_and_counts_what_the_registry_does_not_take_and_goes_on() -> None:
    async def run() -> tuple[Recorder, Sink]:
        sink = Sink(fail=True)
        recorder = Recorder(sink.send, interval=0.01, batch=10, capacity=5)
        recorder.add([1, 2, 3])
        recorder.add([4, 5, 6, 7])  # two over capacity
        await until(lambda: recorder.dropped == 7)
        assert recorder.sent == 0
        sink.fail = False
        recorder.add([8])
        await until(lambda: recorder.sent == 1)
        return recorder, sink

    recorder, sink = asyncio.run(asyncio.wait_for(run(), HANG_GUARD))
    assert sink.batches == [[8]] and (recorder.dropped, recorder.sent) == (7, 1)


def test_split_keeps_order() -> None:
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split([], 3) == []
