"""train() through the real stage servicers and the registry, in-process: the report's
informative features are the classifier's explanations named by the features stage, k-fold
fits throwaway drafts the registry never sees, SGD streams an epoch per pass, and the
registry keeps the report with the version."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format

from fenlei.classifier import servicer as classifier_servicer
from fenlei.features import servicer as features_servicer
from fenlei.preprocessor import servicer as preprocessor_servicer
from fenlei.registry import servicer as registry_servicer
from fenlei.runtime.models import ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter import servicer as segmenter_servicer
from fenlei.training.core import Corpus, CorpusStream, Progress, Report, TrainingSpec, train
from fenlei.training.register import GrpcRegistry
from fenlei.training.stages import GrpcStages
from fenlei.v1 import registry_pb2, registry_pb2_grpc, training_pb2

STAGES = (
    ("segmenter", segmenter_servicer),
    ("preprocessor", preprocessor_servicer),
    ("features", features_servicer),
    ("classifier", classifier_servicer),
)
SPORTS = ["足球", "篮球", "比赛", "进球", "冠军", "球员", "联赛", "教练"]
FINANCE = ["股票", "基金", "市场", "上涨", "下跌", "投资", "银行", "利率"]


def corpus() -> Corpus:
    texts, labels = [], []
    for words, label in ((SPORTS, "sports"), (FINANCE, "finance")):
        for i in range(24):
            texts.append(words[i % 8] + words[(i + 3) % 8] + words[(i + 5) % 8])
            labels.append(label)
    return Corpus(texts, labels, "toy.txt")


class Mesh:
    def __init__(self, servers, helpers, home) -> None:
        self.servers, self.home = servers, home
        self.addresses = {name: servers.start(name, module.register, helpers.settings_for(home)).address for name, module in STAGES}
        self.registry = servers.start("registry", registry_servicer.register, helpers.settings_for(home))

    def train(self, spec: TrainingSpec, data: Corpus | CorpusStream | None = None) -> tuple[Report, list[Progress]]:
        seen: list[Progress] = []

        async def run() -> Report:
            streams = StageStreams(self.addresses)
            try:
                async with grpc.aio.insecure_channel(self.registry.address) as channel:
                    stages, registry = GrpcStages(streams), GrpcRegistry(channel)
                    return await train(ModelStore(self.home), spec, stages, registry, data or corpus(), progress=seen.append)
            finally:
                await streams.close()

        return self.servers.loop.run(run()), seen


@pytest.fixture(scope="module")
def mesh(module_servers, helpers, tmp_path_factory) -> Mesh:
    return Mesh(module_servers, helpers, tmp_path_factory.mktemp("training-home"))


def test_k_fold_reports_named_informative_features_and_the_registry_keeps_the_report(mesh: Mesh, helpers) -> None:
    report, _ = mesh.train(TrainingSpec(name="toy", folds=3))
    training = report.training
    assert training["evaluation"] == "3-fold cross-validation" and training["accuracy"] == 1.0
    assert (training["statistics"]["train_documents"], training["statistics"]["test_documents"]) == (48, 48)
    informative = {row["label"]: [f["feature"] for f in row["features"]] for row in training["informative_features"]}
    assert set(informative) == {"sports", "finance"}
    # the features stage names them: the sports words push towards sports, never a finance word
    assert any(word in feature for feature in informative["sports"] for word in SPORTS)
    assert not any(word in feature for feature in informative["sports"] for word in FINANCE)
    assert ModelStore(mesh.home).versions("toy") == ["v1"] and not list((mesh.home / "models" / "toy" / ".drafts").iterdir())
    stub = registry_pb2_grpc.ModelRegistryStub(mesh.registry.channel)
    kept = stub.GetVersion(registry_pb2.GetVersionRequest(name="toy", version=report.version), timeout=helpers.TIMEOUT).version.report
    assert kept == json_format.ParseDict(training, training_pb2.TrainingReport())


def test_sgd_streams_an_epoch_per_pass(mesh: Mesh) -> None:
    report, seen = mesh.train(TrainingSpec(name="toy-sgd", classifier={"algorithm": "ALGORITHM_SGD", "epochs": 3}))
    fitting = [event for event in seen if event.phase == "fitting classifier"]
    assert (fitting[-1].documents_done, fitting[-1].documents_total) == (3 * report.train_documents, 3 * report.train_documents)
    assert report.accuracy == 1.0 and report.training["misclassified"] == []


def test_sgd_trains_from_a_stream_read_again_per_epoch(mesh: Mesh) -> None:
    whole, passes = corpus(), []

    async def read():
        passes.append(1)
        for start in range(0, len(whole.texts), 5):
            yield whole.subset(range(start, min(start + 5, len(whole.texts))))

    stream = CorpusStream(read, len(whole.texts), whole.sha256, "toy dataset")
    report, _ = mesh.train(TrainingSpec(name="toy-stream", classifier={"algorithm": "ALGORITHM_SGD", "epochs": 4}), stream)
    assert len(passes) == 1 + 4 + 1 and report.accuracy == 1.0
    # 20% of each class's 24 (4 or 5) held out of the stream
    assert report.train_documents + report.test_documents == 48 and 8 <= report.test_documents <= 10
    assert {row["label"] for row in report.training["informative_features"]} == {"sports", "finance"}
