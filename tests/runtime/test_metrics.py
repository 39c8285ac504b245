"""fenlei.runtime.metrics in-process: the gRPC series of go-grpc-prometheus with the code
each call really ends with (the servicers' aborts, the admission interceptor's UNAVAILABLE
and INVALID_ARGUMENT, cancels, deadlines, exceptions), message counts of every kind of
stream, the latency histogram's buckets, and the segmenter's documents."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import prometheus_client
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from servicekit import generic_server
from testkit import wait_for

from fenlei.runtime import metrics
from fenlei.runtime.server import start_server
from fenlei.segmenter import servicer
from fenlei.v1 import common_pb2, segmenter_pb2, segmenter_pb2_grpc

SEGMENTER = "fenlei.v1.Segmenter"
PROBE = "test.Probe"


def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The series of one method, as deltas from when it was made."""

    def __init__(self, service: str, method: str, kind: str) -> None:
        self.labels = {"grpc_type": kind, "grpc_service": service, "grpc_method": method}
        self.before = self.now()

    def now(self) -> dict[str, float]:
        # The codes first: a call's other series move before its code does, so once its
        # code is read, the rest of it is too.
        values = {code.name: sample("grpc_server_handled_total", **self.labels, grpc_code=code.name) for code in grpc.StatusCode}
        for name in ("started", "msg_received", "msg_sent"):
            values[name] = sample(f"grpc_server_{name}_total", **self.labels)
        values["observed"] = sample("grpc_server_handling_seconds_count", **self.labels)
        return values

    def delta(self) -> dict[str, float]:
        """What moved, without the series that did not."""
        return {name: value - self.before[name] for name, value in self.now().items() if value != self.before[name]}

    def settled(self, calls: int = 1) -> dict[str, float]:
        """The delta once `calls` calls have ended on the server: an aborted call's status
        may reach the caller before the server has counted it."""

        def ended() -> dict[str, float] | None:
            moved = self.delta()
            return moved if sum(moved.get(code.name, 0) for code in grpc.StatusCode) == calls else None

        return wait_for(ended, f"{calls} calls to be counted")


def documents(*texts: str) -> list[common_pb2.Document]:
    return [common_pb2.Document(id=str(i), text=text) for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def segmenter(module_servers, helpers, tmp_path_factory):
    return module_servers.start("segmenter", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("segmenter")))


def test_a_unary_call_is_started_handled_and_timed(segmenter) -> None:
    counts = Counts(SEGMENTER, "Segment", "unary")
    stages = sample("fenlei_stage_documents_total", stage="segmenter")
    segmenter_pb2_grpc.SegmenterStub(segmenter.channel).Segment(
        segmenter_pb2.SegmentRequest(documents=documents("北京", "上海")), timeout=30
    )
    assert counts.settled() == {"started": 1, "msg_received": 1, "msg_sent": 1, "observed": 1, "OK": 1}
    assert sample("fenlei_stage_documents_total", stage="segmenter") - stages == 2


def test_an_abort_by_the_servicer_is_counted_with_its_code(segmenter, helpers) -> None:
    counts = Counts(SEGMENTER, "Segment", "unary")
    too_long = segmenter_pb2.SegmentRequest(documents=documents("长" * 2_001))  # settings_for allows 2,000 characters
    error = helpers.rpc_error(segmenter_pb2_grpc.SegmenterStub(segmenter.channel).Segment, too_long)
    assert counts.settled() == {"started": 1, "msg_received": 1, "observed": 1, error.code().name: 1}
    assert error.code() != grpc.StatusCode.OK


def test_a_message_that_does_not_parse_counts_as_invalid_argument(segmenter, helpers) -> None:
    counts = Counts(SEGMENTER, "Segment", "unary")
    not_utf8 = b"\x0a\x03\x12\x01\xff"  # documents[0].text = the byte 0xff
    error = helpers.rpc_error(segmenter.channel.unary_unary(f"/{SEGMENTER}/Segment"), not_utf8)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert counts.settled() == {"started": 1, "msg_received": 1, "observed": 1, "INVALID_ARGUMENT": 1}


def test_calls_while_loading_count_as_unavailable(loop_thread, helpers, tmp_path, tools) -> None:
    addresses: list[str] = []

    class Listening(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "listening":
                addresses.append(record.fields["address"])

    gate = asyncio.Event()

    def slow_register(server, settings):
        service = servicer.register(server, settings)

        async def load() -> None:
            await gate.wait()
            await service.load()

        return dataclasses.replace(service, load=load)

    handler, logger = Listening(), logging.getLogger("fenlei.server")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    counts = Counts(SEGMENTER, "Segment", "unary")
    future = loop_thread.submit(start_server("segmenter", helpers.settings_for(tmp_path), slow_register))
    try:
        address = tools.wait_for(lambda: addresses[-1] if addresses else None, "the server to listen")
        with grpc.insecure_channel(address) as channel:
            error = helpers.rpc_error(
                segmenter_pb2_grpc.SegmenterStub(channel).Segment, segmenter_pb2.SegmentRequest(documents=documents("北京"))
            )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert counts.settled() == {"started": 1, "msg_received": 1, "observed": 1, "UNAVAILABLE": 1}
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        loop_thread.loop.call_soon_threadsafe(gate.set)
        loop_thread.run(future.result(60).server.stop(None))


def test_a_bidi_stream_counts_each_message_and_ends_with_its_code(segmenter, helpers) -> None:
    stub = segmenter_pb2_grpc.SegmenterStub(segmenter.channel)
    counts = Counts(SEGMENTER, "SegmentStream", "bidi_stream")
    batches = [segmenter_pb2.SegmentStreamRequest(documents=documents("北京", "上海")) for _ in range(3)]
    assert len(list(stub.SegmentStream(iter(batches), timeout=30))) == 3
    assert counts.settled() == {"started": 1, "msg_received": 3, "msg_sent": 3, "observed": 1, "OK": 1}

    counts = Counts(SEGMENTER, "SegmentStream", "bidi_stream")
    failing = [batches[0], segmenter_pb2.SegmentStreamRequest(documents=documents("长" * 2_001)), batches[0]]
    answers, error = helpers.stream_error(stub.SegmentStream, failing)
    assert len(answers) == 1
    moved = counts.settled()
    assert moved.pop("msg_received") >= 2  # the third may have arrived before the stream ended
    assert moved == {"started": 1, "msg_sent": 1, "observed": 1, error.code().name: 1}


def test_health_checks_are_counted(segmenter, helpers) -> None:
    counts = Counts("grpc.health.v1.Health", "Check", "unary")
    health = health_pb2_grpc.HealthStub(segmenter.channel)
    health.Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert helpers.rpc_error(health.Check, health_pb2.HealthCheckRequest(service="fenlei.v1.Nothing")).code() == grpc.StatusCode.NOT_FOUND
    assert counts.settled(2) == {"started": 2, "msg_received": 2, "msg_sent": 1, "observed": 2, "OK": 1, "NOT_FOUND": 1}


# ---------------------------------------------------------------- a probe servicer of its own


class Probe:
    def __init__(self) -> None:
        self.held = asyncio.Event()  # set once Hold has sent its first message

    async def Raise(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("not a fenlei error: grpc answers UNKNOWN")

    async def SetCode(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        context.set_code(grpc.StatusCode.ALREADY_EXISTS)
        return b""

    async def Slow(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(0.003)
        return request

    async def Sum(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return str(sum([len(request) async for request in requests])).encode()

    async def Hold(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.Event().wait()  # until the caller goes away


@pytest.fixture(scope="module")
def probe(loop_thread) -> Iterator[grpc.Channel]:
    answering = Probe()
    handlers = {
        "Raise": grpc.unary_unary_rpc_method_handler(answering.Raise),
        "SetCode": grpc.unary_unary_rpc_method_handler(answering.SetCode),
        "Slow": grpc.unary_unary_rpc_method_handler(answering.Slow),
        "Sum": grpc.stream_unary_rpc_method_handler(answering.Sum),
        "Hold": grpc.unary_stream_rpc_method_handler(answering.Hold),
    }
    with generic_server(loop_thread, PROBE, handlers, metrics.server_interceptors()) as (channel, _):
        yield channel


def test_an_exception_counts_as_unknown_and_a_set_code_as_itself(probe, helpers) -> None:
    raised, set_code = Counts(PROBE, "Raise", "unary"), Counts(PROBE, "SetCode", "unary")
    assert helpers.rpc_error(probe.unary_unary(f"/{PROBE}/Raise"), b"").code() == grpc.StatusCode.UNKNOWN
    assert helpers.rpc_error(probe.unary_unary(f"/{PROBE}/SetCode"), b"").code() == grpc.StatusCode.ALREADY_EXISTS
    assert raised.settled() == {"started": 1, "msg_received": 1, "observed": 1, "UNKNOWN": 1}
    assert set_code.settled() == {"started": 1, "msg_received": 1, "msg_sent": 1, "observed": 1, "ALREADY_EXISTS": 1}


def test_a_client_stream_counts_what_it_received(probe) -> None:
    counts = Counts(PROBE, "Sum", "client_stream")
    assert probe.stream_unary(f"/{PROBE}/Sum")(iter([b"ab", b"c", b"def", b""]), timeout=30) == b"6"
    assert counts.settled() == {"started": 1, "msg_received": 4, "msg_sent": 1, "observed": 1, "OK": 1}


def test_a_server_stream_the_caller_cancels_counts_as_cancelled(probe) -> None:
    counts = Counts(PROBE, "Hold", "server_stream")
    call = probe.unary_stream(f"/{PROBE}/Hold")(b"", timeout=60)
    assert next(call) == b"first"
    call.cancel()
    assert counts.settled() == {"started": 1, "msg_received": 1, "msg_sent": 1, "observed": 1, "CANCELLED": 1}


def test_a_server_stream_past_its_deadline_counts_as_deadline_exceeded(probe) -> None:
    counts = Counts(PROBE, "Hold", "server_stream")
    call = probe.unary_stream(f"/{PROBE}/Hold")(b"", timeout=0.2)
    with pytest.raises(grpc.RpcError) as failure:
        list(call)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert counts.settled() == {"started": 1, "msg_received": 1, "msg_sent": 1, "observed": 1, "DEADLINE_EXCEEDED": 1}


def test_the_histogram_puts_a_call_in_the_buckets_of_its_duration(probe) -> None:
    labels = {"grpc_type": "unary", "grpc_service": PROBE, "grpc_method": "Slow"}

    def buckets() -> dict[str, float]:
        bounds = [*(str(bound) for bound in metrics.LATENCY_BUCKETS), "+Inf"]
        return {le: sample("grpc_server_handling_seconds_bucket", **labels, le=le) for le in bounds}

    before, total = buckets(), sample("grpc_server_handling_seconds_sum", **labels)
    assert probe.unary_unary(f"/{PROBE}/Slow")(b"x", timeout=30) == b"x"
    moved = {le: value - before[le] for le, value in buckets().items()}
    # The call slept 3 ms: it is above the 2.5 ms bound, and in every bucket from its duration on.
    assert moved["0.0005"] == moved["0.001"] == moved["0.0025"] == 0
    assert moved["+Inf"] == 1 and sorted(moved.values()) == list(moved.values())
    assert sample("grpc_server_handling_seconds_sum", **labels) - total >= 0.003


def test_no_endpoint_when_the_port_is_minus_one(helpers, tmp_path) -> None:
    assert metrics.start("segmenter", helpers.settings_for(tmp_path, metrics_port=-1)) == ""
