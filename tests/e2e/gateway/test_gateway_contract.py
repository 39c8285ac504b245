"""Every RPC the contract maps to REST (google.api.http), called three ways — REST through
the gateway, gRPC through the gateway, gRPC straight to the service — gives one answer.

The RPCs are found by walking the generated descriptors, not the gateway's own list, so a
new annotated RPC without a sample here fails the test rather than going untested."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pytest
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory

from fenlei.runtime.models import ModelStore
from fenlei.v1 import classifier_pb2, features_pb2, pipeline_pb2, preprocessor_pb2, segmenter_pb2

STAGE_OF = {
    "Segmenter": "segmenter",
    "Preprocessor": "preprocessor",
    "Features": "features",
    "Classifier": "classifier",
    "Pipeline": "pipeline",
}
TEXT = "姚明率领火箭队击败湖人"
SESSION_MODEL = {"name": "reviews", "version": "v1"}
FIT = {"name": "{fit}", "version": "{draft}"}  # replaced by a fresh model and its draft per call path
VECTORS = [{"id": "v1", "indices": [0, 3, 7], "values": [0.5, 0.25, 0.8]}, {"id": "v2", "indices": [1, 2], "values": [0.6, 0.3]}]

# Request messages per RPC, proto3 JSON; a list for a streaming request.
SAMPLES: dict[str, Any] = {
    "/fenlei.v1.Segmenter/Segment": {"documents": [{"id": "a", "text": TEXT}, {"id": "b", "text": "我来到北京清华大学"}]},
    "/fenlei.v1.Segmenter/SegmentStream": [
        {"documents": [{"id": "a", "text": TEXT}]},
        {"documents": [{"id": "b", "text": "股市大涨"}], "options": {"mode": "SEGMENT_MODE_SEARCH"}},
    ],
    "/fenlei.v1.Preprocessor/Preprocess": {
        "documents": [{"id": "p", "tokens": ["北京", "的", "大学", "！", "ABC"]}],
        "model": SESSION_MODEL,
    },
    "/fenlei.v1.Preprocessor/PreprocessStream": [
        {"documents": [{"id": "p", "tokens": ["北京", "的", "大学"]}], "model": SESSION_MODEL},
        {"documents": [{"id": "q", "tokens": ["火箭队", "击败", "湖人"]}], "model": SESSION_MODEL},
    ],
    "/fenlei.v1.Features/Fit": [
        {"documents": [{"document": {"id": "1", "tokens": ["篮球", "比赛", "火箭"]}, "label": "sports"}], "model": FIT},
        {"documents": [{"document": {"id": "2", "tokens": ["股市", "上涨", "基金"]}, "label": "stocks"}]},
    ],
    "/fenlei.v1.Features/Transform": {"documents": [{"id": "t", "tokens": ["姚明", "火箭", "湖人", "股市"]}], "model": SESSION_MODEL},
    "/fenlei.v1.Features/TransformStream": [
        {"documents": [{"id": "t", "tokens": ["姚明", "火箭"]}], "model": SESSION_MODEL},
        {"documents": [{"id": "u", "tokens": ["股市", "基金"]}], "model": SESSION_MODEL},
    ],
    "/fenlei.v1.Features/DescribeFeatures": {"indices": [0, 1, 2, 5], "model": SESSION_MODEL},
    "/fenlei.v1.Classifier/Fit": [
        {"examples": [{"vector": VECTORS[0], "label": "sports"}], "labels": ["sports", "stocks"], "dimension": 8, "model": FIT},
        {"examples": [{"vector": VECTORS[1], "label": "stocks"}]},
    ],
    "/fenlei.v1.Classifier/Predict": {"vectors": VECTORS, "model": SESSION_MODEL, "options": {"topK": 3, "explain": 2}},
    "/fenlei.v1.Classifier/PredictStream": [
        {"vectors": VECTORS[:1], "model": SESSION_MODEL, "options": {"topK": 2}},
        {"vectors": VECTORS[1:], "model": SESSION_MODEL},
    ],
    "/fenlei.v1.Pipeline/Classify": {"text": TEXT, "model": "reviews", "topK": 3, "explain": 2},
    "/fenlei.v1.Pipeline/ClassifyBatch": {
        "documents": [{"id": "a", "text": TEXT}, {"id": "b", "text": "央行宣布降息"}],
        "model": "reviews",
        "topK": 2,
    },
    "/fenlei.v1.Pipeline/ClassifyStream": [
        {"documents": [{"id": "a", "text": TEXT}], "model": "reviews", "topK": 1},
        {"documents": [{"id": "b", "text": "新款手机发布"}, {"id": "c", "text": "高考改革方案"}], "model": "reviews", "explain": 1},
    ],
}


def annotated_methods() -> dict[str, Any]:
    found = {}
    for module in (segmenter_pb2, preprocessor_pb2, features_pb2, classifier_pb2, pipeline_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.GetOptions().HasExtension(annotations_pb2.http):
                    found[f"/{service.full_name}/{method.name}"] = method
    return found


METHODS = annotated_methods()


def test_every_annotated_rpc_has_a_sample() -> None:
    assert len(METHODS) == 14
    assert sorted(METHODS) == sorted(SAMPLES)


def to_dict(message: Any) -> dict[str, Any]:
    """The transcoder's print options: primitive fields always printed, lowerCamelCase."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def same(rest: Any, grpc_side: Any, where: str = "") -> None:
    """Equal JSON values, floats compared as the float32 they came from (Envoy prints
    nine significant digits, Python the shortest round-trip form: both are exact)."""
    if isinstance(grpc_side, dict):
        assert isinstance(rest, dict) and sorted(rest) == sorted(grpc_side), f"{where}: {rest!r} != {grpc_side!r}"
        for key in grpc_side:
            same(rest[key], grpc_side[key], f"{where}.{key}")
    elif isinstance(grpc_side, list):
        assert isinstance(rest, list) and len(rest) == len(grpc_side), f"{where}: {rest!r} != {grpc_side!r}"
        for i, (a, b) in enumerate(zip(rest, grpc_side)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(grpc_side, float) and not isinstance(grpc_side, bool):
        assert isinstance(rest, (int, float)) and np.float32(rest) == np.float32(grpc_side), f"{where}: {rest!r} != {grpc_side!r}"
    else:
        assert type(rest) is type(grpc_side) and rest == grpc_side, f"{where}: {rest!r} != {grpc_side!r}"


def fill(sample: Any, model: dict[str, str]) -> Any:
    if isinstance(sample, dict):
        return {k: fill(v, model) for k, v in sample.items()}
    if isinstance(sample, list):
        return [fill(v, model) for v in sample]
    return model.get(sample, sample) if isinstance(sample, str) else sample


def unname(answer: Any, model: dict[str, str]) -> Any:
    """A Fit answer names its model; three paths fit three drafts of models under fresh names."""
    if isinstance(answer, dict):
        return {k: unname(v, model) for k, v in answer.items()}
    if isinstance(answer, list):
        return [unname(v, model) for v in answer]
    placeholders = {value: placeholder for placeholder, value in model.items()}
    return placeholders.get(answer, answer) if isinstance(answer, str) else answer


def without_request_id(answer: Any) -> Any:
    """A Pipeline answer without its request id: every answer has one of its own."""
    if isinstance(answer, list):
        return [without_request_id(item) for item in answer]
    assert answer.get("requestId"), answer
    return {key: value for key, value in answer.items() if key != "requestId"}


def call_grpc(channel, method, sample: Any, metadata) -> Any:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    shape = {(False, False): channel.unary_unary, (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    rpc = shape[(method.client_streaming, method.server_streaming)](
        path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_class.FromString
    )
    if method.client_streaming:
        request: Any = iter([json_format.ParseDict(item, request_class()) for item in sample])
    else:
        request = json_format.ParseDict(sample, request_class())
    answer = rpc(request, metadata=metadata, timeout=60)
    return [to_dict(item) for item in answer] if method.server_streaming else to_dict(answer)


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_rest_and_grpc_through_the_gateway_answer_what_the_service_answers(mesh, gateway, path) -> None:
    method = METHODS[path]
    role = "trainer" if method.name == "Fit" else "viewer"
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    assert verb == "post" and rule.body == "*", rule
    models = {}
    if method.name == "Fit":
        store = ModelStore(mesh.home)
        for way in ("direct", "grpc", "rest"):
            name = f"gw-{way}-{secrets.token_hex(4)}"
            models[way] = {"{fit}": name, "{draft}": store.create_draft(name).id}  # the draft stays leased to this process
    sample = {way: fill(SAMPLES[path], models.get(way, {})) for way in ("direct", "grpc", "rest")}

    direct = call_grpc(mesh.channel(STAGE_OF[method.containing_service.name]), method, sample["direct"], None)
    through = call_grpc(gateway.channel(), method, sample["grpc"], gateway.metadata(role))
    reply = gateway.rest(getattr(rule, verb), sample["rest"], token=role)
    assert reply.status == 200, (reply.status, reply.body[:500])
    assert reply.headers["content-type"].startswith("application/json")
    rest = reply.lines() if method.server_streaming else reply.json()

    if method.name == "Fit":
        direct, through, rest = unname(direct, models["direct"]), unname(through, models["grpc"]), unname(rest, models["rest"])
    if method.containing_service.name == "Pipeline":
        direct, through, rest = without_request_id(direct), without_request_id(through), without_request_id(rest)
    if method.server_streaming:
        assert len(direct) == len(SAMPLES[path]) and all(direct)  # one answer per request
        assert reply.body.count(b"\n") >= len(direct) - 1 and not reply.body.lstrip().startswith(b"[")  # newline-delimited
    assert through == direct  # the same messages over gRPC, byte for byte after decoding
    same(rest, direct, path)
    # nothing is empty by accident: the samples exercise real answers
    assert any(v not in ([], "", 0, {}) for v in (direct[0] if isinstance(direct, list) else direct).values()), direct
