"""gRPC interop-style cases (after grpc/interop's core set) on a stage's stream
(Segmenter.SegmentStream) and on the pipeline's (Pipeline.ClassifyStream).

Every case ends by checking that the service still answers — with the right documents:
the pipeline shares one open stream per stage among all its callers, so a cancelled or
timed-out call must neither wedge those streams nor leave an answer behind that a later
caller would receive. Cases that cancel run on a pipeline process of their own, so a
failure there cannot spill into the session mesh's other tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc, segmenter_pb2, segmenter_pb2_grpc

TIMEOUT = 30  # a hang guard, not a speed requirement
TEXTS = [
    "姚明率领火箭队击败湖人",
    "沪指放量大涨 券商股集体涨停",
    "教育部公布高考招生新政策",
    "新款网络游戏公测开启",
    "北京二手房成交量环比下降",
]


@dataclass(frozen=True)
class Target:
    service: str
    stream: str
    unary: str
    stream_request: Callable[[list[common_pb2.Document]], Any]
    unary_request: Callable[[list[common_pb2.Document]], Any]
    items: Callable[[Any], Any]


TARGETS = {
    "segmenter": Target(
        "segmenter",
        "SegmentStream",
        "Segment",
        lambda docs: segmenter_pb2.SegmentStreamRequest(documents=docs),
        lambda docs: segmenter_pb2.SegmentRequest(documents=docs),
        lambda response: response.documents,
    ),
    "pipeline": Target(
        "pipeline",
        "ClassifyStream",
        "ClassifyBatch",
        lambda docs: pipeline_pb2.ClassifyStreamRequest(documents=docs, model="reviews", top_k=1),
        lambda docs: pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews", top_k=1),
        lambda response: response.predictions,
    ),
}


def docs(prefix: str, count: int, length: int = 0) -> list[common_pb2.Document]:
    def text(i: int) -> str:
        base = TEXTS[i % len(TEXTS)]
        return (base * (length // len(base) + 1))[:length] if length else base

    return [common_pb2.Document(id=f"{prefix}-{i}", text=text(i)) for i in range(count)]


# How long a check that should take well under a second may take before it counts as a
# hang: short, so that a wedged service fails its test instead of stalling the suite.
AFTER_GUARD = 10


class Endpoint:
    """Stubs of one target on some address: the session mesh's, or a dedicated process's."""

    def __init__(self, channel: grpc.Channel, target: Target) -> None:
        stub = STUBS[target.service](channel)
        self.target = target
        self.stream = getattr(stub, target.stream)
        self.unary = getattr(stub, target.unary)


STUBS = {"segmenter": segmenter_pb2_grpc.SegmenterStub, "pipeline": pipeline_pb2_grpc.PipelineStub}


def assert_answers_right(endpoint: Endpoint) -> None:
    """A fresh stream and a unary call answer their own documents, in order."""
    target = endpoint.target
    prefix = uuid.uuid4().hex[:8]
    requests = [target.stream_request(docs(f"{prefix}-s{n}", size)) for n, size in enumerate((3, 300, 1))]
    responses = list(endpoint.stream(iter(requests), timeout=AFTER_GUARD))
    assert [[item.id for item in target.items(r)] for r in responses] == [[d.id for d in q.documents] for q in requests]
    batch = docs(f"{prefix}-u", 50)
    answer = endpoint.unary(target.unary_request(batch), timeout=AFTER_GUARD)
    assert [item.id for item in target.items(answer)] == [d.id for d in batch]

    # concurrent callers each get their own answers (a stale entry in a shared stage
    # stream would hand caller A the answer meant for caller B)
    def own_answer(name: str) -> tuple[list[str], list[str]]:
        mine = docs(f"{prefix}-{name}", 3)
        try:
            got = [item.id for item in target.items(endpoint.unary(target.unary_request(mine), timeout=AFTER_GUARD))]
        except grpc.RpcError as error:
            got = [error.code().name]
        return [d.id for d in mine], got

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(own_answer, "ABCD"))
    assert all(sent == got for sent, got in outcomes), outcomes


@pytest.fixture(params=sorted(TARGETS))
def target(request) -> Target:
    return TARGETS[request.param]


@pytest.fixture
def endpoint(mesh, target) -> Endpoint:
    """The target on the session mesh."""
    return Endpoint(mesh.channel(target.service), target)


@pytest.fixture
def breakable(mesh, target, dedicated_pipeline) -> Iterator[Endpoint]:
    """The target where a test may break it: the pipeline is a dedicated process (it keeps
    shared streams to the stages, which a failure could wedge for every later caller);
    a stage keeps nothing between calls, so the session's serves."""
    if target.service != "pipeline":
        yield Endpoint(mesh.channel(target.service), target)
        return
    process = dedicated_pipeline()
    with grpc.insecure_channel(process.address) as channel:
        yield Endpoint(channel, target)


def test_empty_stream(endpoint) -> None:
    call = endpoint.stream(iter([]), timeout=TIMEOUT)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK
    assert_answers_right(endpoint)


def test_large_batch_in_one_message(endpoint, target) -> None:
    batch = docs("big", 4000)
    responses = list(endpoint.stream(iter([target.stream_request(batch)]), timeout=TIMEOUT))
    assert len(responses) == 1
    items = target.items(responses[0])
    assert len(items) == 4000
    assert [item.id for item in items] == [d.id for d in batch]
    if target.service == "segmenter":
        assert all("".join(item.tokens) == doc.text for item, doc in zip(items, batch))
    else:
        assert all(len(item.labels) == 1 for item in items)
    answer = endpoint.unary(target.unary_request(batch), timeout=TIMEOUT)
    assert [item.id for item in target.items(answer)] == [d.id for d in batch]


def test_cancel_after_begin(breakable, tools) -> None:
    requests = tools.RequestQueue()
    call = breakable.stream(iter(requests), timeout=TIMEOUT)
    try:
        call.cancel()
        with pytest.raises(grpc.RpcError) as failure:
            next(call)
        assert failure.value.code() == grpc.StatusCode.CANCELLED
    finally:
        requests.close()
    assert_answers_right(breakable)


def test_cancel_after_first_response(breakable, tools, target) -> None:
    requests = tools.RequestQueue()
    call = breakable.stream(iter(requests), timeout=TIMEOUT)
    try:
        first = docs("first", 2)
        requests.put(target.stream_request(first))
        assert [item.id for item in target.items(next(call))] == [d.id for d in first]
        # more work is on its way to the service when the client gives up
        requests.put(target.stream_request(docs("abandoned", 2000)))
        requests.put(target.stream_request(docs("abandoned-too", 500)))
        call.cancel()
        with pytest.raises(grpc.RpcError) as failure:
            for _ in call:
                pass
        assert failure.value.code() == grpc.StatusCode.CANCELLED
    finally:
        requests.close()
    assert_answers_right(breakable)


def test_deadline_exceeded_on_a_unary_call(breakable, target) -> None:
    """A tiny deadline on a big request: DEADLINE_EXCEEDED, and no stale answer left behind."""
    batch = docs("slow", 4000, length=200)
    with pytest.raises(grpc.RpcError) as failure:
        breakable.unary(target.unary_request(batch), timeout=0.01)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_answers_right(breakable)


def test_deadline_exceeded_on_a_stream(breakable, target) -> None:
    batch = docs("slow", 4000, length=200)
    with pytest.raises(grpc.RpcError) as failure:
        list(breakable.stream(iter([target.stream_request(batch)] * 2), timeout=0.01))
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_answers_right(breakable)


@pytest.mark.parametrize("service", ["segmenter", "preprocessor", "features", "classifier", "pipeline"])
def test_unknown_method_and_service_are_unimplemented(mesh, tools, service) -> None:
    channel = mesh.channel(service)
    name = tools.FULL_NAMES[service]
    for method in (f"/{name}/NoSuchMethod", "/fenlei.v1.NoSuchService/Classify", "/grpc.health.v1.Health/NoSuchMethod"):
        with pytest.raises(grpc.RpcError) as failure:
            channel.unary_unary(method)(b"", timeout=TIMEOUT)
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
        with pytest.raises(grpc.RpcError) as failure:
            list(channel.stream_stream(method)(iter([b"", b""]), timeout=TIMEOUT))
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
    assert tools.health_status(mesh.address(service)) == "SERVING"


def test_custom_metadata_does_not_break_calls(endpoint, target) -> None:
    metadata = (
        ("x-request-id", "e2e-" + uuid.uuid4().hex),
        ("x-custom-header", "some value"),
        ("x-custom-bin", b"\x00\x01\xfe\xff"),
        ("traceparent", "00-" + uuid.uuid4().hex + "-" + uuid.uuid4().hex[:16] + "-01"),
    )
    batch = docs("meta", 3)
    answer, call = endpoint.unary.with_call(target.unary_request(batch), metadata=metadata, timeout=TIMEOUT)
    assert [item.id for item in target.items(answer)] == [d.id for d in batch]
    assert call.code() == grpc.StatusCode.OK
    responses = list(endpoint.stream(iter([target.stream_request(batch)]), metadata=metadata, timeout=TIMEOUT))
    assert [item.id for item in target.items(responses[0])] == [d.id for d in batch]


def test_request_and_trace_ids_reach_the_json_log(mesh, tools, endpoint, target) -> None:
    """A failed call's log line carries the caller's x-request-id and W3C trace id."""
    request_id = "e2e-" + uuid.uuid4().hex
    trace_id = uuid.uuid4().hex
    metadata = (("x-request-id", request_id), ("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"))
    with pytest.raises(grpc.RpcError) as failure:
        endpoint.unary(target.unary_request([common_pb2.Document(id="blank", text=" ")]), metadata=metadata, timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def logged() -> dict | None:
        log = mesh.log(target.service)
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []:
            if request_id in line:
                return json.loads(line)
        return None

    entry = tools.wait_for(logged, f"a {target.service} log line with request id {request_id}")
    assert entry["request_id"] == request_id and entry["trace_id"] == trace_id
    assert entry["service"] == target.service and entry["level"] in ("INFO", "WARNING", "ERROR")
