"""The real grpcurl binary through the gateway: list, describe and invoke with a token,
reflection served by the catalog behind it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
PUBLIC = [
    "fenlei.v1.Classifier", "fenlei.v1.Datasets", "fenlei.v1.Experiments", "fenlei.v1.Features", "fenlei.v1.Jobs",
    "fenlei.v1.LiveConfig", "fenlei.v1.ModelRegistry", "fenlei.v1.Pipeline", "fenlei.v1.Preprocessor", "fenlei.v1.Segmenter",
    "fenlei.v1.Telemetry",
]  # fmt: skip


def grpcurl(gateway, *args: str, token: str | None = "viewer", data: object | None = None) -> subprocess.CompletedProcess[str]:
    command = [GRPCURL, "-plaintext", "-max-time", "30"]
    if token:
        command += ["-H", f"authorization: Bearer {gateway.token(token)}"]
    if data is not None:
        command += ["-d", json.dumps(data, ensure_ascii=False)]
    return subprocess.run([*command, gateway.address, *args], capture_output=True, text=True, timeout=60)


def test_list_shows_the_public_services_only(gateway) -> None:
    listed = grpcurl(gateway, "list")
    assert listed.returncode == 0, listed.stderr
    # Not fenlei.v1.ExperimentRouting nor DatasetPins: mesh-internal.
    assert sorted(name for name in listed.stdout.split() if name.startswith("fenlei.")) == PUBLIC
    methods = grpcurl(gateway, "list", "fenlei.v1.Pipeline")
    assert methods.returncode == 0 and methods.stdout.split() == [
        "fenlei.v1.Pipeline.Classify", "fenlei.v1.Pipeline.ClassifyBatch", "fenlei.v1.Pipeline.ClassifyStream"
    ], methods.stdout + methods.stderr  # fmt: skip


def test_reflection_is_open_but_calls_need_a_token(gateway) -> None:
    """Like /openapi.json, the API's description needs no token; a call does."""
    listed = grpcurl(gateway, "list", token=None)
    assert listed.returncode == 0 and "fenlei.v1.Pipeline" in listed.stdout.split(), listed.stdout + listed.stderr
    described = grpcurl(gateway, "describe", "fenlei.v1.Pipeline", token=None)
    assert described.returncode == 0, described.stderr
    refused = grpcurl(gateway, "fenlei.v1.Pipeline/Classify", data={"text": "北京", "model": "reviews"}, token=None)
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr, refused.stdout + refused.stderr


def test_describe_and_invoke_classify(gateway) -> None:
    described = grpcurl(gateway, "describe", "fenlei.v1.Pipeline.Classify")  # a method's full name
    assert described.returncode == 0, described.stderr
    assert "fenlei.v1.Pipeline.Classify is a method" in described.stdout
    assert "rpc Classify ( .fenlei.v1.ClassifyRequest ) returns ( .fenlei.v1.ClassifyResponse )" in described.stdout
    assert 'post:"/v1/classify"' in described.stdout
    message = grpcurl(gateway, "describe", "fenlei.v1.ClassifyRequest")
    assert message.returncode == 0 and "uint32 top_k = 3;" in message.stdout, message.stdout + message.stderr

    invoked = grpcurl(gateway, "fenlei.v1.Pipeline/Classify", data={"text": "姚明率领火箭队击败湖人", "model": "reviews", "top_k": 2})
    assert invoked.returncode == 0, invoked.stderr
    answer = json.loads(invoked.stdout)
    assert answer["model"] == "reviews" and answer["version"] == "v1"
    assert [score["label"] for score in answer["labels"]][:1] == ["news"] and len(answer["labels"]) == 2
    # what the REST side says for the same call
    rest = gateway.rest("/v1/classify", {"text": "姚明率领火箭队击败湖人", "model": "reviews", "topK": 2}).json()
    assert [s["label"] for s in rest["labels"]] == [s["label"] for s in answer["labels"]]

    unknown = grpcurl(gateway, "fenlei.v1.Pipeline/Classify", data={"text": "姚明", "model": "nope"})
    assert unknown.returncode == 64 + 5 and "nope" in unknown.stdout + unknown.stderr  # NOT_FOUND
    denied = grpcurl(gateway, "fenlei.v1.Features/Fit", data={})
    assert denied.returncode == 64 + 7, denied.stdout + denied.stderr  # PERMISSION_DENIED
