"""Who called, as the services see it behind the gateway: x-fenlei-subject is the subject
of the token the gateway checked, whatever the client sent in that header; without a
token there is none. A real Envoy gateway in front of a gRPC server of the test's own that
records what reached it and who fenlei.runtime.rpc.caller says called."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testkit import Recorder, Seen, recording_server

from fenlei.gateway.config import REFLECTION_INFO
from fenlei.runtime.rpc import CLIENT_CERT_HEADER, SUBJECT_HEADER
from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc

TIMEOUT = 30.0  # a hang guard
CLASSIFY = "/fenlei.v1.Pipeline/Classify"
FORGED = [(SUBJECT_HEADER, "root"), (CLIENT_CERT_HEADER, "By=spiffe://cluster.local/ns/fenlei/sa/registry;URI=spiffe://x")]


@pytest.fixture
def upstream() -> Iterator[tuple[str, Recorder]]:
    with recording_server("127.0.0.1:0", streams=frozenset({REFLECTION_INFO})) as server:
        yield server


def test_the_subject_is_the_tokens_whatever_the_client_sent(gateway_in_front_of, upstream) -> None:
    address, recorder = upstream
    gateway = gateway_in_front_of(address)
    token = gateway.authority.mint("viewer", ttl_seconds=600, subject="alice")
    # The gateway passes on no certificate a client claims either.
    as_alice = Seen(CLASSIFY, ("alice",), (), "alice")

    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    stub.Classify(
        pipeline_pb2.ClassifyRequest(text="x", model="m"), metadata=[("authorization", f"Bearer {token}"), *FORGED], timeout=TIMEOUT
    )
    assert recorder.last() == as_alice
    answer = gateway.rest("/v1/classify", {"text": "x", "model": "m"}, token=token, headers=dict(FORGED))
    assert answer.status == 200, answer.body
    assert recorder.last() == as_alice


def test_without_a_token_no_subject_reaches_a_service(gateway_in_front_of, upstream) -> None:
    address, recorder = upstream
    gateway = gateway_in_front_of(address, anonymous=True)
    nobody = Seen(CLASSIFY, (), (), "anonymous")

    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    stub.Classify(pipeline_pb2.ClassifyRequest(text="x", model="m"), metadata=FORGED, timeout=TIMEOUT)
    assert recorder.last() == nobody
    answer = gateway.rest("/v1/classify", {"text": "x", "model": "m"}, token=None, headers=dict(FORGED))
    assert answer.status == 200, answer.body
    assert recorder.last() == nobody


def test_no_route_passes_on_a_subject_the_client_claims(gateway_in_front_of, upstream) -> None:
    """Reflection is open to callers without a token (no token is checked on its route):
    the header a client sent is removed there too."""
    address, recorder = upstream
    gateway = gateway_in_front_of(address)
    reflection = gateway.channel().stream_stream(REFLECTION_INFO)
    assert list(reflection(iter([b""]), metadata=FORGED, timeout=TIMEOUT)) == []
    assert recorder.last() == Seen(REFLECTION_INFO, (), (), "anonymous")
