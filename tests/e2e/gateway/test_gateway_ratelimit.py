"""The per-route token bucket: a private gateway (1 call/s, burst 3) in front of the session
mesh refuses the excess of a burst with 429 / RESOURCE_EXHAUSTED, and the pipeline never
sees it."""

from __future__ import annotations

import time

import grpc

from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

GOOD = "姚明率领火箭队击败湖人"
BURST, RATE, CALLS = 3, 1, 20


def test_rest_burst_is_limited(private_gateway) -> None:
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    token = gateway.token("viewer")
    started = time.monotonic()
    replies = [gateway.rest("/v1/classify", {"text": GOOD, "model": "news"}, token=token) for _ in range(CALLS)]
    allowed = BURST + RATE * (int(time.monotonic() - started) + 1)
    ok = [r for r in replies if r.status == 200]
    limited = [r for r in replies if r.status == 429]
    assert len(ok) + len(limited) == CALLS, [r.status for r in replies]
    assert BURST <= len(ok) <= allowed, [r.status for r in replies]
    for reply in limited:
        body = reply.status_body()
        assert body["code"] == 8 and body["message"].startswith("rate limit exceeded"), body
    assert gateway.upstream_requests("pipeline") == len(ok)  # the excess never reached it


def test_grpc_burst_is_limited_as_resource_exhausted(private_gateway) -> None:
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    metadata = gateway.metadata("viewer")
    codes = []
    started = time.monotonic()
    for _ in range(CALLS):
        try:
            stub.Classify(pipeline_pb2.ClassifyRequest(text=GOOD, model="news"), metadata=metadata, timeout=30)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
            assert error.details().startswith("rate limit exceeded"), error.details()
    allowed = BURST + RATE * (int(time.monotonic() - started) + 1)
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert BURST <= codes.count(grpc.StatusCode.OK) <= allowed, codes
    assert gateway.upstream_requests("pipeline") == codes.count(grpc.StatusCode.OK)


def test_each_route_has_its_own_bucket(private_gateway) -> None:
    """Exhausting Classify's bucket leaves Segment's alone."""
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    token = gateway.token("viewer")
    statuses = [gateway.rest("/v1/classify", {"text": GOOD, "model": "news"}, token=token).status for _ in range(BURST + 3)]
    assert 429 in statuses, statuses
    assert gateway.rest("/v1/segmenter:segment", {"documents": [{"id": "a", "text": GOOD}]}, token=token).status == 200
