"""The pipeline servicer in-process, in front of the four stage servicers (also
in-process), with settings an e2e mesh does not use: tiny stage batches, a small stream
window and a default model. A toy model is trained through the same stage servers."""

from __future__ import annotations

import shutil

import grpc
import pytest

from fenlei.classifier import servicer as classifier_servicer
from fenlei.features import servicer as features_servicer
from fenlei.pipeline import servicer as pipeline_servicer
from fenlei.preprocessor import servicer as preprocessor_servicer
from fenlei.runtime.models import MANIFEST_FILE, ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter import servicer as segmenter_servicer
from fenlei.training.core import Corpus, TrainingSpec, train
from fenlei.training.stages import GrpcStages
from fenlei.v1 import common_pb2, features_pb2, features_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc

SPORTS = ["足球", "篮球", "比赛", "进球", "冠军", "球员", "联赛", "教练"]
FINANCE = ["股票", "基金", "市场", "上涨", "下跌", "投资", "银行", "利率"]
TEXTS = ["足球联赛冠军", "股票市场下跌", "篮球教练进球", "银行利率上涨", "基金投资市场"]
TRUTH = ["sports", "finance", "sports", "finance", "finance"]


def corpus(swap: bool = False) -> Corpus:
    texts, labels = [], []
    for words, label in ((SPORTS, "sports"), (FINANCE, "finance")):
        for i in range(16):
            texts.append(words[i % 8] + words[(i + 3) % 8] + words[(i + 5) % 8])
            labels.append(("finance" if label == "sports" else "sports") if swap else label)
    return Corpus(texts, labels)


class InProcessMesh:
    def __init__(self, servers, helpers, home) -> None:
        self.servers, self.helpers, self.home = servers, helpers, home
        stages = {
            name: servers.start(name, module.register, helpers.settings_for(home))
            for name, module in (
                ("segmenter", segmenter_servicer),
                ("preprocessor", preprocessor_servicer),
                ("features", features_servicer),
                ("classifier", classifier_servicer),
            )
        }
        self.addresses = {name: stages[name].address for name in ("segmenter", "preprocessor", "features", "classifier")}
        self.features = features_pb2_grpc.FeaturesStub(stages["features"].channel)

    def pipeline(self, **settings) -> pipeline_pb2_grpc.PipelineStub:
        fields = dict(
            segmenter_address=self.addresses["segmenter"],
            preprocessor_address=self.addresses["preprocessor"],
            features_address=self.addresses["features"],
            classifier_address=self.addresses["classifier"],
            stage_batch_documents=3,
            stream_window=2,
        )
        fields.update(settings)
        served = self.servers.start(
            "pipeline", pipeline_servicer.register, self.helpers.settings_for(self.home, pipeline_servicer.PipelineSettings, **fields)
        )
        return pipeline_pb2_grpc.PipelineStub(served.channel)

    def train(self, name: str, swap: bool = False):
        async def run():
            streams = StageStreams(self.addresses)
            try:
                return await train(ModelStore(self.home), TrainingSpec(name=name), GrpcStages(streams), corpus(swap), corpus(swap))
            finally:
                await streams.close()

        return self.servers.loop.run(run())


@pytest.fixture(scope="module")
def inproc(module_servers, helpers, tmp_path_factory) -> InProcessMesh:
    inproc = InProcessMesh(module_servers, helpers, tmp_path_factory.mktemp("pipeline-home"))
    report = inproc.train("toy")
    assert (report.version, report.accuracy) == ("v1", 1.0)
    return inproc


@pytest.fixture(scope="module")
def pipeline(inproc) -> pipeline_pb2_grpc.PipelineStub:
    return inproc.pipeline(default_model="toy")


def test_default_model_answers_when_none_is_named(pipeline, helpers) -> None:
    for text, truth in zip(TEXTS, TRUTH):
        answer = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text), timeout=helpers.TIMEOUT)
        assert (answer.model, answer.version) == ("toy", "v1")
        assert answer.labels[0].label == truth, (text, answer)
        assert sorted(s.label for s in answer.labels) == ["finance", "sports"]


def test_without_a_default_model_a_name_is_required(inproc, helpers) -> None:
    pipeline = inproc.pipeline()
    error = helpers.rpc_error(pipeline.Classify, pipeline_pb2.ClassifyRequest(text=TEXTS[0]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "name a model" in error.details(), error.details()
    assert pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="toy"), timeout=helpers.TIMEOUT).labels


def test_batches_are_split_into_stage_batches_and_reassembled_in_order(pipeline, helpers) -> None:
    texts = (TEXTS * 4)[:17]  # six stage batches of three, the last one short
    docs = [common_pb2.Document(id=f"id-{16 - i:02d}", text=t) for i, t in enumerate(texts)]
    answer = pipeline.ClassifyBatch(pipeline_pb2.ClassifyBatchRequest(documents=docs, top_k=1), timeout=helpers.TIMEOUT)
    assert [p.id for p in answer.predictions] == [d.id for d in docs]
    singles = {t: pipeline.Classify(pipeline_pb2.ClassifyRequest(text=t), timeout=helpers.TIMEOUT) for t in TEXTS}
    for doc, prediction in zip(docs, answer.predictions):
        assert prediction.labels[0].label == singles[doc.text].labels[0].label
        assert prediction.labels[0].score == pytest.approx(singles[doc.text].labels[0].score, abs=1e-6)


def test_stream_keeps_order_beyond_its_window(pipeline, helpers) -> None:
    requests = [
        pipeline_pb2.ClassifyStreamRequest(
            documents=[common_pb2.Document(id=f"m{n}-{i}", text=TEXTS[(n + i) % 5]) for i in range(n % 4 * 3)], top_k=1
        )
        for n in range(9)
    ]
    answers = list(pipeline.ClassifyStream(iter(requests), timeout=helpers.TIMEOUT))
    assert [[p.id for p in a.predictions] for a in answers] == [[d.id for d in r.documents] for r in requests]
    for request, answer in zip(requests, answers):
        for doc, prediction in zip(request.documents, answer.predictions):
            assert prediction.labels[0].label == TRUTH[TEXTS.index(doc.text)]


def test_explanations_are_named_by_the_features_stage(pipeline, inproc, helpers) -> None:
    answer = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], explain=3), timeout=helpers.TIMEOUT)
    assert 1 <= len(answer.explanation) <= 3
    names = inproc.features.DescribeFeatures(
        features_pb2.DescribeFeaturesRequest(
            indices=[c.feature_index for c in answer.explanation], model=common_pb2.ModelRef(name="toy", version="v1")
        ),
        timeout=helpers.TIMEOUT,
    ).names
    assert [c.feature for c in answer.explanation] == list(names) and all(names)
    assert all(c.label == answer.labels[0].label for c in answer.explanation)


def test_stream_error_names_the_callers_message_and_document(inproc, helpers) -> None:
    pipeline = inproc.pipeline(default_model="toy")  # a pipeline of its own: the failing stream is aborted mid-way
    requests = [
        pipeline_pb2.ClassifyStreamRequest(documents=[common_pb2.Document(id=f"m{n}-{i}", text=TEXTS[i % 5]) for i in range(4)])
        for n in range(5)
    ]
    requests[3].documents[2].text = "   "
    answers, error = helpers.stream_error(pipeline.ClassifyStream, requests)
    assert [[p.id for p in a.predictions] for a in answers] == [[d.id for d in r.documents] for r in requests[:3]]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stream message 3" in error.details() and "'m3-2'" in error.details(), error.details()
    # the aborted stream's cancelled work must not wedge the pipeline's shared stage streams
    # (10 s is a hang guard: the call takes milliseconds)
    for text, truth in zip(TEXTS, TRUTH):
        answer = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text), timeout=10)
        assert answer.labels[0].label == truth


def test_limits_apply_before_the_stages(pipeline, helpers) -> None:
    error = helpers.rpc_error(
        pipeline.ClassifyBatch,
        pipeline_pb2.ClassifyBatchRequest(documents=[common_pb2.Document(id=str(i), text="足球") for i in range(65)]),
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "65" in error.details()
    error = helpers.rpc_error(pipeline.Classify, pipeline_pb2.ClassifyRequest(text="足" * 2_001))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "2,001" in error.details()


def test_a_newly_published_version_starts_answering(inproc, helpers, tools) -> None:
    pipeline = inproc.pipeline(default_model="toy-retrained")
    inproc.train("toy-retrained")
    first = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0]), timeout=helpers.TIMEOUT)
    assert (first.version, first.labels[0].label) == ("v1", "sports")
    inproc.train("toy-retrained", swap=True)

    def newest():
        answer = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0]), timeout=helpers.TIMEOUT)
        return answer if answer.version == "v2" else None

    answer = tools.wait_for(newest, "the pipeline to answer with v2")
    assert answer.labels[0].label == "finance"  # v2 learned the labels the other way round
    pinned = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], version="v1"), timeout=helpers.TIMEOUT)
    assert (pinned.version, pinned.labels[0].label) == ("v1", "sports")


def test_a_version_left_without_a_manifest_never_answers(inproc, pipeline, helpers) -> None:
    # what a killed `fenlei train` of older fenlei left: a version's parts, without the manifest
    store = ModelStore(inproc.home)
    shutil.copytree(store.version_dir("toy", "v1"), store.version_dir("toy", "v4"), ignore=shutil.ignore_patterns(MANIFEST_FILE))
    try:
        error = helpers.rpc_error(pipeline.Classify, pipeline_pb2.ClassifyRequest(text=TEXTS[0], version="v4"))
        assert error.code() == grpc.StatusCode.NOT_FOUND and "incomplete" in error.details(), error.details()
        assert "published versions: v1" in error.details()
        # the stages refuse it as well, and "newest" passes it by
        transform = features_pb2.TransformRequest(
            documents=[common_pb2.TokenizedDocument(tokens=["足球"])], model=common_pb2.ModelRef(name="toy", version="v4")
        )
        assert helpers.rpc_error(inproc.features.Transform, transform).code() == grpc.StatusCode.NOT_FOUND
        assert pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0]), timeout=helpers.TIMEOUT).version == "v1"
    finally:
        shutil.rmtree(store.version_dir("toy", "v4"))


def test_an_unknown_model_is_named_without_listing_the_others(pipeline, helpers) -> None:
    error = helpers.rpc_error(pipeline.Classify, pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no model named 'nope'" in error.details(), error.details()
    assert "toy" not in error.details() and "fenlei train" in error.details(), error.details()  # the store's models stay private


@pytest.mark.parametrize("stage", ["segmenter", "classifier"])
def test_a_stage_that_cannot_be_reached_is_named(inproc, helpers, tmp_path, stage) -> None:
    """Without sidecars nothing but the pipeline can say which hop is down."""
    stub = inproc.pipeline(**{f"{stage}_address": f"unix:{tmp_path}/nobody-listens.sock"})
    error = helpers.rpc_error(stub.Classify, pipeline_pb2.ClassifyRequest(text="北京", model="toy"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith(f"the {stage} stage is unavailable: "), error.details()
