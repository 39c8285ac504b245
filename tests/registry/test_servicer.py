"""The registry servicer in-process (fenlei.v1.ModelRegistry), beside the four stage
servicers on the same home: a real model fitted into a draft and registered over the API,
who did what from the caller's identity, aliases and their history, errors as statuses,
and export → import into an empty home answering with identical predictions."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from fenlei.classifier import servicer as classifier_servicer
from fenlei.features import servicer as features_servicer
from fenlei.preprocessor import servicer as preprocessor_servicer
from fenlei.registry import servicer as registry_servicer
from fenlei.runtime.models import ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter import servicer as segmenter_servicer
from fenlei.training.core import TrainingSpec
from fenlei.training.stages import GrpcStages, in_batches
from fenlei.v1 import classifier_pb2, common_pb2, registry_pb2, registry_pb2_grpc, training_pb2

STAGES = (
    ("segmenter", segmenter_servicer),
    ("preprocessor", preprocessor_servicer),
    ("features", features_servicer),
    ("classifier", classifier_servicer),
)
SPORTS = ["足球", "篮球", "比赛", "进球", "冠军", "球员", "联赛", "教练"]
FINANCE = ["股票", "基金", "市场", "上涨", "下跌", "投资", "银行", "利率"]
PROBES = ["足球联赛冠军", "股票市场下跌", "篮球教练进球", "银行利率上涨"]


def corpus(swap: bool) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for words, label in ((SPORTS, "sports"), (FINANCE, "finance")):
        for i in range(16):
            texts.append(words[i % 8] + words[(i + 3) % 8] + words[(i + 5) % 8])
            labels.append({"sports": "finance", "finance": "sports"}[label] if swap else label)
    return texts, labels


class Home:
    """The four stages and the registry on one home."""

    def __init__(self, servers, helpers, home: Path) -> None:
        self.servers, self.home = servers, home
        served = {name: servers.start(name, module.register, helpers.settings_for(home)) for name, module in STAGES}
        self.addresses = {name: served[name].address for name in served}
        self.registry = registry_pb2_grpc.ModelRegistryStub(
            servers.start("registry", registry_servicer.register, helpers.settings_for(home)).channel
        )
        self.store = ModelStore(home)

    def fit(self, name: str, swap: bool = False):
        """A draft of `name` fitted through the stages, as training fits one (still leased)."""
        draft = self.store.create_draft(name)
        spec = TrainingSpec(name=name)
        spec.segment.save(draft.part("segmenter"))
        spec.preprocess.save(draft.part("preprocessor"))
        texts, labels = corpus(swap)

        async def run() -> None:
            streams = StageStreams(self.addresses)
            try:
                stages = GrpcStages(streams)
                terms = await stages.terms(name, draft.id, texts)
                dimension = await stages.fit_features(name, draft.id, in_batches(terms, labels), {})
                await stages.fit_classifier(name, draft.id, in_batches(terms, labels), sorted(set(labels)), dimension, {})
            finally:
                await streams.close()

        self.servers.loop.run(run())
        return draft

    def predict(self, name: str, version: str = "") -> list[tuple[str, float]]:
        async def run() -> bytes:
            streams = StageStreams(self.addresses)
            try:
                documents = [common_pb2.Document(id=str(i), text=text) for i, text in enumerate(PROBES)]
                return await streams.classify(
                    documents, common_pb2.ModelRef(name=name, version=version), classifier_pb2.PredictOptions(top_k=1)
                )
            finally:
                await streams.close()

        answer = classifier_pb2.PredictStreamResponse.FromString(self.servers.loop.run(run()))
        return [(p.labels[0].label, p.labels[0].score) for p in answer.predictions]


def as_subject(subject: str) -> list[tuple[str, str]]:
    return [("x-fenlei-subject", subject)]


@pytest.fixture(scope="module")
def home(module_servers, helpers, tmp_path_factory) -> Home:
    return Home(module_servers, helpers, tmp_path_factory.mktemp("registry-home"))


def register(home: Home, name: str, swap: bool = False, metadata=(), **fields) -> registry_pb2.ModelVersion:
    with home.fit(name, swap) as draft:
        request = registry_pb2.RegisterVersionRequest(name=name, draft=draft.id, labels=["finance", "sports"], **fields)
        return home.registry.RegisterVersion(request, metadata=list(metadata), timeout=60).version


def test_a_fitted_draft_registers_with_lineage_and_metrics_and_serves(home: Home, helpers) -> None:
    config = struct_pb2.Struct()
    config.update({"features": {"top_k": 0}, "training": {"seed": 0}})
    lineage = registry_pb2.Lineage(
        dataset_sha256="ab" * 32, dataset_documents=32, dataset_source="toy.txt", config=config, code_version="0.1.0"
    )
    metrics = registry_pb2.Metrics(
        accuracy=1.0, macro_f1=1.0, per_class={"sports": registry_pb2.ClassMetrics(precision=1, recall=1, f1=1, support=16)}
    )
    report = training_pb2.TrainingReport(accuracy=1.0, labels=["finance", "sports"], evaluation="held-out 20%")
    version = register(home, "toy", metadata=as_subject("alice"), lineage=lineage, metrics=metrics, tags={"team": "nlp"}, report=report)
    assert (version.name, version.version, version.created_by, list(version.labels)) == ("toy", "v1", "alice", ["finance", "sports"])
    assert version.lineage == lineage and version.metrics == metrics and dict(version.tags) == {"team": "nlp"}
    assert version.digest == home.store.manifest("toy", "v1")["digest"] and version.size_bytes > 0
    assert [label for label, _ in home.predict("toy")] == ["sports", "finance", "sports", "finance"]
    got = home.registry.GetVersion(registry_pb2.GetVersionRequest(name="toy"), timeout=helpers.TIMEOUT).version
    assert got.report == report and not version.HasField("report")  # GetVersion's, not in every answer
    got.ClearField("report")
    assert got == version
    assert got.created.ToSeconds() > 0
    listed = home.registry.ListModels(registry_pb2.ListModelsRequest(), timeout=helpers.TIMEOUT).models
    assert registry_pb2.ModelSummary(name="toy", versions=1, newest_version="v1") in listed
    found = home.registry.SearchVersions(
        registry_pb2.SearchVersionsRequest(name="toy", tags=["team=nlp"], metric="accuracy", min_value=0.99), timeout=helpers.TIMEOUT
    )
    assert [v.version for v in found.versions] == ["v1"] and not found.versions[0].HasField("report")  # searches leave it out
    tagged = home.registry.TagVersion(registry_pb2.TagVersionRequest(name="toy", version="v1", set={"stage": "qa"}, remove=["team"]))
    assert dict(tagged.version.tags) == {"stage": "qa"}


def test_who_did_it_is_the_callers_subject_else_its_workload_else_anonymous(home: Home, helpers) -> None:
    workload = [
        (
            "x-forwarded-client-cert",
            'By=spiffe://cluster.local/ns/fenlei/sa/registry;Subject="";URI=spiffe://cluster.local/ns/fenlei/sa/jobs',
        )
    ]
    assert register(home, "who", metadata=workload).created_by == "spiffe://cluster.local/ns/fenlei/sa/jobs"
    vouched = register(home, "who", metadata=[*workload, *as_subject("bob")])
    assert vouched.created_by == "bob via spiffe://cluster.local/ns/fenlei/sa/jobs"
    gateway = [
        ("x-forwarded-client-cert", "By=spiffe://cluster.local/ns/fenlei/sa/registry;URI=spiffe://cluster.local/ns/fenlei/sa/gateway")
    ]
    assert register(home, "who", metadata=[*gateway, *as_subject("bob")]).created_by == "bob"
    assert register(home, "who").created_by == "anonymous"
    move = home.registry.SetAlias(
        registry_pb2.SetAliasRequest(name="who", alias="production", version="v2", reason="go"), metadata=as_subject("carol")
    )
    assert (move.move.moved_by, move.move.reason, move.move.to_version, move.move.sequence) == ("carol", "go", "v2", 1)


def test_aliases_move_with_compare_and_set_roll_back_and_keep_their_history(home: Home, helpers) -> None:
    for swap in (False, True, False):
        register(home, "ali", swap)
    stub = home.registry

    def set_alias(version: str, **fields) -> registry_pb2.AliasMove:
        return stub.SetAlias(
            registry_pb2.SetAliasRequest(name="ali", alias="production", version=version, **fields), metadata=as_subject("ops")
        ).move

    assert set_alias("v1", expected_version="").from_version == ""
    # expected_version "" (present) means "must not exist yet"; absent means no check
    error = helpers.rpc_error(
        stub.SetAlias, registry_pb2.SetAliasRequest(name="ali", alias="production", version="v2", expected_version="")
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "points at v1, not nowhere as expected" in error.details()
    assert set_alias("v2").from_version == "v1"
    assert set_alias("v3", expected_version="v2").to_version == "v3"
    assert home.predict("ali") == home.predict("ali", "v3")  # a name without a version answers with production
    back = stub.RollbackAlias(registry_pb2.RollbackAliasRequest(name="ali", alias="production", reason="v3 is worse")).move
    assert (back.from_version, back.to_version, back.reason, back.moved_by) == ("v3", "v2", "v3 is worse", "anonymous")
    assert home.predict("ali") == home.predict("ali", "v2") != home.predict("ali", "v1")
    removed = stub.DeleteAlias(registry_pb2.DeleteAliasRequest(name="ali", alias="production")).move
    assert (removed.from_version, removed.to_version) == ("v2", "")
    history = stub.GetHistory(registry_pb2.GetHistoryRequest(name="ali", alias="production")).moves
    assert [(m.sequence, m.from_version, m.to_version) for m in history] == [
        (1, "", "v1"),
        (2, "v1", "v2"),
        (3, "v2", "v3"),
        (4, "v3", "v2"),
        (5, "v2", ""),
    ]
    assert home.predict("ali") == home.predict("ali", "v3")  # the newest again


def test_errors_are_statuses_that_say_what_to_do(home: Home, helpers) -> None:
    register(home, "err")
    stub = home.registry
    stub.SetAlias(registry_pb2.SetAliasRequest(name="err", alias="production", version="v1"))
    cases = [
        (stub.GetVersion, registry_pb2.GetVersionRequest(name="nope"), grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
        (stub.GetVersion, registry_pb2.GetVersionRequest(name="err", version="beta"), grpc.StatusCode.NOT_FOUND, "aliases: production"),
        (stub.SetAlias, registry_pb2.SetAliasRequest(name="err", alias="v2", version="v1"), grpc.StatusCode.INVALID_ARGUMENT, "not valid"),
        (
            stub.DeleteVersion,
            registry_pb2.DeleteVersionRequest(name="err", version="v1"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "alias production points at it",
        ),
        (
            stub.RegisterVersion,
            registry_pb2.RegisterVersionRequest(name="err", draft="draft-" + "0" * 32),
            grpc.StatusCode.NOT_FOUND,
            "no draft",
        ),
        (stub.RegisterVersion, registry_pb2.RegisterVersionRequest(name="err"), grpc.StatusCode.INVALID_ARGUMENT, "name the draft"),
        (stub.SearchVersions, registry_pb2.SearchVersionsRequest(metric="loss"), grpc.StatusCode.INVALID_ARGUMENT, "accuracy, macro_f1"),
    ]
    for call, request, code, message in cases:
        error = helpers.rpc_error(call, request)
        assert (error.code(), message in error.details()) == (code, True), error.details()
    error = helpers.rpc_error(stub.ImportRegistry, iter([registry_pb2.ImportRegistryRequest(chunk=b"not an archive" * 100)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a fenlei registry archive" in error.details()


def test_export_then_import_into_an_empty_home_answers_identically(home: Home, module_servers, helpers, tmp_path_factory) -> None:
    register(home, "backup", report=training_pb2.TrainingReport(macro_f1=0.75, phase_seconds={"segmenting": 1.5}))
    register(home, "backup", swap=True)
    home.registry.SetAlias(registry_pb2.SetAliasRequest(name="backup", alias="production", version="v1"))
    before = {version: home.predict("backup", version) for version in ("", "v1", "v2")}
    chunks = [answer.chunk for answer in home.registry.ExportRegistry(registry_pb2.ExportRegistryRequest(), timeout=60)]
    assert chunks and all(chunks)

    empty = Home(module_servers, helpers, tmp_path_factory.mktemp("restored-home"))
    answer = empty.registry.ImportRegistry(iter(registry_pb2.ImportRegistryRequest(chunk=chunk) for chunk in chunks), timeout=60)
    assert "backup/v1" in answer.added and "backup/v2" in answer.added and not answer.unchanged
    assert {version: empty.predict("backup", version) for version in before} == before
    restored = empty.registry.GetVersion(registry_pb2.GetVersionRequest(name="backup"), timeout=helpers.TIMEOUT).version
    original = home.registry.GetVersion(registry_pb2.GetVersionRequest(name="backup"), timeout=helpers.TIMEOUT).version
    assert restored == original and list(restored.aliases) == ["production"] and restored.report.phase_seconds == {"segmenting": 1.5}
    assert json_format.MessageToDict(restored)["digest"] == home.store.manifest("backup", "v1")["digest"]
