"""The token buckets, one per route and caller: a private gateway (1 call/s, burst 3) in
front of the session mesh refuses the excess of a caller's burst with 429 /
RESOURCE_EXHAUSTED and a Retry-After, the pipeline never sees it, and other callers go on
(a caller is the token's subject, else the client's address)."""

from __future__ import annotations

import time

import grpc
import pytest

from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

GOOD = "姚明率领火箭队击败湖人"
BURST, RATE, CALLS = 3, 1, 20


def test_rest_burst_is_limited(private_gateway) -> None:
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    token = gateway.token("viewer")
    started = time.monotonic()
    replies = [gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=token) for _ in range(CALLS)]
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
            stub.Classify(pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews"), metadata=metadata, timeout=30)
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
    statuses = [gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=token).status for _ in range(BURST + 3)]
    assert 429 in statuses, statuses
    assert gateway.rest("/v1/segmenter:segment", {"documents": [{"id": "a", "text": GOOD}]}, token=token).status == 200


SEGMENT = "/v1/segmenter:segment"
DOCUMENTS = {"documents": [{"id": "a", "text": GOOD}]}


def exhaust(gateway, **caller):
    """Calls until the caller's bucket is empty; returns the first refusal."""
    while (reply := gateway.rest(SEGMENT, DOCUMENTS, **caller)).status == 200:
        pass
    return reply


def refills(started: float) -> int:
    """Tokens a bucket may have got back since `started` (one a second, at most)."""
    return RATE * (int(time.monotonic() - started) + 1)


def test_one_caller_exhausting_its_bucket_does_not_stop_another(private_gateway) -> None:
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    alice, bob = (gateway.authority.mint("viewer", ttl_seconds=600, subject=name) for name in ("alice", "bob"))
    refused = exhaust(gateway, token=alice)
    started = time.monotonic()
    assert refused.status == 429 and refused.status_body()["code"] == 8, refused.body
    assert int(refused.headers["retry-after"]) >= 1, refused.headers
    # bob, from the same address, has a full bucket of his own
    assert [gateway.rest(SEGMENT, DOCUMENTS, token=bob).status for _ in range(BURST)] == [200] * BURST
    # another token of alice's draws on alice's bucket
    again = gateway.authority.mint("viewer", ttl_seconds=600, subject="alice")
    statuses = [gateway.rest(SEGMENT, DOCUMENTS, token=again).status for _ in range(BURST)]
    assert statuses.count(200) <= refills(started), statuses


def test_a_grpc_caller_gets_resource_exhausted_with_retry_after(private_gateway) -> None:
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST)
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())

    def classify(subject: str) -> pipeline_pb2.ClassifyResponse:
        metadata = [("authorization", f"Bearer {gateway.authority.mint('viewer', ttl_seconds=600, subject=subject)}")]
        return stub.Classify(pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews"), metadata=metadata, timeout=30)

    with pytest.raises(grpc.RpcError) as failure:
        while True:
            classify("carol")
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (failure.value.code(), failure.value.details())
    assert int(dict(failure.value.trailing_metadata())["retry-after"]) >= 1
    assert [len(classify("dave").labels) > 0 for _ in range(BURST)] == [True] * BURST


def test_callers_without_a_token_are_limited_per_address(private_gateway) -> None:
    """With anonymous calls allowed: one bucket per client address, whatever the caller
    claims in X-Forwarded-For."""
    gateway = private_gateway(rate_limit_per_second=RATE, rate_limit_burst=BURST, anonymous=True)
    exhaust(gateway, token=None, source="127.0.0.1")
    started = time.monotonic()
    spoofed = [gateway.rest(SEGMENT, DOCUMENTS, token=None, headers={"x-forwarded-for": f"10.0.0.{i}"}).status for i in range(BURST)]
    assert spoofed.count(200) <= refills(started), spoofed
    assert [gateway.rest(SEGMENT, DOCUMENTS, token=None, source="127.0.0.2").status for _ in range(BURST)] == [200] * BURST
    # a caller with a token is limited by its subject, not by the address it shares
    assert [gateway.rest(SEGMENT, DOCUMENTS, token="viewer").status for _ in range(BURST)] == [200] * BURST
