"""JWT at the gateway, over REST and over gRPC: what each kind of token gets."""

from __future__ import annotations

import time

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fenlei.v1 import features_pb2, features_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc

GOOD = "姚明率领火箭队击败湖人"


def bad_tokens(gateway) -> dict[str, str | None]:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hour_ago = int(time.time()) - 3600  # well past Envoy's 60 s clock skew allowance
    return {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": gateway.craft(iat=hour_ago - 600, exp=hour_ago),
        "no-expiry": gateway.craft(exp=None),  # would be good forever
        "wrong-audience": gateway.craft(aud="someone-else"),
        "wrong-issuer": gateway.craft(iss="another-issuer"),
        "wrong-signature": gateway.craft(key=stranger),
    }


# Envoy's jwt_authn answers a token for another audience with 403: the token is genuine,
# just not for this gateway (RELIABILITY.md: "wrong audience → 401/403").
REFUSAL = {"wrong-audience": (403, 7, grpc.StatusCode.PERMISSION_DENIED)}


@pytest.mark.parametrize("case", ["missing", "garbage", "expired", "no-expiry", "wrong-audience", "wrong-issuer", "wrong-signature"])
def test_bad_tokens_are_refused_before_any_service(gateway, case) -> None:
    token = bad_tokens(gateway)[case]
    status, code, grpc_code = REFUSAL.get(case, (401, 16, grpc.StatusCode.UNAUTHENTICATED))
    before = gateway.upstream_requests()
    reply = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=token)
    assert reply.status == status, (reply.status, reply.body)
    assert reply.status_body()["code"] == code
    assert "www-authenticate" in reply.headers
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    metadata = [] if token is None else [("authorization", f"Bearer {token}")]
    with pytest.raises(grpc.RpcError) as failure:
        stub.Classify(pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews"), metadata=metadata, timeout=30)
    assert failure.value.code() == grpc_code, failure.value.details()
    assert gateway.upstream_requests() == before


def test_a_token_in_the_url_is_refused(gateway) -> None:
    """`?access_token=` would put the token in every log that records URLs."""
    before = gateway.upstream_requests()
    reply = gateway.rest(f"/v1/classify?access_token={gateway.token()}", {"text": GOOD, "model": "reviews"}, token=None)
    assert reply.status == 401 and reply.status_body()["code"] == 16, reply.body
    assert gateway.upstream_requests() == before


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(gateway, scheme) -> None:
    """RFC 6750 (after RFC 7235): the auth scheme is a case-insensitive token."""
    authorization = f"{scheme} {gateway.token()}"
    fields = {"text": GOOD, "model": "reviews", "topK": 1}
    reply = gateway.rest("/v1/classify", fields, token=None, headers={"authorization": authorization})
    assert reply.status == 200, reply.body
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    request = pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews", top_k=1)
    answer = stub.Classify(request, metadata=[("authorization", authorization)], timeout=30)
    assert len(answer.labels) == 1


def test_a_minted_token_that_expired_is_refused(gateway) -> None:
    """mint() itself with a past expiry is refused; a token crafted like mint's but expired
    an hour ago is refused by Envoy (a few seconds ago would still pass: 60 s skew)."""
    expired = gateway.craft(role="trainer", exp=int(time.time()) - 3600)
    assert gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=expired).status == 401


def test_token_without_a_role_gets_403(gateway) -> None:
    reply = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=gateway.craft(role=None))
    assert reply.status == 403 and reply.status_body()["code"] == 7, reply.body
    reply = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews"}, token=gateway.craft(role="superuser"))
    assert reply.status == 403, reply.body


def test_viewer_may_classify_but_not_fit(gateway) -> None:
    ok = gateway.rest("/v1/classify", {"text": GOOD, "model": "reviews", "topK": 1}, token="viewer")
    assert ok.status == 200 and ok.json()["labels"][0]["label"] == "news", ok.body
    stub = pipeline_pb2_grpc.PipelineStub(gateway.channel())
    request = pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews", top_k=1)
    answer = stub.Classify(request, metadata=gateway.metadata("viewer"), timeout=30)
    assert answer.labels[0].label == "news"
    for path in ("/v1/features:fit", "/v1/classifier:fit"):
        denied = gateway.rest(path, [{}], token="viewer")
        assert denied.status == 403 and denied.status_body() == {"code": 7, "message": "RBAC: access denied"}, denied.body
    with pytest.raises(grpc.RpcError) as failure:
        features_pb2_grpc.FeaturesStub(gateway.channel()).Fit(
            iter([features_pb2.FitRequest()]), metadata=gateway.metadata("viewer"), timeout=30
        )
    assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("role", ["trainer", "admin"])
def test_trainer_and_above_may_fit(gateway, role) -> None:
    """Past the gateway: the features service itself answers (an empty stream is its
    INVALID_ARGUMENT, not the gateway's 403)."""
    before = gateway.upstream_requests("features")
    reply = gateway.rest("/v1/features:fit", [], token=role)
    assert reply.status == 400, reply.body
    assert "fit stream was empty" in reply.status_body()["message"]
    with pytest.raises(grpc.RpcError) as failure:
        features_pb2_grpc.FeaturesStub(gateway.channel()).Fit(iter([]), metadata=gateway.metadata(role), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "fit stream was empty" in failure.value.details()
    assert gateway.upstream_requests("features") == before + 2


def test_health_and_openapi_need_no_token(gateway) -> None:
    health = gateway.rest("/healthz", token=None, method="GET")
    assert health.status == 200 and health.json() == {"status": "SERVING"}
    document = gateway.rest("/openapi.json", token=None, method="GET")
    assert document.status == 200 and document.headers["content-type"] == "application/json"
    assert "/v1/classify" in document.json()["paths"]
