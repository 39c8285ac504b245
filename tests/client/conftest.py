"""Client tests: a scripted fenlei.v1.Pipeline served in-process by a real gRPC server on
127.0.0.1 (an ephemeral port), stopped when the test ends.

The servicer records every call (method, metadata, the deadline the server saw, the
requests) and can be told to fail its next calls with given status codes, or to take a
while before answering. It answers with the texts themselves as labels, so tests can
check order: Classify -> labels [text], ClassifyBatch/Stream -> one Prediction per
document with that document's id and its text as the label.

`overloaded` is a grpc.aio server whose every answer is UNAVAILABLE (an overloaded mesh),
counting attempts, for the retry throttling.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest

from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc

MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class Call:
    method: str
    metadata: dict[str, str]
    time_remaining: float | None
    requests: list[Any] = field(default_factory=list)


class ScriptedPipeline(pipeline_pb2_grpc.PipelineServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        # Status codes the next calls fail with, one per call, before reading anything.
        self.failures: list[grpc.StatusCode] = []
        # Seconds every call waits before answering (less if the client gives up).
        self.delay = 0.0

    def count(self, method: str) -> int:
        with self.lock:
            return sum(1 for call in self.calls if call.method == method)

    def _begin(self, method: str, context: grpc.ServicerContext) -> Call:
        call = Call(method, dict(context.invocation_metadata()), context.time_remaining())
        with self.lock:
            self.calls.append(call)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        end = time.monotonic() + self.delay
        while time.monotonic() < end and context.is_active():
            time.sleep(0.01)
        return call

    @staticmethod
    def _predictions(documents: Any) -> list[common_pb2.Prediction]:
        return [
            common_pb2.Prediction(id=document.id, labels=[common_pb2.LabelScore(label=document.text, score=1.0)]) for document in documents
        ]

    def Classify(self, request, context):
        call = self._begin("Classify", context)
        call.requests.append(request)
        return pipeline_pb2.ClassifyResponse(
            labels=[common_pb2.LabelScore(label=request.text, score=1.0)],
            model=request.model or "fake",
            version=request.version or "v1",
        )

    def ClassifyBatch(self, request, context):
        call = self._begin("ClassifyBatch", context)
        call.requests.append(request)
        return pipeline_pb2.ClassifyBatchResponse(
            predictions=self._predictions(request.documents), model=request.model or "fake", version="v1"
        )

    def ClassifyStream(self, request_iterator, context):
        call = self._begin("ClassifyStream", context)
        for request in request_iterator:
            call.requests.append(request)
            yield pipeline_pb2.ClassifyStreamResponse(
                predictions=self._predictions(request.documents), model=request.model or "fake", version="v1"
            )


@dataclass
class FakeServer:
    address: str
    servicer: ScriptedPipeline
    server: grpc.Server


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    servicer = ScriptedPipeline()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", MESSAGE_BYTES), ("grpc.max_send_message_length", MESSAGE_BYTES)],
    )
    pipeline_pb2_grpc.add_PipelineServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer(f"127.0.0.1:{port}", servicer, server)
    finally:
        server.stop(None).wait(30)


class AlwaysUnavailable(pipeline_pb2_grpc.PipelineServicer):
    """An overloaded service: every attempt fails with UNAVAILABLE, and is counted."""

    def __init__(self) -> None:
        self.attempts = 0

    async def Classify(self, request, context):
        self.attempts += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")


@dataclass
class OverloadedServer:
    address: str
    servicer: AlwaysUnavailable


@pytest.fixture
def overloaded() -> Iterator[OverloadedServer]:
    """A grpc.aio server on 127.0.0.1 (an ephemeral port) in an event loop of its own
    thread, so both the blocking and the asyncio client can call it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="overloaded-server")
    thread.start()
    servicer = AlwaysUnavailable()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        pipeline_pb2_grpc.add_PipelineServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    try:
        server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        try:
            yield OverloadedServer(f"127.0.0.1:{port}", servicer)
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
