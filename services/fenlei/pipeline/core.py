"""What the pipeline decides, apart from moving bytes: which model version (and which arm
of a running experiment) answers a request, the id an answer carries, what it tells the
registry about the predictions experiments served, and how a request's documents are cut
into stage batches."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fenlei.errors import InvalidInput, Unavailable, quote, quote_list
from fenlei.registry.experiments import MAX_KEY_CHARS, arm_at, key_point
from fenlei.runtime.models import ModelStore

T = TypeVar("T")

log = logging.getLogger("fenlei.pipeline")

# An incoming x-request-id is kept only when it is a plain token: it ends up in the
# registry's records and in logs, and a stream's answers append "/<index>" to it.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def request_id(incoming: str = "") -> str:
    return incoming if REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex


class _Warning:
    """A warning logged at most once a second: in an outage every request would log one."""

    def __init__(self) -> None:
        self._logged = float("-inf")

    def log(self, message: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._logged >= 1.0:
            self._logged = now
            log.warning(message, extra={"fields": fields})


@dataclass(frozen=True)
class Arm:
    name: str
    version: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """A running experiment as routing.json describes it."""

    name: str
    revision: int
    arms: tuple[Arm, ...]

    @classmethod
    def of(cls, entry: Mapping[str, Any] | None) -> Experiment | None:
        if not entry:
            return None
        arms = tuple(Arm(arm["name"], arm["version"], float(arm["weight"])) for arm in entry["arms"])
        return cls(entry["name"], int(entry["revision"]), arms)

    def arm(self, name: str) -> Arm | None:
        return next((arm for arm in self.arms if arm.name == name), None)

    def arm_at(self, point: float) -> Arm:
        chosen = arm_at([(arm.name, arm.weight) for arm in self.arms], point)
        return next(arm for arm in self.arms if arm.name == chosen)


@dataclass(frozen=True)
class Route:
    name: str
    version: str
    experiment: str = ""
    arm: str = ""


# assign(experiment, key) -> the arm the registry keeps the key on; raises Unavailable
# when the registry cannot say.
Assign = Callable[[str, str], Awaitable[str]]


@dataclass(frozen=True)
class _View:
    read: float
    version: str  # what answers without an experiment
    experiment: Experiment | None


class ModelRouter:
    """Resolves a model name (or the default model) to the version that answers for it.

    What answers for a name (its production alias or newest version, and its running
    experiment) is re-read from the store at most once per `ttl` seconds, so a promotion,
    a new version or new weights take effect within that time without reading files on
    every request. A request that names a version or an alias bypasses experiments.

    While an experiment runs, the arm is the one named by `arm` (the x-fenlei-arm header),
    else the one the registry assigned `routing_key` to (`assign`, cached: a key's arm never
    changes), else a draw by the weights. When the registry cannot be asked, a key goes to
    the arm a stable hash of it picks by the current weights (the registry's own rule for
    a key it has never seen), and that answer is not cached.
    """

    def __init__(
        self,
        store: ModelStore,
        default_model: str = "",
        ttl: float = 1.0,
        assign: Assign | None = None,
        assignments_cached: int = 100_000,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.default_model = default_model
        self.ttl = ttl
        self.assign = assign
        self.assignments_cached = assignments_cached
        self.draw = draw
        self.fallbacks = 0  # keys routed by hash because the registry could not answer
        self._warning = _Warning()
        self._views: dict[str, _View] = {}
        self._assigned: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()

    async def route(self, name: str, version: str = "", arm: str = "", routing_key: str = "") -> Route:
        name = name or self.default_model
        if not name:
            raise InvalidInput("name a model: this pipeline has no default model (FENLEI_PIPELINE_DEFAULT_MODEL)")
        if len(routing_key) > MAX_KEY_CHARS:
            raise InvalidInput(f"a routing key has at most {MAX_KEY_CHARS} characters, not {len(routing_key):,}")
        if version:
            return Route(name, self.store.resolve(name, version))
        view = self._view(name)
        experiment = view.experiment
        if experiment is None:
            return Route(name, view.version)
        if arm:
            chosen = experiment.arm(arm)
            if chosen is None:
                raise InvalidInput(
                    f"x-fenlei-arm {quote(arm)} is not an arm of experiment {experiment.name!r} on model {name!r}: "
                    f"its arms are {quote_list([a.name for a in experiment.arms])}"
                )
        elif routing_key:
            chosen = await self._arm_of_key(experiment, routing_key)
        else:
            chosen = experiment.arm_at(self.draw())
        return Route(name, chosen.version, experiment.name, chosen.name)

    def _view(self, name: str) -> _View:
        now = time.monotonic()
        view = self._views.get(name)
        if view is None or now - view.read > self.ttl:
            view = _View(now, self.store.resolve(name), Experiment.of(self.store.routing(name).get("experiment")))
            self._views[name] = view
        return view

    async def _arm_of_key(self, experiment: Experiment, key: str) -> Arm:
        cache_key = (experiment.name, key)
        name = self._assigned.get(cache_key)
        if name is not None:
            self._assigned.move_to_end(cache_key)
        else:
            try:
                if self.assign is None:
                    raise Unavailable("this pipeline has no registry address (FENLEI_PIPELINE_REGISTRY_ADDRESS)")
                name = await self.assign(experiment.name, key)
            except Unavailable as error:
                self._fell_back(experiment, error)
                return experiment.arm_at(key_point(experiment.name, key))
            self._assigned[cache_key] = name
            while len(self._assigned) > self.assignments_cached:
                self._assigned.popitem(last=False)
        # An experiment's arms never change, so the registry's answer is one of them.
        return experiment.arm(name) or experiment.arm_at(key_point(experiment.name, key))

    def _fell_back(self, experiment: Experiment, error: Unavailable) -> None:
        self.fallbacks += 1
        fields = {"experiment": experiment.name, "error": str(error), "fallbacks": self.fallbacks}
        self._warning.log("routing keys assigned by hash: the registry did not answer", fields)


class Recorder(Generic[T]):
    """Sends what experiments served to the registry in the background, in batches: every
    `interval` seconds or as soon as `batch` items wait. Adding never waits; when the
    registry cannot take them, or `capacity` items already wait, items are dropped, counted
    and logged (feedback on them is then refused with NotFound). A sender task runs only
    while something waits."""

    def __init__(self, send: Callable[[list[T]], Awaitable[Any]], interval: float = 0.2, batch: int = 500, capacity: int = 50_000) -> None:
        self.send = send
        self.interval = interval
        self.batch = batch
        self.capacity = capacity
        self.sent = 0
        self.dropped = 0
        self._waiting: list[T] = []
        self._full = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._warning = _Warning()

    def add(self, items: Sequence[T]) -> None:
        room = self.capacity - len(self._waiting)
        if len(items) > room:
            self._drop(len(items) - room, "too many predictions wait for the registry")
            items = items[: max(room, 0)]
        self._waiting.extend(items)
        if len(self._waiting) >= self.batch:
            self._full.set()
        if self._waiting and self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_while_waiting())

    async def _send_while_waiting(self) -> None:
        try:
            while self._waiting:
                try:
                    await asyncio.wait_for(self._full.wait(), self.interval)
                except TimeoutError:
                    pass
                self._full.clear()
                items, self._waiting = self._waiting[: self.batch], self._waiting[self.batch :]
                if len(self._waiting) >= self.batch:
                    self._full.set()
                try:
                    await self.send(items)
                    self.sent += len(items)
                except Exception as error:  # noqa: BLE001 - whatever failed, the answers were given: count and go on
                    self._drop(len(items), f"the registry did not take them: {error}")
        finally:
            self._sender = None

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self._warning.log(f"served predictions dropped: {why}", {"count": count, "dropped": self.dropped})


def split(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
