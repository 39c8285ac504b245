"""OrderedStream (fenlei.runtime.streams) against a real grpc.aio server on 127.0.0.1: an
echo stage the test controls. It answers each batch in order, fails a batch that starts
with b"bad" with INVALID_ARGUMENT naming it, answers only as many batches as the test
allows, and breaks a stream with a status on command."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from fenlei.runtime import streams
from fenlei.runtime.streams import OrderedStream

METHOD = "/test.Echo/Stream"
# A bound that keeps a broken stream from hanging the suite, not a speed requirement.
TIMEOUT = 30


def answer(payload: bytes) -> bytes:
    return b"answer to " + payload


@dataclasses.dataclass(eq=False)
class ServerStream:
    received: list[bytes] = dataclasses.field(default_factory=list)
    unprocessed: collections.deque[bytes] = dataclasses.field(default_factory=collections.deque)
    input_ended: bool = False  # the client half-closed it
    ended: bool = False  # the stage closed it with OK, every batch answered
    break_with: grpc.StatusCode | None = None


class EchoStage:
    def __init__(self) -> None:
        self.streams: list[ServerStream] = []
        self.answered: list[bytes] = []
        self.budget: int | None = None  # batches it may still process; None: no limit
        self.changed = asyncio.Condition()

    async def _update(self, change: Callable[[], Any]) -> None:
        async with self.changed:
            change()
            self.changed.notify_all()

    async def hold(self) -> None:
        await self._update(lambda: setattr(self, "budget", 0))

    async def allow(self, batches: int) -> None:
        await self._update(lambda: setattr(self, "budget", (self.budget or 0) + batches))

    async def allow_all(self) -> None:
        await self._update(lambda: setattr(self, "budget", None))

    async def break_stream(self, stream: ServerStream, code: grpc.StatusCode) -> None:
        await self._update(lambda: setattr(stream, "break_with", code))

    async def handle(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        stream = ServerStream()
        self.streams.append(stream)
        reader = asyncio.create_task(self._read(requests, stream))
        try:
            while True:
                async with self.changed:
                    await self.changed.wait_for(
                        lambda: (
                            stream.break_with is not None
                            or (stream.unprocessed and self.budget != 0)
                            or (stream.input_ended and not stream.unprocessed)
                        )
                    )
                    if stream.break_with is not None:
                        break
                    if not stream.unprocessed:
                        stream.ended = True
                        return
                    payload = stream.unprocessed.popleft()
                    if self.budget is not None:
                        self.budget -= 1
                if payload.startswith(b"bad"):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, payload.decode())
                self.answered.append(payload)  # before the write: its caller may have it before write() returns
                await context.write(answer(payload))
            await context.abort(stream.break_with, "the stage broke the stream")
        finally:
            reader.cancel()

    async def _read(self, requests: AsyncIterator[bytes], stream: ServerStream) -> None:
        async for payload in requests:
            await self._update(lambda payload=payload: (stream.received.append(payload), stream.unprocessed.append(payload)))
        await self._update(lambda: setattr(stream, "input_ended", True))


@contextlib.asynccontextmanager
async def serving(width: int = 2, max_age_seconds: float = 10.0) -> AsyncIterator[tuple[EchoStage, OrderedStream]]:
    stage = EchoStage()
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(stage.handle)  # no serializers: bytes, as OrderedStream sends them
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {"Stream": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    ordered = OrderedStream(channel, METHOD, width=width, max_age_seconds=max_age_seconds)
    try:
        yield stage, ordered
    finally:
        await stage.allow_all()
        await ordered.close()
        await channel.close()
        await server.stop(None)


async def until(condition: Callable[[], Any], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), TIMEOUT / 2)  # within run()'s bound, so the failure names what it waited for
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


def received(stage: EchoStage) -> int:
    return sum(len(stream.received) for stream in stage.streams)


def test_answers_come_back_to_their_callers_in_order_over_a_pair_of_streams() -> None:
    async def scenario() -> None:
        async with serving(width=2) as (stage, ordered):
            await stage.hold()
            payloads = [b"%d" % i for i in range(12)]
            calls = [asyncio.ensure_future(ordered.call(p)) for p in payloads]
            await until(lambda: received(stage) == len(payloads), "every batch at the stage")
            # Batches alternate between the two streams, each in the callers' order.
            assert sorted(stream.received for stream in stage.streams) == [payloads[0::2], payloads[1::2]]
            await stage.allow_all()
            assert await asyncio.gather(*calls) == [answer(p) for p in payloads]
            # Many callers at once, answered while others write.
            many = [b"m%d" % i for i in range(300)]
            assert await asyncio.gather(*(ordered.call(p) for p in many)) == [answer(p) for p in many]
            assert len(stage.streams) == 2

    run(scenario)


def test_a_cancelled_caller_does_not_shift_the_answers_of_others() -> None:
    async def scenario() -> None:
        async with serving(width=2) as (stage, ordered):
            await stage.hold()
            payloads = [b"%d" % i for i in range(10)]
            calls = [asyncio.ensure_future(ordered.call(p)) for p in payloads]
            await asyncio.sleep(0)  # each call runs to its first wait: 0 and 1 write, the others wait for their stream
            calls[1].cancel()  # while its batch is being written
            calls[4].cancel()  # before its batch was queued: it is never sent
            await until(lambda: received(stage) == len(payloads) - 1, "every batch but the one cancelled before sending")
            calls[5].cancel()  # while waiting for its answer
            calls[8].cancel()
            await stage.allow_all()
            results = await asyncio.gather(*calls, return_exceptions=True)
            cancelled = {1, 4, 5, 8}
            for index, (payload, result) in enumerate(zip(payloads, results)):
                if index in cancelled:
                    assert isinstance(result, asyncio.CancelledError), (payload, result)
                else:
                    assert result == answer(payload)
            assert sorted(stage.answered) == sorted(p for i, p in enumerate(payloads) if i != 4)
            # the streams are still in step for whoever comes next
            assert await asyncio.gather(*(ordered.call(b"after%d" % i) for i in range(4))) == [answer(b"after%d" % i) for i in range(4)]
            assert len(stage.streams) == 2

    run(scenario)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL])
def test_a_broken_stream_resends_its_unanswered_batches_on_a_new_one(code: grpc.StatusCode) -> None:
    async def scenario() -> None:
        async with serving(width=1) as (stage, ordered):
            await stage.hold()
            payloads = [b"%d" % i for i in range(8)]
            calls = [asyncio.ensure_future(ordered.call(p)) for p in payloads]
            await until(lambda: received(stage) == len(payloads), "every batch at the stage")
            await stage.allow(3)
            # received by their callers, not only sent: an answer still on the wire when the
            # stream breaks is lost with it, and that batch is rightly resent
            await until(lambda: all(call.done() for call in calls[:3]), "three answers")
            await stage.break_stream(stage.streams[0], code)
            await stage.allow_all()
            assert await asyncio.gather(*calls) == [answer(p) for p in payloads]
            assert [stream.received for stream in stage.streams] == [payloads, payloads[3:]]
            assert stage.answered == payloads  # each exactly once: nothing answered was resent

    run(scenario)


def test_a_stream_that_keeps_breaking_fails_every_caller_with_its_error_after_the_resends() -> None:
    async def scenario() -> None:
        async with serving(width=1) as (stage, ordered):
            await stage.hold()
            payloads = [b"%d" % i for i in range(3)]
            calls = [asyncio.ensure_future(ordered.call(p)) for p in payloads]
            for broken in range(streams.RESEND_ATTEMPTS + 1):
                await until(lambda n=broken: len(stage.streams) > n and stage.streams[n].received == payloads, f"stream {broken + 1}")
                await stage.break_stream(stage.streams[broken], grpc.StatusCode.UNAVAILABLE)
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert [(type(r), r.code()) for r in results] == [(grpc.aio.AioRpcError, grpc.StatusCode.UNAVAILABLE)] * len(payloads)
            assert len(stage.streams) == streams.RESEND_ATTEMPTS + 1 and stage.answered == []

    run(scenario)


def test_a_non_transient_error_goes_to_its_caller_only() -> None:
    """Each failing batch takes its own error; the batches behind it are resent, however many
    fail ahead of them (the stage never processed them, so it is no attempt of theirs)."""

    async def scenario() -> None:
        async with serving(width=1) as (stage, ordered):
            await stage.hold()
            bad = [b"bad%d" % i for i in range(streams.RESEND_ATTEMPTS + 1)]
            payloads = [*bad, b"good"]
            calls = [asyncio.ensure_future(ordered.call(p)) for p in payloads]
            # One batch at a time, each once the newest stream holds every batch not yet answered.
            for index in range(len(payloads)):
                outstanding = payloads[index:]
                await until(
                    lambda n=index, outstanding=outstanding: (
                        all(c.done() for c in calls) or (len(stage.streams) > n and stage.streams[n].received == outstanding)
                    ),
                    f"stream {index + 1} with {outstanding}",
                )
                await stage.allow(1)
            results = await asyncio.gather(*calls, return_exceptions=True)
            for payload, result in zip(bad, results):
                assert isinstance(result, grpc.aio.AioRpcError), (payload, result)
                assert (result.code(), result.details()) == (grpc.StatusCode.INVALID_ARGUMENT, payload.decode())
            assert results[-1] == answer(b"good")

    run(scenario)


def test_a_stream_past_its_age_takes_no_new_batches_and_closes_once_answered() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        real_time, skew = loop.time, [0.0]
        loop.time = lambda: real_time() + skew[0]  # type: ignore[method-assign]  # the clock OrderedStream ages streams by
        async with serving(width=1, max_age_seconds=10) as (stage, ordered):
            assert [await ordered.call(b"a"), await ordered.call(b"b")] == [answer(b"a"), answer(b"b")]
            assert len(stage.streams) == 1
            await stage.hold()
            held = asyncio.ensure_future(ordered.call(b"c"))
            await until(lambda: stage.streams[0].received == [b"a", b"b", b"c"], "c on the first stream")
            skew[0] = 11.0
            fresh = asyncio.ensure_future(ordered.call(b"d"))
            await until(lambda: len(stage.streams) == 2 and stage.streams[1].received == [b"d"], "d on a new stream")
            await until(lambda: stage.streams[0].input_ended, "the old stream half-closed")
            await stage.allow_all()
            assert [await held, await fresh] == [answer(b"c"), answer(b"d")]
            await until(lambda: stage.streams[0].ended, "the old stream closed once answered")
            assert stage.answered == [b"a", b"b", b"c", b"d"]  # c was answered where it was sent, not resent

    run(scenario)
