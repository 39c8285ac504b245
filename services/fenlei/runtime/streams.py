"""Open bidirectional streams used as ordered request/response channels.

Stage RPCs answer each stream message with exactly one message, in order. So one
long-lived stream per stage can carry every caller's batches: each caller appends a
future to a FIFO and writes its batch; the reader resolves futures in arrival order.
A batch on an open stream costs about a quarter of a new call through a sidecar pair
(0.45 ms against 1.7 ms, measured here), and batches pipeline.

When a stream fails, the stage was working on the oldest pending batch, so only that
batch gets the error; the batches behind it were never processed and are resent on a
fresh stream. A broken stream (UNAVAILABLE, CANCELLED, or INTERNAL from a reset: a stage
restarted, a replica killed) resends the oldest batch too, since stages are idempotent.

Payloads are bytes: protobuf messages merge when concatenated, so a stage's answer
(documents in field 1) plus the next stage's header (model, options) is that stage's
request, with no parsing in between.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field

import grpc

log = logging.getLogger("fenlei.streams")

RESEND_ATTEMPTS = 3
RESEND_BACKOFF_SECONDS = 0.025


@dataclass
class _Pending:
    payload: bytes
    future: asyncio.Future[bytes]
    attempts: int = 0


@dataclass
class _Stream:
    call: grpc.aio.StreamStreamCall
    opened: float
    pending: collections.deque[_Pending] = field(default_factory=collections.deque)
    reader: asyncio.Task[None] | None = None


class OrderedStream:
    """`width` streams used in turn, so that a stage with several replicas gets work on
    each (a proxy balances streams, not the messages inside one). A stream older than
    `max_age_seconds` takes no new batches: it is closed once its answers are in and a
    fresh one opens, which may land on a replica that started since."""

    def __init__(self, channel: grpc.aio.Channel, method: str, width: int = 2, max_age_seconds: float = 10.0) -> None:
        # No serializers: bytes in, bytes out.
        self._open_call = channel.stream_stream(method)
        self.method = method
        self.max_age_seconds = max_age_seconds
        self._slots: list[_Stream | None] = [None] * width
        self._locks = [asyncio.Lock() for _ in range(width)]
        self._turn = 0

    async def call(self, payload: bytes) -> bytes:
        item = _Pending(payload, asyncio.get_running_loop().create_future())
        await self._send(item)
        return await item.future

    async def _send(self, item: _Pending) -> None:
        slot, self._turn = self._turn, (self._turn + 1) % len(self._slots)
        async with self._locks[slot]:
            stream = self._slots[slot]
            now = asyncio.get_running_loop().time()
            if stream is not None and now - stream.opened > self.max_age_seconds:
                asyncio.ensure_future(self._finish(stream))
                stream = None
            if stream is None:
                stream = self._slots[slot] = _Stream(self._open_call(), now)
                stream.reader = asyncio.create_task(self._read(stream, slot))
            stream.pending.append(item)
            # Once queued, the payload must go out even if this caller is cancelled: grpc
            # cancels the whole call when a write is cancelled, and an entry the stage never
            # answers would hand every later answer to the wrong caller. The lock is held
            # until the write is done, so writes keep the order of `pending`.
            write = asyncio.ensure_future(self._write(stream, item.payload))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait({write})
                raise

    @staticmethod
    async def _finish(stream: _Stream) -> None:
        try:
            await stream.call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # already broken: its reader settles what was pending

    @staticmethod
    async def _write(stream: _Stream, payload: bytes) -> None:
        try:
            await stream.call.write(payload)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the reader sees the failure and settles every pending batch

    async def _read(self, stream: _Stream, slot: int) -> None:
        error: grpc.aio.AioRpcError | None = None
        try:
            async for response in stream.call:
                item = stream.pending.popleft()
                if not item.future.done():
                    item.future.set_result(response)
        except grpc.aio.AioRpcError as exc:
            error = exc
        except asyncio.CancelledError:
            if not stream.call.cancelled():
                raise  # the reader itself was cancelled (shutdown)
            details = f"{self.method}: the stream was cancelled"
            error = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
        if self._slots[slot] is stream:
            self._slots[slot] = None
        if error is None and not stream.pending:
            return  # closed after its last answer (retired for age, or shut down)
        if error is None:
            details = f"{self.method}: the stream ended with {len(stream.pending)} batches unanswered"
            error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
        await self._recover(stream, error)

    async def _recover(self, stream: _Stream, error: grpc.aio.AioRpcError) -> None:
        pending = stream.pending
        # A stream that broke (a replica killed under a proxy gives RST_STREAM, seen as
        # INTERNAL) is no verdict on the batch at its head: that one is resent too, with a
        # bound, so a stage that keeps failing a batch still answers it with the error.
        transient = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
        if pending and not transient:
            head = pending.popleft()
            if not head.future.done():
                head.future.set_exception(error)
        for item in pending:
            # Behind a failed batch the stage processed nothing: no attempt of theirs, and
            # no bound needed (each such failure answers one batch). Counting it would hand
            # a batch behind several failing ones the error of another caller.
            if transient:
                item.attempts += 1
            if item.future.done():
                continue
            if item.attempts > RESEND_ATTEMPTS:
                item.future.set_exception(error)
            else:
                log.info("resending batch", extra={"fields": {"method": self.method, "attempt": item.attempts}})
                await asyncio.sleep(RESEND_BACKOFF_SECONDS * item.attempts)
                await self._send(item)

    async def close(self) -> None:
        streams = [stream for stream in self._slots if stream is not None]
        self._slots = [None] * len(self._slots)
        for stream in streams:
            await self._finish(stream)
            if stream.reader is not None:
                await stream.reader
