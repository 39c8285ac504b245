"""Helpers the test suites share."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from fenlei.runtime.rpc import CLIENT_CERT_HEADER, SUBJECT_HEADER, caller


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Polls until condition() is truthy and returns its value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


class RequestQueue:
    """A request iterator for a streaming call that a test feeds one message at a time."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def close(self) -> None:
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            yield item


@dataclass(frozen=True)
class Seen:
    """One call as a server received it: the identity headers and who `caller` says called."""

    method: str
    subjects: tuple[str, ...]
    client_certificates: tuple[str, ...]
    caller: str


@dataclass
class Recorder(grpc.GenericRpcHandler):
    """Answers every method with nothing (unary and client-streaming methods with an empty
    message) and records each call."""

    streams: frozenset[str] = frozenset()  # methods answered as bidirectional streams
    calls: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        def record(context: grpc.ServicerContext) -> None:
            metadata = list(context.invocation_metadata())
            seen = Seen(
                method,
                tuple(v for k, v in metadata if k == SUBJECT_HEADER),
                tuple(v for k, v in metadata if k == CLIENT_CERT_HEADER),
                caller(context),  # type: ignore[arg-type]  # reads only the metadata, as a sync context has it
            )
            with self.lock:
                self.calls.append(seen)

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            record(context)
            return b""

        def answer_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            record(context)
            yield from ()

        if method in self.streams:
            return grpc.stream_stream_rpc_method_handler(answer_stream)
        return grpc.unary_unary_rpc_method_handler(answer)

    def last(self) -> Seen:
        with self.lock:
            assert self.calls, "no call reached the server"
            return self.calls[-1]


@contextlib.contextmanager
def recording_server(address: str, streams: frozenset[str] = frozenset()) -> Iterator[tuple[str, Recorder]]:
    """A gRPC server on `address` (host:0 picks a port; unix:PATH) that records every call:
    (the address it listens on, its Recorder)."""
    recorder = Recorder(streams)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((recorder,))
    port = server.add_insecure_port(address)
    server.start()
    try:
        yield (address.rsplit(":", 1)[0] + f":{port}" if address.endswith(":0") else address), recorder
    finally:
        server.stop(grace=None)
