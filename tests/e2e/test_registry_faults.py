"""Nothing lost, with real registry processes (`python -m fenlei.registry.servicer`):
kill -9 during an import and during alias moves leaves exactly the state before or after;
many clients moving one alias lose no move and the history has every one in order; and a
version whose artifact was damaged on disk is refused by a real stage while the others serve."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fenlei.registry import archive
from fenlei.registry.store import Registry
from fenlei.runtime import artifacts
from fenlei.runtime.models import ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.services import STAGE_NAMES
from fenlei.training.core import TrainingSpec
from fenlei.training.stages import GrpcStages, in_batches
from fenlei.v1 import classifier_pb2, common_pb2, registry_pb2, registry_pb2_grpc

TIMEOUT = 60  # a hang guard, not a speed requirement
SPORTS = ["足球", "篮球", "比赛", "进球", "冠军", "球员", "联赛", "教练"]
FINANCE = ["股票", "基金", "市场", "上涨", "下跌", "投资", "银行", "利率"]
PROBES = ["足球联赛冠军", "股票市场下跌", "篮球教练进球", "银行利率上涨"]


class Registered:
    """A registry process on a home, restarted on the same home as often as a test kills it."""

    def __init__(self, spawn: Callable, home: Path) -> None:
        self.spawn, self.home = spawn, home
        self.process = None
        self.channel: grpc.Channel | None = None

    def start(self) -> registry_pb2_grpc.ModelRegistryStub:
        self.process = self.spawn("registry", home=self.home)
        self.channel = grpc.insecure_channel(self.process.address)
        return self.stub

    @property
    def stub(self) -> registry_pb2_grpc.ModelRegistryStub:
        return registry_pb2_grpc.ModelRegistryStub(self.channel)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.popen.wait(timeout=TIMEOUT) == -signal.SIGKILL
        self.channel.close()

    def state(self) -> dict:
        """Every row of the registry (its export's registry.json) and every view on disk,
        each version's view verified against its manifest."""
        chunks = b"".join(answer.chunk for answer in self.stub.ExportRegistry(registry_pb2.ExportRegistryRequest(), timeout=TIMEOUT))
        with tarfile.open(fileobj=io.BytesIO(chunks)) as tar:
            tables = json.loads(tar.extractfile(archive.REGISTRY).read())["tables"]  # type: ignore[union-attr]
        store = ModelStore(self.home)
        registered = {(row["name"], f"v{row['number']}") for row in tables["versions"]}
        views = {}
        for model in sorted(store.root.iterdir()) if store.root.is_dir() else ():
            for version in store.versions(model.name):
                store.verify(model.name, version)  # no partial version: what is visible is whole
                views[f"{model.name}/{version}"] = store.manifest(model.name, version)
            routing = model / "routing.json"
            if routing.exists():
                views[f"{model.name}/routing.json"] = json.loads(routing.read_text(encoding="utf-8"))
            # nothing half-written stays once the registry has started
            assert not [p.name for p in model.iterdir() if p.name.startswith(".tmp-")]
        assert {key for key in views if not key.endswith("routing.json")} == {f"{n}/{v}" for n, v in registered}
        return {"tables": tables, "views": views}


@pytest.fixture
def registered(spawn_service, tmp_path: Path) -> Iterator[Registered]:
    registry = Registered(spawn_service, tmp_path / "home")
    try:
        yield registry
    finally:
        if registry.channel is not None:
            registry.channel.close()


def draft_of(store: ModelStore, name: str, seed: int, megabytes: float = 0.01):
    """A draft as training leaves it (a part for every stage), with a classifier of about
    `megabytes` of weights."""
    draft = store.create_draft(name)
    for part in STAGE_NAMES[:-1]:
        artifacts.write_json(draft.part(part), part, {"part": part})
    weights = np.random.default_rng(seed).random(int(megabytes * (1 << 20) / 8))
    artifacts.write_array(draft.part("classifier"), "coef", weights)
    return draft


def register(stub, store: ModelStore, name: str, seed: int, megabytes: float = 0.01) -> str:
    with draft_of(store, name, seed, megabytes) as draft:
        request = registry_pb2.RegisterVersionRequest(name=name, draft=draft.id, labels=["a", "b"])
        return stub.RegisterVersion(request, timeout=TIMEOUT).version.version


def set_alias(stub, name: str, version: str, reason: str = "", **fields) -> registry_pb2.AliasMove:
    request = registry_pb2.SetAliasRequest(name=name, alias="production", version=version, reason=reason, **fields)
    return stub.SetAlias(request, timeout=TIMEOUT).move


# ---------------------------------------------------------------- kill -9 during an import


def archive_of(tmp_path: Path) -> bytes:
    """An archive of another registry: three models of about 12 MB each, aliases, history."""
    source = Registry(tmp_path / "source")
    source.open()
    for index, name in enumerate(("alpha", "beta", "gamma")):
        with draft_of(source.store, name, 100 + index, megabytes=12) as draft:
            source.register(name, draft.id, {}, {"accuracy": 0.5}, {}, ["a", "b"], "trainer")
        source.set_alias(name, "production", "v1", "alice", "restored")
    data = b"".join(archive.export_archive(source))
    source.close()
    return data


def test_kill_during_an_import_leaves_the_state_before_or_after(registered: Registered, tmp_path: Path, spawn_service) -> None:
    data = archive_of(tmp_path)
    chunks = [data[start : start + archive.CHUNK_BYTES] for start in range(0, len(data), archive.CHUNK_BYTES)]
    stub = registered.start()
    store = ModelStore(registered.home)
    register(stub, store, "news", 1)
    set_alias(stub, "news", "v1", "first")
    before = registered.state()

    # the state after: the same import, uninterrupted, on a copy of the home
    registered.kill()
    copy = Registered(spawn_service, tmp_path / "copy")
    shutil.copytree(registered.home, copy.home)
    copied = copy.start()
    started = time.monotonic()
    answer = copied.ImportRegistry(iter(registry_pb2.ImportRegistryRequest(chunk=chunk) for chunk in chunks), timeout=TIMEOUT)
    importing = time.monotonic() - started
    assert list(answer.added) == ["alpha/v1", "beta/v1", "gamma/v1"]
    after = copy.state()
    copy.kill()
    assert after != before

    def kill_while_importing(sent_before_kill: int, delay: float) -> bool:
        """Starts the registry, sends the archive (all of it, or `sent_before_kill` chunks and
        then waits), kills it `delay` seconds later, starts it again. Returns whether the
        import was answered before the kill."""
        stub = registered.start()
        sent, release = threading.Event(), threading.Event()

        def requests() -> Iterator[registry_pb2.ImportRegistryRequest]:
            for index, chunk in enumerate(chunks):
                if index == sent_before_kill:
                    sent.set()
                    release.wait(TIMEOUT)
                    return
                yield registry_pb2.ImportRegistryRequest(chunk=chunk)
            sent.set()

        call = stub.ImportRegistry.future(requests(), timeout=TIMEOUT)
        assert sent.wait(TIMEOUT)
        time.sleep(delay)
        registered.kill()
        release.set()
        answered = call.exception() is None
        registered.start()
        return answered

    observed = []
    # mid-upload; then at points through the import's verification, blobs and commit
    for sent_before_kill, share in [(len(chunks) // 2, 0.0), *((len(chunks), share) for share in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0))]:
        answered = kill_while_importing(sent_before_kill, min(importing * share, 0.45))
        state = registered.state()
        assert state in (before, after), f"killed after {share:.0%} of an import: neither before nor after"
        assert state == after or not answered, "an import was answered, and lost"
        observed.append("before" if state == before else "after")
        registered.kill()
    assert observed[0] == "before"  # half an archive never imports
    stub = registered.start()
    stub.ImportRegistry(iter(registry_pb2.ImportRegistryRequest(chunk=chunk) for chunk in chunks), timeout=TIMEOUT)
    assert registered.state() == after


# ---------------------------------------------------------------- kill -9 during alias moves


def test_kill_during_alias_moves_loses_no_acknowledged_move(registered: Registered, tools) -> None:
    stub = registered.start()
    store = ModelStore(registered.home)
    versions = [register(stub, store, "news", seed) for seed in range(3)]
    acknowledged: list[int] = []
    stopped = threading.Event()

    def mover() -> None:
        index = 0
        while not stopped.is_set():
            try:
                move = set_alias(stub, "news", versions[index % 3], f"move {index}")
            except grpc.RpcError:
                return  # the registry is gone
            acknowledged.append(move.sequence)
            index += 1

    worker = threading.Thread(target=mover)
    worker.start()
    try:
        tools.wait_for(lambda: len(acknowledged) >= 40, "40 alias moves")
        registered.kill()
    finally:
        stopped.set()
        worker.join(TIMEOUT)
    stub = registered.start()
    history = list(stub.GetHistory(registry_pb2.GetHistoryRequest(name="news"), timeout=TIMEOUT).moves)
    sequences = [move.sequence for move in history]
    assert sequences == list(range(1, len(history) + 1))
    assert acknowledged == sequences[: len(acknowledged)] and len(history) - len(acknowledged) in (0, 1)  # the one in flight, or not
    for index, move in enumerate(history):
        assert (move.reason, move.to_version) == (f"move {index}", versions[index % 3])
        assert move.from_version == (history[index - 1].to_version if index else "")
    current = stub.GetVersion(registry_pb2.GetVersionRequest(name="news"), timeout=TIMEOUT).version.version
    assert current == history[-1].to_version == store.routing("news")["aliases"]["production"] == store.resolve("news")


# ---------------------------------------------------------------- many clients, one alias


def test_many_clients_moving_one_alias_lose_no_update(registered: Registered, tools) -> None:
    stub = registered.start()
    store = ModelStore(registered.home)
    versions = [register(stub, store, "news", seed) for seed in range(4)]
    clients, moves_each = 8, 15
    landed: dict[int, list[int]] = {client: [] for client in range(clients)}
    latencies: list[float] = []
    failures: list[BaseException] = []

    def client(number: int) -> None:
        channel = grpc.insecure_channel(registered.process.address)
        own = registry_pb2_grpc.ModelRegistryStub(channel)
        metadata = [("x-fenlei-subject", f"client-{number}")]
        try:
            while len(landed[number]) < moves_each:
                current = own.GetVersion(registry_pb2.GetVersionRequest(name="news", version="production"), timeout=TIMEOUT).version.version
                target = versions[(versions.index(current) + 1) % len(versions)]
                request = registry_pb2.SetAliasRequest(name="news", alias="production", version=target, expected_version=current)
                started = time.monotonic()
                try:
                    move = own.SetAlias(request, metadata=metadata, timeout=TIMEOUT).move
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
                    continue  # another client moved it first: read again
                latencies.append(time.monotonic() - started)
                landed[number].append(move.sequence)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)
        finally:
            channel.close()

    set_alias(stub, "news", versions[0], "start")
    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 5)
    assert not failures, failures
    history = list(stub.GetHistory(registry_pb2.GetHistoryRequest(name="news", alias="production"), timeout=TIMEOUT).moves)
    assert [move.sequence for move in history] == list(range(1, clients * moves_each + 2))
    for earlier, later in zip(history, history[1:]):
        assert later.from_version == earlier.to_version  # each move starts where the one before it ended
    for number, sequences in landed.items():
        assert [m.sequence for m in history if m.moved_by == f"client-{number}"] == sequences and len(sequences) == moves_each
    assert store.routing("news")["aliases"]["production"] == history[-1].to_version
    assert max(latencies) < TIMEOUT


# ---------------------------------------------------------------- a damaged artifact


def test_a_version_whose_artifact_was_damaged_is_refused_while_the_others_serve(registered: Registered, spawn_service) -> None:
    home = registered.home
    stages = {stage: spawn_service(stage, home=home).address for stage in STAGE_NAMES}
    stub = registered.start()
    store = ModelStore(home)

    async def fit(draft, swap: bool) -> None:
        texts, labels = [], []
        for words, label, other in ((SPORTS, "sports", "finance"), (FINANCE, "finance", "sports")):
            for i in range(16):
                texts.append(words[i % 8] + words[(i + 3) % 8] + words[(i + 5) % 8])
                labels.append(other if swap else label)
        streams = StageStreams(stages)
        try:
            fitting = GrpcStages(streams)
            terms = await fitting.terms(draft.name, draft.id, texts)
            dimension = await fitting.fit_features(draft.name, draft.id, in_batches(terms, labels), {})
            await fitting.fit_classifier(draft.name, draft.id, in_batches(terms, labels), sorted(set(labels)), dimension, {})
        finally:
            await streams.close()

    for swap in (False, True):
        with store.create_draft("news") as draft:
            spec = TrainingSpec(name="news")
            spec.segment.save(draft.part("segmenter"))
            spec.preprocess.save(draft.part("preprocessor"))
            asyncio.run(fit(draft, swap))
            request = registry_pb2.RegisterVersionRequest(name="news", draft=draft.id, labels=["finance", "sports"])
            stub.RegisterVersion(request, timeout=TIMEOUT)
    v1, v2 = store.manifest("news", "v1")["files"], store.manifest("news", "v2")["files"]
    own = next(path for path in sorted(v1) if path.startswith("classifier/") and v1[path] != v2[path])
    damaged = store.version_dir("news", "v1") / own
    os.chmod(damaged, 0o644)
    with open(damaged, "r+b") as handle:  # the blob itself: every view of it is damaged
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\0damaged")

    def classify(version: str) -> list[str]:
        async def run() -> bytes:
            streams = StageStreams(stages)
            try:
                documents = [common_pb2.Document(id=str(i), text=text) for i, text in enumerate(PROBES)]
                model = common_pb2.ModelRef(name="news", version=version)
                return await streams.classify(documents, model, classifier_pb2.PredictOptions(top_k=1))
            finally:
                await streams.close()

        answer = classifier_pb2.PredictStreamResponse.FromString(asyncio.run(run()))
        return [prediction.labels[0].label for prediction in answer.predictions]

    with pytest.raises(grpc.RpcError) as refused:
        classify("v1")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"model 'news' version 'v1' is damaged and does not serve: {own} does not match its checksum" in refused.value.details()
    assert classify("v2") == ["finance", "sports", "finance", "sports"]  # the labels swapped: it is v2 that answers
    assert classify("") == classify("v2")
    set_alias(stub, "news", "v2")
    assert classify("production") == classify("v2")
