"""The pipeline servicer in-process, in front of the four stage servicers and the registry
(also in-process), with settings an e2e mesh does not use: tiny stage batches, a small
stream window and a default model. Toy models are trained through the same stage servers
and registered; experiments run between a model's v1 and its v2, which learned the labels
the other way round, so every answer shows which of them answered."""

from __future__ import annotations

import logging
import re
import shutil

import grpc
import pytest

from fenlei.classifier import servicer as classifier_servicer
from fenlei.features import servicer as features_servicer
from fenlei.pipeline import servicer as pipeline_servicer
from fenlei.preprocessor import servicer as preprocessor_servicer
from fenlei.registry import servicer as registry_servicer
from fenlei.registry.experiments import arm_at, key_point
from fenlei.runtime.models import MANIFEST_FILE, ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter import servicer as segmenter_servicer
from fenlei.training.core import Corpus, TrainingSpec, train
from fenlei.training.register import GrpcRegistry
from fenlei.training.stages import GrpcStages
from fenlei.v1 import common_pb2, features_pb2, features_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc, registry_pb2, registry_pb2_grpc

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
        registry = servers.start("registry", registry_servicer.register, helpers.settings_for(home))
        self.registry_address = registry.address
        self.experiments = registry_pb2_grpc.ExperimentsStub(registry.channel)
        self.model_registry = registry_pb2_grpc.ModelRegistryStub(registry.channel)

    def pipeline(self, **settings) -> pipeline_pb2_grpc.PipelineStub:
        fields = dict(
            segmenter_address=self.addresses["segmenter"],
            preprocessor_address=self.addresses["preprocessor"],
            features_address=self.addresses["features"],
            classifier_address=self.addresses["classifier"],
            registry_address=self.registry_address,
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
                async with grpc.aio.insecure_channel(self.registry_address) as channel:
                    stages, registry = GrpcStages(streams), GrpcRegistry(channel)
                    return await train(ModelStore(self.home), TrainingSpec(name=name), stages, registry, corpus(swap), corpus(swap))
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


# ---------------------------------------------------------------- request ids and experiments

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
SWAPPED = {"sports": "finance", "finance": "sports"}


def test_every_answer_carries_a_request_id(pipeline, helpers) -> None:
    fresh = [pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0]), timeout=helpers.TIMEOUT) for _ in range(3)]
    assert all(REQUEST_ID.match(a.request_id) for a in fresh) and len({a.request_id for a in fresh}) == 3
    assert all((a.experiment, a.arm) == ("", "") for a in fresh)  # no experiment routes toy
    given = pipeline.Classify(
        pipeline_pb2.ClassifyRequest(text=TEXTS[0]), metadata=[("x-request-id", "client-7.a")], timeout=helpers.TIMEOUT
    )
    assert given.request_id == "client-7.a"
    odd = pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0]), metadata=[("x-request-id", "a b/c")], timeout=helpers.TIMEOUT)
    assert REQUEST_ID.match(odd.request_id)
    batch = pipeline.ClassifyBatch(
        pipeline_pb2.ClassifyBatchRequest(documents=helpers.documents(*TEXTS)), metadata=[("x-request-id", "b-1")], timeout=helpers.TIMEOUT
    )
    assert batch.request_id == "b-1"
    requests = [pipeline_pb2.ClassifyStreamRequest(documents=helpers.documents(text)) for text in TEXTS[:3]]
    answers = list(pipeline.ClassifyStream(iter(requests), metadata=[("x-request-id", "s-9")], timeout=helpers.TIMEOUT))
    assert [a.request_id for a in answers] == ["s-9/0", "s-9/1", "s-9/2"]


@pytest.fixture(scope="module")
def two_versions(inproc):
    """model name -> a model of its own with v1 (right) and v2 (labels learned swapped)."""

    def make(name: str) -> str:
        assert inproc.train(name).version == "v1"
        assert inproc.train(name, swap=True).version == "v2"
        return name

    return make


def create(inproc, name: str, model: str, weights=(1.0, 1.0), allocation=registry_pb2.ALLOCATION_FIXED) -> registry_pb2.Experiment:
    arms = [registry_pb2.Arm(name="a", target="v1", weight=weights[0]), registry_pb2.Arm(name="b", target="v2", weight=weights[1])]
    request = registry_pb2.CreateExperimentRequest(name=name, model=model, arms=arms, allocation=allocation)
    return inproc.experiments.CreateExperiment(request, timeout=30).experiment


def classify(pipeline, model: str, text: str = TEXTS[0], arm: str = "", **fields) -> pipeline_pb2.ClassifyResponse:
    metadata = [("x-fenlei-arm", arm)] if arm else []
    return pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text, model=model, **fields), metadata=metadata, timeout=30)


def test_an_experiment_routes_by_header_and_weight_and_a_named_version_bypasses_it(inproc, pipeline, two_versions, helpers, tools) -> None:
    model = two_versions("ab-route")
    create(inproc, "route", model, weights=(1.0, 0.0))
    answer = tools.wait_for(lambda: (a := classify(pipeline, model)).experiment and a, "the pipeline to see the experiment")
    assert (answer.experiment, answer.arm, answer.version, answer.labels[0].label) == ("route", "a", "v1", "sports")
    assert REQUEST_ID.match(answer.request_id)
    forced = classify(pipeline, model, arm="b")
    assert (forced.experiment, forced.arm, forced.version, forced.labels[0].label) == ("route", "b", "v2", SWAPPED["sports"])
    error = helpers.rpc_error(pipeline.Classify, pipeline_pb2.ClassifyRequest(text=TEXTS[0], model=model), metadata=[("x-fenlei-arm", "c")])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-fenlei-arm 'c' is not an arm of experiment 'route' on model 'ab-route': its arms are 'a', 'b'" in error.details()
    pinned = classify(pipeline, model, arm="b", version="v1")
    assert (pinned.experiment, pinned.arm, pinned.version) == ("", "", "v1")
    batch = pipeline.ClassifyBatch(
        pipeline_pb2.ClassifyBatchRequest(documents=helpers.documents(*TEXTS), model=model), metadata=[("x-fenlei-arm", "b")], timeout=30
    )
    assert (batch.experiment, batch.arm, batch.version) == ("route", "b", "v2")
    assert [p.labels[0].label for p in batch.predictions] == [SWAPPED[t] for t in TRUTH]
    stream = list(
        pipeline.ClassifyStream(iter([pipeline_pb2.ClassifyStreamRequest(documents=helpers.documents(TEXTS[1]), model=model)]), timeout=30)
    )
    assert [(a.experiment, a.arm, a.version) for a in stream] == [("route", "a", "v1")]


def test_routing_keys_stay_on_their_arm_while_weights_change_in_every_pipeline(inproc, pipeline, two_versions, tools) -> None:
    model = two_versions("ab-keys")
    create(inproc, "keys", model)
    tools.wait_for(lambda: classify(pipeline, model).experiment, "the pipeline to see the experiment")
    keys = [f"user-{i}" for i in range(24)]
    first = {key: classify(pipeline, model, routing_key=key) for key in keys}
    arms = {key: answer.arm for key, answer in first.items()}
    assert set(arms.values()) == {"a", "b"}
    assert all(answer.version == {"a": "v1", "b": "v2"}[answer.arm] for answer in first.values())
    for weights in ({"a": 0.0}, {"a": 1.0, "b": 0.0}):
        inproc.experiments.SetWeights(registry_pb2.SetWeightsRequest(name="keys", weights=weights), timeout=30)
        everyone = "b" if weights["a"] == 0 else "a"
        tools.wait_for(
            lambda everyone=everyone: all(classify(pipeline, model).arm == everyone for _ in range(8)), "the new weights to apply"
        )
        assert {key: classify(pipeline, model, routing_key=key).arm for key in keys} == arms
    other = inproc.pipeline()  # another replica: asks the registry, which kept every key where it was
    assert {key: classify(other, model, routing_key=key).arm for key in keys} == arms
    assert {classify(other, model, routing_key=f"new-{i}").arm for i in range(8)} == {"a"}  # new keys: the weights of now


def feedback(inproc, request_id: str, label: str, document_id: str = "") -> registry_pb2.SendFeedbackResponse:
    request = registry_pb2.SendFeedbackRequest(request_id=request_id, document_id=document_id, label=label)
    return inproc.experiments.SendFeedback(request, timeout=30)


def feedback_when_recorded(inproc, tools, request_id: str, label: str, document_id: str = "") -> registry_pb2.SendFeedbackResponse:
    """SendFeedback, once the pipeline's record of the prediction has reached the registry."""

    def taken():
        try:
            return feedback(inproc, request_id, label, document_id)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    return tools.wait_for(taken, f"the prediction of {request_id} {document_id} to be recorded")


def test_feedback_by_request_id_scores_the_arm_that_answered(inproc, pipeline, two_versions, helpers, tools) -> None:
    model = two_versions("ab-feedback")
    create(inproc, "feedback", model)
    tools.wait_for(lambda: classify(pipeline, model).experiment, "the pipeline to see the experiment")
    answers = [(classify(pipeline, model, text, arm=arm), truth) for text, truth in zip(TEXTS, TRUTH) for arm in ("a", "b")]
    for answer, truth in answers:
        taken = feedback_when_recorded(inproc, tools, answer.request_id, truth)
        assert (taken.experiment, taken.arm, taken.correct) == ("feedback", answer.arm, answer.labels[0].label == truth)
    batch = pipeline.ClassifyBatch(
        pipeline_pb2.ClassifyBatchRequest(documents=helpers.documents(*TEXTS[:2]), model=model),
        metadata=[("x-fenlei-arm", "a")],
        timeout=30,
    )
    taken = feedback_when_recorded(inproc, tools, batch.request_id, TRUTH[1], "d1")
    assert (taken.arm, taken.correct) == ("a", True)
    stream = list(
        pipeline.ClassifyStream(
            iter([pipeline_pb2.ClassifyStreamRequest(documents=helpers.documents(text, prefix="s"), model=model) for text in TEXTS[:2]]),
            metadata=[("x-fenlei-arm", "b")],
            timeout=30,
        )
    )
    taken = feedback_when_recorded(inproc, tools, stream[1].request_id, TRUTH[1], "s0")
    assert (taken.arm, taken.correct) == ("b", False)
    experiment = inproc.experiments.GetExperiment(registry_pb2.GetExperimentRequest(name="feedback"), timeout=30).experiment
    a, b = experiment.scores
    # a (v1) was right 6 times of 6; b (v2, labels swapped) wrong 6 times of 6
    assert (a.arm, a.feedback, a.correct, a.accuracy) == ("a", 6, 6, 1.0)
    assert (b.arm, b.feedback, b.correct, b.accuracy) == ("b", 6, 0, 0.0)
    # 7 answers each, and the first one drawn by weight when the pipeline saw the experiment
    assert a.predictions >= 7 and b.predictions >= 7 and a.predictions + b.predictions == 15
    assert {t: dict(c.counts) for t, c in b.confusion.items()} == {"finance": {"sports": 4}, "sports": {"finance": 2}}
    assert experiment.leader == "a"
    error = helpers.rpc_error(inproc.experiments.SendFeedback, registry_pb2.SendFeedbackRequest(request_id="nobody", label="sports"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no prediction an experiment served has request id 'nobody'" in error.details()
    # Documents without ids are told apart by their position.
    anonymous = [common_pb2.Document(text=text) for text in TEXTS[:2]]
    batch = pipeline.ClassifyBatch(
        pipeline_pb2.ClassifyBatchRequest(documents=anonymous, model=model), metadata=[("x-fenlei-arm", "a")], timeout=30
    )
    assert [p.id for p in batch.predictions] == ["", ""]
    taken = feedback_when_recorded(inproc, tools, batch.request_id, TRUTH[1], "1")
    assert (taken.arm, taken.correct) == ("a", True)
    assert [
        e.kind for e in inproc.experiments.GetExperiment(registry_pb2.GetExperimentRequest(name="feedback"), timeout=30).experiment.events
    ] == ["created"]


def test_thompson_allocation_moves_traffic_to_the_better_arm_and_ending_promotes_it(inproc, pipeline, two_versions, tools) -> None:
    model = two_versions("ab-thompson")
    create(inproc, "thompson", model, allocation=registry_pb2.ALLOCATION_THOMPSON)
    tools.wait_for(lambda: classify(pipeline, model).experiment, "the pipeline to see the experiment")
    for _ in range(4):
        for text, truth in zip(TEXTS, TRUTH):
            for arm in ("a", "b"):
                feedback_when_recorded(inproc, tools, classify(pipeline, model, text, arm=arm).request_id, truth)

    def weights():
        arms = inproc.experiments.GetExperiment(registry_pb2.GetExperimentRequest(name="thompson"), timeout=30).experiment.arms
        found = {arm.name: arm.weight for arm in arms}
        return found if found["b"] < 0.06 else None  # once all the feedback is counted, b is at its floor

    moved = tools.wait_for(weights, "Thompson sampling to move the weights to arm a")
    assert moved["a"] > 0.9 and moved["b"] >= 0.05  # the floor: b is never starved
    tools.wait_for(lambda: sum(classify(pipeline, model).arm == "a" for _ in range(20)) >= 16, "the traffic to follow the weights")
    ended = inproc.experiments.EndExperiment(registry_pb2.EndExperimentRequest(name="thompson", promote_alias="production"), timeout=30)
    assert (ended.experiment.running, ended.experiment.leader) == (False, "a")
    assert (ended.move.alias, ended.move.from_version, ended.move.to_version) == ("production", "", "v1")
    answer = tools.wait_for(lambda: (a := classify(pipeline, model)).experiment == "" and a, "the experiment to stop routing")
    assert answer.version == "v1"  # the production alias now, not the newest version v2


def test_without_the_registry_keys_go_by_hash_and_answers_keep_coming(inproc, two_versions, tmp_path, tools, caplog) -> None:
    model = two_versions("ab-down")
    create(inproc, "down", model, weights=(1.0, 3.0))
    pipeline = inproc.pipeline(registry_address=f"unix:{tmp_path}/no-registry.sock")
    caplog.set_level(logging.WARNING, logger="fenlei.pipeline")
    tools.wait_for(lambda: classify(pipeline, model).experiment, "the pipeline to see the experiment")
    keys = [f"user-{i}" for i in range(24)]
    arms = {key: classify(pipeline, model, routing_key=key).arm for key in keys}
    assert arms == {key: arm_at([("a", 1.0), ("b", 3.0)], key_point("down", key)) for key in keys}
    assert set(arms.values()) == {"a", "b"}
    tools.wait_for(lambda: "served predictions dropped" in caplog.text, "the dropped predictions to be logged")
    assert "routing keys assigned by hash: the registry did not answer" in caplog.text
