"""The gateway's error table: each gRPC status a service (or Envoy) gives reaches a REST
caller as its HTTP status with a google.rpc.Status JSON body, and a gRPC caller through
the gateway as the same status; requests the gateway itself refuses never reach a service."""

from __future__ import annotations

import json
import socket

import grpc
import pytest

from fenlei.gateway.config import DEADLINE_PASSED
from fenlei.v1 import common_pb2, features_pb2, features_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc

GOOD = "姚明率领火箭队击败湖人"
TIMEOUT = 30

INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED, PERMISSION_DENIED = 3, 5, 8, 14, 4, 16, 7


def grpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(*args, **kwargs)
    return failure.value


def classify_grpc(gateway, role="viewer", timeout=TIMEOUT, **fields):
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    return stub.Classify(pipeline_pb2.ClassifyRequest(**fields), metadata=gateway.metadata(role), timeout=timeout)


# ---------------------------------------------------------------- statuses from the services


SERVICE_ROWS = {
    "empty-text": ({"text": "", "model": "reviews"}, 400, INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT, "no text"),
    "unknown-model": ({"text": GOOD, "model": "nope"}, 404, NOT_FOUND, grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
    # 100,001 characters: over the services' document limit, well under the 1 MiB body limit
    "long-document": ({"text": "中" * 100_001, "model": "reviews"}, 429, RESOURCE_EXHAUSTED, grpc.StatusCode.RESOURCE_EXHAUSTED, "100,001"),
}


@pytest.mark.parametrize("row", sorted(SERVICE_ROWS))
def test_service_errors_over_rest_and_grpc(mesh, gateway, row) -> None:
    fields, http_status, code, grpc_code, fragment = SERVICE_ROWS[row]
    body = json.dumps(fields, ensure_ascii=False).encode()
    assert len(body) < 1 << 20
    before = gateway.upstream_requests()
    reply = gateway.rest("/v1/classify", raw=body)
    assert reply.status == http_status, (reply.status, reply.body[:300])
    status = reply.status_body()
    assert status["code"] == code and fragment in status["message"], status
    assert gateway.upstream_requests() == before + 1  # the service answered, not the gateway

    error = grpc_error(classify_grpc, gateway, **fields)
    assert error.code() == grpc_code and fragment in error.details(), (error.code(), error.details())
    direct = grpc_error(mesh.pipeline.Classify, pipeline_pb2.ClassifyRequest(**fields), timeout=TIMEOUT)
    assert (direct.code(), direct.details()) == (error.code(), error.details())
    assert status["message"] == direct.details()


def test_client_deadline_gives_504_and_deadline_exceeded(gateway) -> None:
    # grpc-timeout 1m is one millisecond: shorter than the route timeout, so it wins
    reply = gateway.rest("/v1/classify:batch", {"documents": [{"id": str(i), "text": GOOD * 20} for i in range(200)], "model": "reviews"},
                         headers={"grpc-timeout": "1m"})  # fmt: skip
    assert reply.status == 504, (reply.status, reply.body[:300])
    assert reply.status_body()["code"] == DEADLINE_EXCEEDED
    error = grpc_error(classify_grpc, gateway, text=GOOD, model="reviews", timeout=0.001)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_deadline_that_passes_while_the_body_arrives_gives_504_and_deadline_exceeded(gateway) -> None:
    """A slow client: its grpc-timeout (100 ms) ends before its body has arrived, so the
    gateway never passes the call on (Envoy's stream duration limit, which says 408 by itself)."""
    # the answer comes before the rest of the body: the deadline passed meanwhile
    reply = gateway.rest_cut_short("/v1/classify", {"text": GOOD, "model": "reviews"}, sent=5, headers={"grpc-timeout": "100m"})
    assert reply.status == 504, (reply.status, reply.body[:300])
    assert reply.status_body() == {"code": DEADLINE_EXCEEDED, "message": DEADLINE_PASSED}


def test_route_timeout_gives_504_and_deadline_exceeded(private_gateway) -> None:
    """A private gateway whose unary route timeout (1 ms) is shorter than the call."""
    gateway = private_gateway(route_timeout_seconds=0.001)
    batch = {"documents": [{"id": str(i), "text": GOOD * 20} for i in range(200)], "model": "reviews"}
    reply = gateway.rest("/v1/classify:batch", batch)
    assert reply.status == 504, (reply.status, reply.body[:300])
    assert reply.status_body()["code"] == DEADLINE_EXCEEDED
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    request = pipeline_pb2.ClassifyBatchRequest(documents=[common_pb2.Document(**d) for d in batch["documents"]], model="reviews")
    error = grpc_error(stub.ClassifyBatch, request, metadata=gateway.metadata(), timeout=TIMEOUT)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (error.code(), error.details())


def test_upstream_down_gives_503_and_unavailable(private_gateway) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    gateway = private_gateway(upstreams={"pipeline": closed})
    reply = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"})
    assert reply.status == 503, (reply.status, reply.body[:300])
    status = reply.status_body()
    # which service is down, then Envoy's reason
    assert status["code"] == UNAVAILABLE, status
    assert status["message"].startswith("the pipeline service is unavailable: upstream connect error"), status
    error = grpc_error(classify_grpc, gateway, text=GOOD, model="reviews")
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    assert error.details() == status["message"]
    # the other services behind the same gateway still answer
    ok = gateway.rest("/v1/segmenter:segment", {"documents": [{"id": "a", "text": GOOD}]})
    assert ok.status == 200 and ok.json()["documents"][0]["tokens"], ok.body[:300]


def test_no_token_gives_401_and_unauthenticated(gateway) -> None:
    before = gateway.upstream_requests()
    reply = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=None)
    assert reply.status == 401 and reply.status_body()["code"] == UNAUTHENTICATED, reply.body
    error = grpc_error(classify_grpc, gateway, role=None, text=GOOD, model="reviews")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert gateway.upstream_requests() == before


def test_viewer_fitting_gives_403_and_permission_denied(gateway) -> None:
    before = gateway.upstream_requests("features")
    reply = gateway.rest("/v1/features:fit", [{"documents": [], "model": {"name": "x", "version": "v1"}}], token="viewer")
    assert reply.status == 403 and reply.status_body()["code"] == PERMISSION_DENIED, reply.body
    stub = features_pb2_grpc.FeaturesStub(gateway.channel())
    error = grpc_error(stub.Fit, iter([features_pb2.FitRequest()]), metadata=gateway.metadata("viewer"), timeout=TIMEOUT)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert gateway.upstream_requests("features") == before


# ---------------------------------------------------------------- refused by the gateway itself


REFUSED = {
    "malformed-json": ("/v1/classify", b'{"text": "a", "model":', 400, INVALID_ARGUMENT),
    "wrong-type": ("/v1/classify", '{"text": "姚明", "model": "reviews", "topK": "x"}'.encode(), 400, INVALID_ARGUMENT),
    "invalid-utf8": ("/v1/classify", b'{"text": "\xff\xfe\xe4\xb8", "model": "reviews"}', 400, INVALID_ARGUMENT),
    # 2 MB of valid JSON: over the gateway's 1 MiB max_request_bytes
    "too-large": (
        "/v1/classify",
        json.dumps({"text": "中" * 700_000, "model": "reviews"}, ensure_ascii=False).encode(),
        413,
        RESOURCE_EXHAUSTED,
    ),
    "too-large-batch": (
        "/v1/classify:batch",
        json.dumps(
            {"documents": [{"id": str(i), "text": GOOD * 20} for i in range(3500)], "model": "reviews"}, ensure_ascii=False
        ).encode(),
        413,
        RESOURCE_EXHAUSTED,
    ),
    "unknown-path": ("/v1/nothing-here", b"{}", 404, NOT_FOUND),
    "unknown-query-parameter": ("/v1/classify?colour=red", '{"text": "姚明", "model": "reviews"}'.encode(), 400, INVALID_ARGUMENT),
}


@pytest.mark.parametrize("row", sorted(REFUSED))
def test_refused_before_any_service(mesh, gateway, row) -> None:
    path, body, http_status, code = REFUSED[row]
    if http_status == 413:
        assert len(body) > 2_000_000
    clusters = ("pipeline", "segmenter", "preprocessor", "features", "classifier")
    before = {cluster: gateway.upstream_requests(cluster) for cluster in clusters}
    log_before = mesh.log("pipeline").stat().st_size
    reply = gateway.rest(path, raw=body)
    assert reply.status == http_status, (reply.status, reply.body[:300])
    assert reply.status_body()["code"] == code
    assert {cluster: gateway.upstream_requests(cluster) for cluster in clusters} == before, "a service was called"
    assert mesh.log("pipeline").stat().st_size == log_before
    # and the gateway still serves
    assert gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}).status == 200


# Envoy's own replies to a caller that names no content-type (curl without -H, a form post).
OWN_REPLIES = {
    "no-token": ("/v1/classify", b'{"text": "a"}', None, 401, UNAUTHENTICATED),
    "malformed-json": ("/v1/classify", b'{"text": "a", "model":', "viewer", 400, INVALID_ARGUMENT),
    "unknown-path": ("/v1/nothing-here", b"{}", "viewer", 404, NOT_FOUND),
}


@pytest.mark.parametrize("row", sorted(OWN_REPLIES))
@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded"], ids=["none", "form"])
def test_envoys_own_replies_are_json_status_whatever_the_content_type(gateway, row, content_type) -> None:
    path, body, token, http_status, code = OWN_REPLIES[row]
    reply = gateway.rest(path, raw=body, token=token, headers={"content-type": content_type})
    assert reply.status == http_status, (reply.status, reply.body[:300])
    assert reply.status_body()["code"] == code


@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "none"])
def test_a_parse_error_says_what_is_wrong_in_whole_characters(gateway, content_type) -> None:
    """The transcoder's message quotes the body around the error, cut at a byte count: here
    inside a character (its bytes came back one by one as Latin-1, or as bytes that are not
    UTF-8 at all). The gateway says what is wrong in words of its own instead."""
    text = "中文" * 32
    reply = gateway.rest("/v1/classify", raw=f'{{"text": "{text}", "model": 1x}}'.encode(), headers={"content-type": content_type})
    assert reply.status == 400, (reply.status, reply.body[:300])
    assert reply.text()  # the body is UTF-8
    message = reply.status_body()["message"]
    assert "not a valid fenlei.v1.ClassifyRequest" in message, message
    assert not {c for c in message if not c.isascii() and c not in text}, message


# ---------------------------------------------------------------- messages survive byte-exact


ECHOED = {
    "unknown-label": ({"text": GOOD, "model": "reviews", "labels": ["体育🏀", "财经💰"]}, 404, grpc.StatusCode.NOT_FOUND, "体育🏀"),
    "bad-model-name": ({"text": GOOD, "model": "新闻😀"}, 400, grpc.StatusCode.INVALID_ARGUMENT, "新闻😀"),
}


@pytest.mark.parametrize("row", sorted(ECHOED))
def test_chinese_and_emoji_in_an_error_message_survive(mesh, gateway, row) -> None:
    fields, http_status, grpc_code, echoed = ECHOED[row]
    direct = grpc_error(mesh.pipeline.Classify, pipeline_pb2.ClassifyRequest(**fields), timeout=TIMEOUT)
    assert direct.code() == grpc_code and echoed in direct.details(), direct.details()
    through = grpc_error(classify_grpc, gateway, **fields)
    assert through.code() == grpc_code
    assert through.details().encode("utf-8") == direct.details().encode("utf-8")
    reply = gateway.rest("/v1/classify", fields)
    assert reply.status == http_status
    assert reply.status_body()["message"].encode("utf-8") == direct.details().encode("utf-8")


def read_chunked_with_trailers(address: str, path: str, body: bytes, token: str) -> tuple[int, list[bytes], dict[str, str]]:
    """A raw HTTP/1.1 exchange (http.client hides trailers): status, chunks, trailers."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        head = (f"POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nTE: trailers\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
        connection.sendall(head + body)
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    header_block, _, rest = raw.partition(b"\r\n\r\n")
    status = int(header_block.split(b" ", 2)[1])
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    trailers = dict(line.decode().split(": ", 1) for line in rest.split(b"\r\n") if b": " in line)
    return status, chunks, trailers


def test_a_rest_stream_that_fails_after_its_first_answer_says_so_in_its_trailers(gateway) -> None:
    """HTTP 200 has gone out with the first line; the failure of message 1 arrives as the
    grpc-status / grpc-message trailers of the chunked body."""
    messages = [
        {"documents": [{"id": "a", "text": "姚明率领火箭队击败湖人"}], "model": "reviews", "topK": 1},
        {"documents": [{"id": "b", "text": "   "}], "model": "reviews"},
    ]
    status, chunks, trailers = read_chunked_with_trailers(
        gateway.address, "/v1/classify:stream", json.dumps(messages, ensure_ascii=False).encode(), gateway.token()
    )
    assert status == 200
    lines = [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line.strip()]
    assert [p["id"] for line in lines for p in line["predictions"]] == ["a"]
    assert trailers.get("grpc-status") == "3", trailers
    assert "stream message 1" in trailers["grpc-message"] and "'b'" in trailers["grpc-message"], trailers
