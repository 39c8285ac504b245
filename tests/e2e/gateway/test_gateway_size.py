"""The request size limit (FENLEI_GATEWAY_MAX_REQUEST_BYTES, 1 MiB by default), with and
without sidecars: a unary gRPC request and a REST body over it are refused before any
service sees them (RESOURCE_EXHAUSTED, 413 with a JSON status), as soon as the limit is
passed: an oversized body costs the gateway no more memory than the limit."""

from __future__ import annotations

import json

import grpc
import pytest

from fenlei.gateway.config import GatewaySettings, public_methods

LIMIT = GatewaySettings().max_request_bytes
HUGE = 50 << 20
TIMEOUT = 60
TOO_LARGE = f"larger than the gateway's limit of {LIMIT} bytes"
UNARY = {m.path: m.service for m in public_methods() if not m.streaming}

pytestmark = pytest.mark.xdist_group("sidecar_mesh")  # one worker runs the users of the mesh with sidecars


@pytest.fixture(params=["without-sidecars", "with-sidecars"])
def any_gateway(request):
    """The session meshes' gateways: routes built straight from the contract, and routes
    from the mesh policy (rds-gateway.json, through the control plane)."""
    return request.getfixturevalue("gateway" if request.param == "without-sidecars" else "sidecar_gateway")


def message_of(size: int) -> bytes:
    """A serialized message of `size` bytes or more: field 1, length-delimited."""
    length, varint = size, b""
    while length > 0x7F:
        varint += bytes([length & 0x7F | 0x80])
        length >>= 7
    return b"\x0a" + varint + bytes([length]) + b"x" * size


@pytest.mark.parametrize("path", sorted(UNARY))
def test_a_unary_grpc_request_over_the_limit_reaches_no_service(any_gateway, path) -> None:
    service = UNARY[path]
    before = any_gateway.upstream_requests(service)
    call = any_gateway.channel().unary_unary(path)  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as failure:
        call(message_of(2 * LIMIT), metadata=any_gateway.metadata("admin"), timeout=TIMEOUT)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (failure.value.code(), failure.value.details())
    assert TOO_LARGE in failure.value.details()
    assert any_gateway.upstream_requests(service) == before, f"{path}: the {service} service saw the request"


def test_a_request_under_the_limit_still_reaches_the_service(any_gateway) -> None:
    """Within the gateway's limit the pipeline answers, with an error of its own (a text of
    half a million characters is over its limit for a document)."""
    before = any_gateway.upstream_requests("pipeline")
    call = any_gateway.channel().unary_unary("/fenlei.v1.Pipeline/Classify")
    with pytest.raises(grpc.RpcError) as failure:
        call(message_of(LIMIT // 2), metadata=any_gateway.metadata(), timeout=TIMEOUT)
    assert TOO_LARGE not in failure.value.details(), failure.value.details()
    assert any_gateway.upstream_requests("pipeline") == before + 1


# A unary method and a stream (a JSON array of messages); each body is one endless string.
OPENINGS = {"/v1/classify": b'{"text": "', "/v1/classify:stream": b'[{"documents": [{"id": "a", "text": "'}


@pytest.mark.parametrize("path", sorted(OPENINGS))
def test_a_huge_rest_body_is_refused_early_and_costs_no_memory(any_gateway, path) -> None:
    """50 MiB bodies (one string the transcoder's parser would hold whole), with a length
    and chunked: 413 once the limit is passed, the connection closed before the rest got
    in, and Envoy's heap as it was (each used to take some 100 MB, for good)."""
    before = any_gateway.upstream_requests("pipeline")
    heap = any_gateway.memory()
    for chunked in (False, True, False):
        size, sent, answer = any_gateway.send_oversized(path, HUGE, OPENINGS[path], chunked=chunked)
        assert sent < size, f"the gateway read the whole body before it answered: {answer[:300]!r}"
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
        assert b"content-type: application/json" in head.lower()
        status = json.loads(body)
        assert status["code"] == 8 and TOO_LARGE in status["message"], status
    assert any_gateway.memory() - heap < 32 << 20
    assert any_gateway.upstream_requests("pipeline") == before
