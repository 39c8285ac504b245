"""Fixtures of the servicer tests (tests/<service>/test_servicer.py; a pytest plugin,
`-p servicekit` in pyproject.toml): each service's real `register` served in-process by
fenlei.runtime.server.start_server on 127.0.0.1, port 0, with a temporary home.

The servers run on one asyncio loop in a background thread (no pytest-asyncio); tests
talk to them with ordinary blocking gRPC stubs from the test thread. Every server is
stopped when its fixture ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from testkit import RequestQueue, wait_for

from fenlei.runtime.models import Draft, ModelStore
from fenlei.runtime.server import RunningServer, start_server
from fenlei.runtime.settings import ServiceSettings
from fenlei.v1 import common_pb2

# A bound for calls that take milliseconds: it keeps a broken server from hanging the
# suite, it is not a speed requirement.
TIMEOUT = 30


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="servicer-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@dataclasses.dataclass
class Served:
    running: RunningServer
    address: str
    channel: grpc.Channel
    settings: ServiceSettings

    @property
    def home(self) -> Path:
        return Path(self.settings.home)

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.home)


class Servers:
    """Starts servers on the loop; stops every one of them on close()."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.served: list[Served] = []

    def start(self, service: str, register: Callable, settings: ServiceSettings) -> Served:
        running = self.loop.run(start_server(service, settings, register))
        address = f"127.0.0.1:{running.port}"
        channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        )
        served = Served(running, address, channel, settings)
        self.served.append(served)
        return served

    def close(self) -> None:
        for served in reversed(self.served):
            served.channel.close()
            try:
                self.loop.run(served.running.server.stop(None), timeout=30)
            except Exception:  # noqa: BLE001 - a server that died already is stopped
                pass
        self.served.clear()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="module")
def module_servers(loop_thread: LoopThread) -> Iterator[Servers]:
    """Servers shared by one test module (each test uses model names of its own)."""
    servers = Servers(loop_thread)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def servers(loop_thread: LoopThread) -> Iterator[Servers]:
    """Servers of one test only."""
    servers = Servers(loop_thread)
    try:
        yield servers
    finally:
        servers.close()


@contextlib.contextmanager
def generic_server(
    loop: LoopThread, service: str, handlers: dict[str, grpc.RpcMethodHandler], interceptors: Sequence[Any] = ()
) -> Iterator[tuple[grpc.Channel, str]]:
    """An asyncio server on the loop with `handlers` as the methods of `service` (a name of
    the test's own): a blocking channel to it and its address; stopped afterwards."""

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=list(interceptors))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, f"127.0.0.1:{port}"
    finally:
        channel.close()
        loop.run(server.stop(None))


def settings_for(home: Path, cls: type = ServiceSettings, **fields: Any) -> Any:
    """Small limits, so the limit cases need small requests."""
    return cls(home=home, host="127.0.0.1", port=0, max_batch_documents=64, max_document_chars=2_000, **fields)


def rpc_error(call: Callable, *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as failure:
        result = call(*args, timeout=TIMEOUT, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, (bytes, str)):
            list(result)
    return failure.value


def stream_error(call: Callable, requests: Sequence[Any]) -> tuple[list[Any], grpc.RpcError]:
    """The answers a stream gave before it failed, and its error."""
    answers: list[Any] = []
    with pytest.raises(grpc.RpcError) as failure:
        for answer in call(iter(requests), timeout=TIMEOUT):
            answers.append(answer)
    return answers, failure.value


def documents(*texts: str, prefix: str = "d") -> list[common_pb2.Document]:
    return [common_pb2.Document(id=f"{prefix}{i}", text=text) for i, text in enumerate(texts)]


# Drafts by id: leased while the tests run, so publish() can take a ModelRef.
_DRAFTS: dict[str, Draft] = {}


def reserve(store: ModelStore, name: str) -> tuple[Draft, common_pb2.ModelRef]:
    """A new draft of the model, as training makes one, and the reference that fits into it."""
    draft = store.create_draft(name)
    _DRAFTS[draft.id] = draft
    return draft, common_pb2.ModelRef(name=name, version=draft.id)


def publish(store: ModelStore, model: common_pb2.ModelRef) -> common_pb2.ModelRef:
    """Publishes the reserved draft `model` refers to; returns the reference of the version."""
    return common_pb2.ModelRef(name=model.name, version=store.publish(_DRAFTS.pop(model.version), {}))


def cancel_while_finishing(
    monkeypatch: pytest.MonkeyPatch, core: type, start_fit: Callable[[], grpc.Future], while_finishing: Callable[[], Any]
) -> None:
    """Starts a fit whose `core.finish(should_stop)` runs until it is told to stop, calls
    while_finishing meanwhile, then cancels the call as a caller that goes away would; fails
    unless the work was told to stop."""
    finishing, finished = threading.Event(), threading.Event()
    told_to_stop: list[bool] = []
    real_finish = core.finish

    def finish(self: Any, should_stop: Callable[[], bool] = lambda: False) -> Any:
        finishing.set()
        deadline = time.monotonic() + TIMEOUT  # a hang guard
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)
        told_to_stop.append(should_stop())
        try:
            return real_finish(self, should_stop)
        finally:
            finished.set()

    with monkeypatch.context() as patch:
        patch.setattr(core, "finish", finish)
        call = start_fit()
        assert finishing.wait(TIMEOUT), "the fit never started to finish"
        while_finishing()
        call.cancel()
        assert finished.wait(TIMEOUT)
    assert told_to_stop == [True], "the fit went on computing after its caller went away"
    assert call.cancelled()


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The helpers above, for test modules (they import fixtures, not conftest)."""
    return SimpleNamespace(
        TIMEOUT=TIMEOUT,
        settings_for=settings_for,
        rpc_error=rpc_error,
        stream_error=stream_error,
        documents=documents,
        reserve=reserve,
        publish=publish,
        cancel_while_finishing=cancel_while_finishing,
    )


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    return SimpleNamespace(RequestQueue=RequestQueue, wait_for=wait_for)
