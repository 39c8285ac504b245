"""`fenlei datasets|jobs|train` against scripted Datasets, Jobs and ModelRegistry services
served in-process (a real gRPC server on 127.0.0.1): the requests the flags make, the role
of each call's token, a watch that resumes after a broken stream, and what is printed."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from fenlei import cli
from fenlei.client import Client
from fenlei.errors import InvalidInput
from fenlei.v1 import (
    classifier_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    features_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    training_pb2,
)

CORPUS = "".join(f"{text}\t{label}\n" for text, label in [("很好用", "positive"), ("太差了", "negative")] * 3)
RUNNING, SUCCEEDED, FAILED = jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED


def event(sequence: int, state: int = RUNNING, phase: str = "fitting features", done: int = 0, message: str = "") -> jobs_pb2.JobEvent:
    progress = jobs_pb2.Progress(phase=phase, documents_done=done, documents_total=6, elapsed_seconds=sequence, remaining_seconds=2)
    return jobs_pb2.JobEvent(sequence=sequence, state=state, progress=progress, message=message)


class Scripted(datasets_pb2_grpc.DatasetsServicer, jobs_pb2_grpc.JobsServicer, registry_pb2_grpc.ModelRegistryServicer):
    """Records every request; WatchJob sends `events` after the sequence asked for, and
    breaks the first stream (UNAVAILABLE) after `break_after` events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, object]] = []
        self.uploads: list[tuple[datasets_pb2.UploadDatasetRequest, bytes]] = []
        self.events = [event(1, phase="reading"), event(2, done=3), event(3, done=6), event(4, SUCCEEDED, "done", 6)]
        self.break_after: int | None = 2

    def record(self, method: str, request: object) -> None:
        with self.lock:
            self.requests.append((method, request))

    def asked(self, method: str) -> list:
        return [request for name, request in self.requests if name == method]

    def UploadDataset(self, request_iterator, context):
        requests = list(request_iterator)
        data = b"".join(r.chunk for r in requests)
        self.uploads.append((requests[0], data))
        dataset = datasets_pb2.Dataset(id=f"ds-{len(self.uploads)}", name=requests[0].name, documents=data.count(b"\n"))
        dataset.label_counts.update({"positive": 3, "negative": 3})
        return datasets_pb2.UploadDatasetResponse(dataset=dataset)

    def CreateJob(self, request, context):
        self.record("CreateJob", request)
        return jobs_pb2.CreateJobResponse(job=jobs_pb2.Job(id="job-1", model=request.model, dataset=request.dataset, state=1))

    def GetJob(self, request, context):
        self.record("GetJob", request)
        return jobs_pb2.GetJobResponse(job=jobs_pb2.Job(id=request.id, model="m", state=SUCCEEDED, version="v3"))

    def CancelJob(self, request, context):
        self.record("CancelJob", request)
        return jobs_pb2.CancelJobResponse(job=jobs_pb2.Job(id=request.id, state=jobs_pb2.JOB_STATE_CANCELLED, reason=request.reason))

    def WatchJob(self, request, context):
        self.record("WatchJob", request)
        for sent, answer in enumerate((e for e in self.events if e.sequence > request.after_sequence), 1):
            yield jobs_pb2.WatchJobResponse(event=answer)
            if sent == self.break_after:
                self.break_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "the stream broke")

    def GetVersion(self, request, context):
        self.record("GetVersion", request)
        metrics = registry_pb2.Metrics(accuracy=0.75, macro_f1=0.7, train_documents=5, test_documents=2, dimension=42, train_seconds=1.5)
        metrics.per_class["positive"].CopyFrom(registry_pb2.ClassMetrics(precision=1.0, recall=0.5, f1=0.667, support=2))
        lineage = registry_pb2.Lineage(dataset_sha256="ab" * 32, dataset_documents=6, dataset_source="/data/c.txt", code_version="0.1.0")
        version = registry_pb2.ModelVersion(
            name=request.name, version=request.version, created_by="alice", digest="cd" * 32, metrics=metrics, lineage=lineage
        )
        return registry_pb2.GetVersionResponse(version=version)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    """The scripted services, which cli.gateway(role) reaches (the roles asked are recorded as "role")."""
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    datasets_pb2_grpc.add_DatasetsServicer_to_server(servicer, server)
    jobs_pb2_grpc.add_JobsServicer_to_server(servicer, server)
    registry_pb2_grpc.add_ModelRegistryServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    @contextlib.contextmanager
    def gateway(role: str, timeout: float) -> Iterator[Client]:
        servicer.record("role", role)
        with Client(f"127.0.0.1:{port}", timeout=timeout) as client:
            yield client

    monkeypatch.setattr(cli, "gateway", gateway)
    try:
        yield servicer
    finally:
        server.stop(None).wait(30)


def args(*argv: str):
    return cli.parser().parse_args(list(argv))


def test_job_flags_become_the_request(tmp_path: Path) -> None:
    (tmp_path / "stop.txt").write_text("的 了\n", encoding="utf-8")
    request = cli.job_request(
        args("jobs", "create", "--model", "m", "--dataset", "ds-1", "--folds", "5", "--seed", "3", "--tune", "--trials", "4",
             "--tag", "team=nlp",
             "--char-ngrams", "1-3", "--no-hmm", "--stopwords", str(tmp_path / "stop.txt"), "--feature-selection", "chi2",
             "--max-features", "500", "--algorithm", "linear_svm", "--regularization", "0.5"),
        model="m", dataset="ds-1",
    )  # fmt: skip
    assert (request.model, request.dataset, request.tune, dict(request.tags)) == ("m", "ds-1", True, {"team": "nlp"})
    assert request.space == jobs_pb2.TuningSpace(max_trials=4)  # the rest: fenlei's default search space
    assert (request.evaluation.WhichOneof("method"), request.evaluation.folds, request.evaluation.seed) == ("folds", 5, 3)
    config = request.config
    assert config.segmenter.HasField("hmm") and not config.segmenter.hmm
    assert not config.segmenter.HasField("feature_tags")  # not given: the service's default
    assert (config.preprocessor.char_ngrams.min, config.preprocessor.char_ngrams.max) == (1, 3)
    assert not config.preprocessor.HasField("word_ngrams") and list(config.preprocessor.extra_stopwords) == ["的", "了"]
    assert (config.features.selection, config.features.top_k) == (features_pb2.FEATURE_SELECTION_CHI2, 500)
    assert (config.classifier.algorithm, config.classifier.regularization) == (classifier_pb2.ALGORITHM_LINEAR_SVM, 0.5)
    assert config.classifier.seed == 0  # the seed travels in the evaluation


def test_evaluation_is_one_of_fraction_test_dataset_folds_or_the_default() -> None:
    def evaluation(*flags: str) -> jobs_pb2.Evaluation:
        return cli.job_request(args("jobs", "create", "--model", "m", "--dataset", "d", *flags), model="m", dataset="d").evaluation

    assert evaluation().WhichOneof("method") is None
    assert evaluation("--test-fraction", "0.3").test_fraction == 0.3
    assert evaluation("--test-dataset", "ds-2").test_dataset == "ds-2"
    with pytest.raises(SystemExit):
        args("jobs", "create", "--model", "m", "--dataset", "d", "--folds", "3", "--test-dataset", "ds-2")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-features", "100"], "--max-features=100 needs a selection method"),
        (["--folds", "1"], "--folds needs at least 2 folds"),
        (["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
        (["--seed", "-1"], "--seed: seed must be an integer"),
        (["--tag", "novalue"], "--tag takes KEY=VALUE"),
        (["--trials", "3"], "--trials takes N >= 1 and needs --tune, not --trials 3 alone"),
        (["--tune", "--trials", "0"], "--trials takes N >= 1 and needs --tune"),
    ],
)
def test_bad_flags_are_refused_before_any_call(flags: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match="^" + message):
        cli.job_request(args("jobs", "create", "--model", "m", "--dataset", "d", *flags), model="m", dataset="d")


def test_a_flag_of_the_wrong_shape_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        args("train", "corpus.txt", "--name", "x", "--char-ngrams", "two")
    assert usage.value.code == 2 and "argument --char-ngrams" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    events = [event(1, done=3), event(2, FAILED, "fitting features", 3, message="the classifier failed")]
    plain = io.StringIO()
    view = cli.ProgressView(plain)
    for shown in events:
        view.show(shown)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and "running  fitting features  3/6 documents  1.0 s elapsed  ~2.0 s left" in lines[0]
    assert lines[1].endswith("failed  fitting features  3/6 documents  2.0 s elapsed  the classifier failed")

    terminal = Terminal()
    view = cli.ProgressView(terminal)
    for shown in events:
        view.show(shown)
    view.close()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r\x1b[K[############------------]  50%  running  fitting features  3/6 documents")
    assert "\r\x1b[Kthe classifier failed\n\r\x1b[K[############------------]  50%  failed" in drawn
    assert drawn.endswith("2.0 s elapsed\n")  # no estimate once ended; the line ends once


def test_off_a_terminal_a_line_goes_to_each_phase_and_its_end_not_to_each_step() -> None:
    plain = io.StringIO()
    view = cli.ProgressView(plain)
    phases = [("reading", 0), ("reading", 6), ("fitting features", 0), ("fitting features", 2), ("fitting features", 4)]
    phases += [("fitting features", 6), ("fitting features", 6), ("evaluating", 3)]
    for sequence, (phase, done) in enumerate(phases, 1):
        view.show(event(sequence, phase=phase, done=done))
    view.show(event(9, phase="evaluating", done=4, message="a message is always shown"))
    shown = [line.split("  ")[2:4] for line in plain.getvalue().splitlines()]
    assert shown == [
        ["reading", "0/6 documents"], ["reading", "6/6 documents"], ["fitting features", "0/6 documents"],
        ["fitting features", "6/6 documents"], ["evaluating", "3/6 documents"], ["evaluating", "4/6 documents"],
    ]  # fmt: skip


def test_a_watch_resumes_after_the_last_event_it_saw(scripted: Scripted) -> None:
    out = io.StringIO()
    last = cli.watch_job("job-1", cli.ProgressView(out))
    assert last.state == SUCCEEDED
    assert [request.after_sequence for request in scripted.asked("WatchJob")] == [0, 2]
    assert [line.split("  ")[1:3] for line in out.getvalue().splitlines()] == [
        ["running", "reading"], ["running", "fitting features"], ["running", "fitting features"], ["succeeded", "done"]
    ]  # fmt: skip
    assert scripted.asked("role") == ["viewer"]


def test_a_watch_gives_up_when_every_attempt_fails(scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "WATCH_ATTEMPTS", 2)
    scripted.events = []  # every stream ends before the job did
    with pytest.raises(cli.Unavailable, match="ended before the job did"):
        cli.watch_job("job-1", cli.ProgressView(io.StringIO()))
    assert len(scripted.asked("WatchJob")) == 2


def test_create_watch_exits_1_with_the_reason_when_the_job_failed(scripted: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.break_after = None
    scripted.events = [event(1), event(2, FAILED, message="a stage is unavailable")]
    assert cli.main(["jobs", "create", "--model", "m", "--dataset", "ds-1", "--watch"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "created job job-1: m on dataset ds-1"
    assert "fenlei jobs create: job job-1 failed: a stage is unavailable" in err
    assert scripted.asked("role") == ["trainer", "viewer"]  # the contract's roles: CreateJob, WatchJob


def test_train_uploads_runs_a_job_and_prints_what_it_registered(scripted: Scripted, tmp_path: Path, capsys) -> None:
    (tmp_path / "train.tsv").write_text(CORPUS, encoding="utf-8")
    (tmp_path / "test.tsv").write_text(CORPUS[: len(CORPUS) // 2], encoding="utf-8")
    (tmp_path / "names.txt").write_text("negative\npositive\n", encoding="utf-8")
    code = cli.main(["train", str(tmp_path / "train.tsv"), "--name", "m", "--test", str(tmp_path / "test.tsv"),
                     "--label-names", str(tmp_path / "names.txt"), "--tune", "--word-ngrams", "1-2"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    [(first, data), (second, _)] = scripted.uploads
    assert data == CORPUS.encode() and (first.name, first.file_name) == ("train.tsv", str((tmp_path / "train.tsv").resolve()))
    assert list(first.label_names) == ["negative", "positive"] and (first.text_column, first.label_column) == ("text", "label")
    assert second.file_name.endswith("test.tsv")
    [created] = scripted.asked("CreateJob")
    assert (created.model, created.dataset, created.evaluation.test_dataset, created.tune) == ("m", "ds-1", "ds-2", True)
    assert (created.config.preprocessor.word_ngrams.min, created.config.preprocessor.word_ngrams.max) == (1, 2)
    assert [(r.name, r.version) for r in scripted.asked("GetVersion")] == [("m", "v3")]
    assert out == (
        "model m v3: trained on 5 documents, evaluated on 2, 42 features, 1.5 s\n"
        "label            precision    recall        f1   support\n"
        "positive             1.000     0.500     0.667         2\n"
        "accuracy 0.7500   macro F1 0.7000\n"
        f"registered m v3 by alice (digest {'cd' * 6})\n"
        f"  from 6 documents of /data/c.txt (sha256 {'ab' * 6}), fenlei 0.1.0\n"
    )
    assert "job job-1: training m on dataset ds-1 (6 documents)" in err and "succeeded  done" in err  # progress on stderr
    assert scripted.asked("role") == ["trainer", "trainer", "trainer", "viewer", "viewer", "viewer"]


def test_the_report_reads_as_tables() -> None:
    report = training_pb2.TrainingReport(
        accuracy=0.9, macro_f1=0.85, weighted_f1=0.88, labels=["neg", "pos"], evaluation="3-fold cross-validation",
        classes=[training_pb2.ClassReport(label="neg", precision=0.8, recall=0.9, f1=0.85, support=10)],
        confusion=[training_pb2.ConfusionRow(counts=[9, 1]), training_pb2.ConfusionRow(counts=[2, 8])],
        informative_features=[training_pb2.InformativeFeatures(label="pos", features=[training_pb2.FeatureWeight(feature="好", weight=1.5)])],
        misclassified=[training_pb2.Misclassified(text="还行吧", label="pos", predicted="neg", score=0.25)],
        phase_seconds={"segmenting": 1.25, "evaluating": 0.5},
        statistics=training_pb2.DatasetStatistics(documents=20, train_documents=15, test_documents=5, tokens=300, vocabulary=120, test_oov_share=0.125),
        trials=[training_pb2.Trial(number=1, score=0.8, score_std=0.01, seconds=2, best=True, changes=struct_pb2.Struct(fields={"top_k": struct_pb2.Value(number_value=500)}))],
    )  # fmt: skip
    report.config.features.top_k = 500
    lines = cli.report_text(report).splitlines()
    assert lines[:2] == ["evaluation  3-fold cross-validation", "accuracy 0.9000   macro F1 0.8500   weighted F1 0.8800"]
    assert "  neg       0.8000  0.9000  0.8500       10" in lines
    assert lines[lines.index("confusion matrix: true label (rows) by predicted label (columns)") + 1 :][:3] == [
        "       neg  pos", "  neg    9    1", "  pos    2    8"
    ]  # fmt: skip
    assert "  pos    好(1.5)" in lines and "  pos   neg        0.250  还行吧" in lines
    assert lines[lines.index("time per phase") + 2 :][:3] == ["  segmenting     1.25", "  evaluating     0.50", "  (all)          1.75"]
    assert "  300 terms, vocabulary 120; test terms never seen in training: 12.50%" in lines
    assert "  features      top_k=500" in lines and "  segmenter     (defaults)" in lines
    assert "      1  *     0.8000  0.0100      2.0  top_k=500" in lines
