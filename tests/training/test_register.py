"""training.register: the lineage, metrics and report dicts of training.core as the contract's
RegisterVersionRequest, sent with the caller's metadata; refusals come back as gRPC errors."""

import asyncio

import grpc
import pytest
from google.protobuf import json_format

from fenlei.training.core import RegisteredVersion, Report
from fenlei.training.register import GrpcRegistry
from fenlei.v1 import registry_pb2, registry_pb2_grpc

LINEAGE = {
    "dataset_sha256": "a" * 64,
    "dataset_documents": 6,
    "dataset_source": "/data/reviews.txt",
    "test_dataset_sha256": "",
    "config": {"segmenter": {"mode": "accurate", "user_words": ["云计算"]}, "features": {}, "training": {"seed": 7, "test_fraction": 0.2}},
    "dictionary_sha256": "b" * 64,
    "stopwords_sha256": "c" * 64,
    "code_version": "0.1.0+git.abc",
}
TRAINING = {
    "accuracy": 0.5,
    "macro_f1": 0.4,
    "weighted_f1": 0.45,
    "classes": [{"label": "好", "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}],
    "labels": ["好", "差"],
    "confusion": [{"counts": [1, 0]}, {"counts": [1, 0]}],
    "informative_features": [{"label": "好", "features": [{"feature": "好看", "weight": 1.25}]}],
    "misclassified": [{"text": "不好", "label": "差", "predicted": "好", "score": 0.3}],
    "phase_seconds": {"segmenting": 0.5, "fitting features": 0.25},
    "statistics": {"documents": 6, "train_documents": 4, "test_documents": 2, "tokens": 9, "vocabulary": 5, "test_oov_share": 0.5},
    "config": {"segmenter": {"mode": "SEGMENT_MODE_ACCURATE"}, "features": {"top_k": 100}},
    "evaluation": "held-out 20%",
    "trials": [],
}
REPORT = Report("reviews", "", 3, 1.5, [], TRAINING)


class Recorder(registry_pb2_grpc.ModelRegistryServicer):
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.requests: list[tuple[registry_pb2.RegisterVersionRequest, dict[str, str]]] = []

    async def RegisterVersion(self, request, context):
        self.requests.append((request, dict(context.invocation_metadata())))
        if self.refuse:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no draft-x of model 'reviews'")
        return registry_pb2.RegisterVersionResponse(
            version=registry_pb2.ModelVersion(name=request.name, version="v4", created_by="alice", digest="d" * 64)
        )


async def register(recorder: Recorder) -> RegisteredVersion:
    server = grpc.aio.server()
    registry_pb2_grpc.add_ModelRegistryServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            registry = GrpcRegistry(channel, [("x-fenlei-subject", "alice")])
            return await registry.register("reviews", "draft-x", LINEAGE, REPORT.metrics(), ["好", "差"], {"team": "search"}, TRAINING)
    finally:
        await server.stop(None)


def test_register_sends_lineage_metrics_labels_tags_and_the_subject() -> None:
    recorder = Recorder(refuse=False)
    assert asyncio.run(register(recorder)) == RegisteredVersion("v4", "alice", "d" * 64)
    [(request, metadata)] = recorder.requests
    assert (request.name, request.draft, list(request.labels), dict(request.tags)) == (
        "reviews",
        "draft-x",
        ["好", "差"],
        {"team": "search"},
    )
    assert metadata["x-fenlei-subject"] == "alice"
    lineage = json_format.MessageToDict(request.lineage, preserving_proto_field_name=True)
    config = lineage.pop("config")
    assert lineage == {key: value for key, value in LINEAGE.items() if key != "config" and value} | {"dataset_documents": "6"}
    assert config == LINEAGE["config"]  # the Struct holds every stage's configuration as given
    assert request.metrics.accuracy == 0.5 and request.metrics.macro_f1 == 0.4
    assert (request.metrics.train_documents, request.metrics.test_documents, request.metrics.dimension) == (4, 2, 3)
    assert request.metrics.train_seconds == 1.5
    per_class = request.metrics.per_class["好"]
    assert (per_class.precision, per_class.recall, per_class.f1, per_class.support) == (0.5, 1.0, pytest.approx(2 / 3), 1)
    # the whole report travels with it, as the contract's TrainingReport
    report = request.report
    assert (report.weighted_f1, list(report.labels), [list(row.counts) for row in report.confusion]) == (
        0.45,
        ["好", "差"],
        [[1, 0], [1, 0]],
    )
    assert (report.informative_features[0].features[0].feature, report.misclassified[0].predicted) == ("好看", "好")
    assert (dict(report.phase_seconds), report.statistics.test_oov_share, report.evaluation) == (
        TRAINING["phase_seconds"],
        0.5,
        "held-out 20%",
    )
    assert report.config.features.top_k == 100 and report.config.segmenter.mode == 1


def test_a_refusal_is_the_registrys_status() -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(register(Recorder(refuse=True)))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "draft-x" in refused.value.details()
