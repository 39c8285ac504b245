import asyncio
import hashlib
import importlib.metadata
import json
import subprocess
from collections import Counter
from pathlib import Path

import jieba
import pytest
from google.protobuf import json_format

from fenlei.classifier.core import Algorithm
from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.features.core import Selection
from fenlei.preprocessor.core import PreprocessConfig, read_stopwords
from fenlei.runtime import artifacts
from fenlei.runtime.models import ModelStore
from fenlei.training import lineage as lineage_module
from fenlei.training.core import (
    Corpus,
    CorpusStream,
    HeldOut,
    Progress,
    RegisteredVersion,
    TrainingSpec,
    evaluate,
    read_corpus,
    stratified_folds,
    stratified_split,
    train,
)
from fenlei.training.lineage import code_version, corpus_sha256, stopwords_sha256
from fenlei.training.report import Predicted
from fenlei.training.tuning import SearchSpace
from fenlei.v1 import classifier_pb2, segmenter_pb2, training_pb2


def test_reads_tab_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("好看的电影\tpos\n\n难看\tneg\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text('review,stars\n"好,看",5\n难看,1\n', encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"t": "好看", "y": 1}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_corpus(tmp_path / "a.txt") == Corpus(["好看的电影", "难看"], ["pos", "neg"])
    assert read_corpus(tmp_path / "b.csv", "review", "stars") == Corpus(["好,看", "难看"], ["5", "1"])
    assert read_corpus(tmp_path / "c.jsonl", "t", "y") == Corpus(["好看"], ["1"])
    assert read_corpus(tmp_path / "a.txt").source == str((tmp_path / "a.txt").resolve())  # the lineage's source


def test_label_names_map_indices(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("股市大涨\t1\n球赛\t0\n", encoding="utf-8")
    assert read_corpus(tmp_path / "a.txt", label_names=["sports", "stocks"]).labels == ["stocks", "sports"]
    with pytest.raises(InvalidInput, match="not an index"):
        read_corpus(tmp_path / "a.txt", label_names=["sports"])


def test_bad_corpora_are_explained(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"bad.txt:1: expected text<TAB>label"):
        read_corpus(tmp_path / "bad.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no column"):
        read_corpus(tmp_path / "bad.csv")
    with pytest.raises(InvalidInput, match="no corpus file"):
        read_corpus(tmp_path / "missing.txt")


def test_stratified_split_is_seeded_and_keeps_proportions() -> None:
    corpus = Corpus([f"t{i}" for i in range(100)], ["a"] * 80 + ["b"] * 20)
    train, test = stratified_split(corpus, 0.25, seed=1)
    assert Counter(test.labels) == {"a": 20, "b": 5}
    assert sorted(train.texts + test.texts) == sorted(corpus.texts)
    assert stratified_split(corpus, 0.25, seed=1) == (train, test)
    assert stratified_split(corpus, 0.25, seed=2)[1] != test


def test_evaluate_reports_per_class() -> None:
    accuracy, macro_f1, per_class = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert accuracy == 0.75
    assert per_class["a"]["recall"] == 0.5 and per_class["b"]["precision"] == pytest.approx(2 / 3)
    assert 0 < macro_f1 < 1


class FakeStages:
    """Stages that write their parts where the services would, and check what the store shows meanwhile.
    A document's terms are its characters; it is predicted 好 when it has the character 好, explained by it."""

    def __init__(self, store: ModelStore, fail_in_predict: bool = False) -> None:
        self.store, self.fail_in_predict = store, fail_in_predict
        self.drafts: set[str] = set()
        self.fitted: dict[str, list[str]] = {}  # draft → the documents its classifier learned from, every pass
        self.predicted: dict[str, list[str]] = {}  # draft → the documents it predicted
        self.options: dict[str, dict] = {}  # draft → its classifier's options; a linear SVM knows that 不好 is 差

    async def terms(self, name, version, texts):
        self.drafts.add(version)
        return [list(text) for text in texts]

    async def fit_features(self, name, version, batches, options):
        vocabulary = sorted({term async for terms, _ in batches for document in terms for term in document})
        artifacts.write_json(self.store.writable_part(name, version, "features"), "features", {"terms": vocabulary})
        return 3

    async def fit_classifier(self, name, version, examples, labels, dimension, options):
        self.fitted[version] = ["".join(document) async for terms, _ in examples for document in terms]
        self.options[version] = options
        artifacts.write_json(self.store.writable_part(name, version, "classifier"), "classifier", {"labels": list(labels)})

    async def predict(self, name, version, terms, explain=0):
        # mid-training, the draft is no version: nothing serves it but by its id
        assert self.store.versions(name) == [] and self.store.incomplete(name) == []
        with pytest.raises(NotFound):
            self.store.resolve(name)
        if self.fail_in_predict:
            raise RuntimeError("a stage went away")
        self.predicted.setdefault(version, []).extend("".join(ts) for ts in terms)
        if self.options[version].get("algorithm") == "ALGORITHM_LINEAR_SVM":
            terms = [[t for t in ts if t != "好"] if "不" in ts else ts for ts in terms]
        return [
            Predicted("好", 2.0, (("好", 1.5), ("看", 0.5))[:explain]) if "好" in ts else Predicted("差", 1.0, (("差", 1.0),))
            for ts in terms
        ]


class FakeRegistry:
    """Records what training registers; checks the draft is whole when it does; refuses when told to."""

    def __init__(self, store: ModelStore, refuse: bool = False) -> None:
        self.store, self.refuse = store, refuse
        self.calls: list[dict] = []

    async def register(self, name, draft, lineage, metrics, labels, tags, report):
        files = sorted(str(p.relative_to(self.store.draft_dir(name, draft))) for p in self.store.draft_dir(name, draft).rglob("*.json"))
        self.calls.append(
            dict(name=name, draft=draft, lineage=lineage, metrics=metrics, labels=labels, tags=tags, files=files, report=report)
        )
        if self.refuse:
            raise FailedPrecondition("the registry refuses this one")
        return RegisteredVersion(f"v{len(self.calls)}", "alice", "ab" * 32)


CORPUS = Corpus(["好看", "很好", "好极了", "太差", "差劲", "很差"], ["好", "好", "好", "差", "差", "差"], "reviews.txt")
TEST = Corpus(["好", "差"], ["好", "差"], "test.txt")


def test_training_registers_the_evaluated_draft_once(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages, registry = FakeStages(store), FakeRegistry(store)
    spec = TrainingSpec(name="reviews", tags={"team": "search"})
    report = asyncio.run(train(store, spec, stages, registry, CORPUS, CORPUS))
    assert (report.version, report.accuracy) == ("v1", 1.0)
    [draft_id] = stages.drafts
    [call] = registry.calls
    assert (call["name"], call["draft"], call["labels"], call["tags"]) == ("reviews", draft_id, ["好", "差"], {"team": "search"})
    assert call["files"] == [
        "classifier/classifier.json",
        "features/features.json",
        "preprocessor/preprocessor.json",
        "segmenter/segmenter.json",
    ]
    assert call["metrics"] == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "per_class": {label: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3} for label in ("好", "差")},
        "train_documents": 6,
        "test_documents": 6,
        "dimension": 3,
        "train_seconds": report.seconds,
    }
    # the registry took what it needed; the draft is gone either way, and nothing was published behind its back
    assert not store.draft_dir("reviews", draft_id).exists() and store.versions("reviews") == []


def test_lineage_records_the_data_the_configuration_and_the_code(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    registry = FakeRegistry(store)
    preprocess = PreprocessConfig(extra_stopwords=("很",))
    spec = TrainingSpec(name="reviews", preprocess=preprocess, features={"min_df": 2}, classifier={"seed": 7}, test_fraction=0.5, seed=7)
    asyncio.run(train(store, spec, FakeStages(store), registry, CORPUS))
    lineage = registry.calls[0]["lineage"]
    # the corpus as read, not the part the split left for training
    assert (lineage["dataset_sha256"], lineage["dataset_documents"], lineage["dataset_source"]) == (
        corpus_sha256(CORPUS.texts, CORPUS.labels), 6, "reviews.txt"
    )  # fmt: skip
    assert lineage["test_dataset_sha256"] == ""
    assert lineage["config"] == {
        "segmenter": spec.segment.to_json(),
        "preprocessor": preprocess.to_json(),
        "features": {"min_df": 2},
        "classifier": {"seed": 7},
        "training": {"test_fraction": 0.5, "seed": 7, "evaluated_on": "held-out split", "test_source": ""},
    }
    assert lineage["config"]["preprocessor"]["extra_stopwords"] == ["很"]
    with jieba.Tokenizer().get_dict_file() as handle:
        assert lineage["dictionary_sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert lineage["stopwords_sha256"] == stopwords_sha256(preprocess) != stopwords_sha256(PreprocessConfig())
    assert lineage["code_version"] == code_version() and code_version().startswith(importlib.metadata.version("fenlei"))

    asyncio.run(train(store, TrainingSpec(name="reviews"), FakeStages(store), registry, CORPUS, TEST))
    second = registry.calls[1]["lineage"]
    assert second["test_dataset_sha256"] == corpus_sha256(TEST.texts, TEST.labels) != second["dataset_sha256"]
    assert (second["config"]["training"]["evaluated_on"], second["config"]["training"]["test_source"]) == ("test corpus", "test.txt")


def test_corpus_checksum_covers_texts_labels_and_order() -> None:
    digest = corpus_sha256(["好看", "难看"], ["pos", "neg"])
    assert digest == hashlib.sha256('["好看","pos"]\n["难看","neg"]\n'.encode()).hexdigest()
    assert len({digest, corpus_sha256(["难看", "好看"], ["neg", "pos"]), corpus_sha256(["好看", "难看"], ["pos", "pos"])}) == 3
    # a text holding a tab or a quote cannot pass for another split of the same characters
    assert corpus_sha256(["a\tb"], ["c"]) != corpus_sha256(["a"], ["b\tc"])


def test_stopwords_checksum_is_of_the_list_in_effect() -> None:
    built_in = read_stopwords()
    assert stopwords_sha256(PreprocessConfig()) == hashlib.sha256("".join(f"{w}\n" for w in sorted(built_in)).encode()).hexdigest()
    assert stopwords_sha256(PreprocessConfig(remove_stopwords=False)) == hashlib.sha256(b"").hexdigest()
    assert (
        stopwords_sha256(PreprocessConfig(remove_stopwords=False, extra_stopwords=("很",))) == hashlib.sha256("很\n".encode()).hexdigest()
    )


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_names_the_commit_of_a_checkout_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = importlib.metadata.version("fenlei")
    package = tmp_path / "repo" / "fenlei"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(lineage_module, "PACKAGE", package)

    def current() -> str:
        code_version.cache_clear()
        return code_version()

    try:
        assert current() == version  # no repository at all
        _git(tmp_path / "repo", "init", "-q")
        assert current() == version  # a repository that does not track fenlei (an install inside a project)
        _git(tmp_path / "repo", "add", "fenlei/__init__.py")
        _git(tmp_path / "repo", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
        commit = _git(tmp_path / "repo", "rev-parse", "HEAD")
        assert current() == f"{version}+git.{commit}"
        (package / "__init__.py").write_text("changed = True\n")
        assert current() == f"{version}+git.{commit}.dirty"
    finally:
        code_version.cache_clear()


def test_a_refused_registration_discards_the_draft(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    registry = FakeRegistry(store, refuse=True)
    with pytest.raises(FailedPrecondition, match="refuses"):
        asyncio.run(train(store, TrainingSpec(name="reviews"), FakeStages(store), registry, CORPUS, CORPUS))
    assert len(registry.calls) == 1
    assert store.versions("reviews") == [] and store.incomplete("reviews") == []
    assert list((tmp_path / "models" / "reviews" / ".drafts").iterdir()) == []


def test_a_failed_training_leaves_nothing_and_registers_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    registry = FakeRegistry(store)
    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(train(store, TrainingSpec(name="reviews"), FakeStages(store, fail_in_predict=True), registry, CORPUS, CORPUS))
    assert registry.calls == []
    assert store.versions("reviews") == [] and store.incomplete("reviews") == []
    assert list((tmp_path / "models" / "reviews" / ".drafts").iterdir()) == []


# 好 in 不好 misleads the fake classifier: one mistake of each kind of evaluation.
MIXED = Corpus(
    ["好看", "很好", "好极了", "真好", "不好", "太差", "差劲", "很差", "差极了", "真差"],
    ["好", "好", "好", "好", "差", "差", "差", "差", "差", "差"],
    "mixed.txt",
)


def test_the_report_holds_every_part_of_the_contract_and_goes_to_the_registry(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    registry = FakeRegistry(store)
    test = Corpus(["好看", "不好", "太差", "差呀"], ["好", "差", "差", "差"], "test.txt")
    report = asyncio.run(train(store, TrainingSpec(name="reviews"), FakeStages(store), registry, MIXED, test))
    training = report.training
    assert registry.calls[0]["report"] is training
    json_format.ParseDict(training, training_pb2.TrainingReport())  # by the contract's field names, nothing else
    assert (training["accuracy"], training["labels"]) == (0.75, ["好", "差"])
    assert training["confusion"] == [{"counts": [1, 0]}, {"counts": [1, 2]}]
    assert training["weighted_f1"] == pytest.approx((1 * 2 / 3 + 3 * 0.8) / 4) != training["macro_f1"]
    assert training["classes"][1] == {
        "label": "差",
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert training["misclassified"] == [{"text": "不好", "label": "差", "predicted": "好", "score": 2.0}]
    # the explanations of the right predictions, summed per class: a mean per right document
    assert training["informative_features"] == [
        {"label": "好", "features": [{"feature": "好", "weight": 1.5}, {"feature": "看", "weight": 0.5}]},
        {"label": "差", "features": [{"feature": "差", "weight": 1.0}]},
    ]
    # characters of the corpus as read; tokens and vocabulary of the training split; 呀 is the one unseen test term of 8
    assert training["statistics"] == {
        "documents": 10,
        "characters": sum(map(len, MIXED.texts)),
        "tokens": sum(map(len, MIXED.texts)),
        "vocabulary": len(set("".join(MIXED.texts))),
        "train_documents": 10,
        "test_documents": 4,
        "test_oov_share": 1 / 8,
    }
    assert set(training["phase_seconds"]) == {"segmenting", "fitting features", "fitting classifier", "evaluating"}
    assert training["evaluation"] == "test corpus test.txt" and training["trials"] == []
    # the whole configuration, defaults included, as the contract spells it
    config = json_format.ParseDict(training["config"], training_pb2.PipelineConfig())
    assert config.segmenter.mode == segmenter_pb2.SEGMENT_MODE_ACCURATE and config.segmenter.feature_tags
    assert (config.preprocessor.char_ngrams.min, config.preprocessor.char_ngrams.max) == PreprocessConfig().char_ngrams
    assert config.classifier.algorithm == classifier_pb2.ALGORITHM_ENSEMBLE and config.features.min_df == 1  # the defaults it used
    held_out = asyncio.run(train(store, TrainingSpec(name="reviews", test_fraction=0.5), FakeStages(store), registry, MIXED))
    assert held_out.training["evaluation"] == "held-out 50%"
    assert (held_out.training["statistics"]["train_documents"], held_out.training["statistics"]["test_documents"]) == (5, 5)


def test_k_fold_scores_throwaway_drafts_out_of_fold_then_fits_the_version_on_everything(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages, registry = FakeStages(store), FakeRegistry(store)
    report = asyncio.run(train(store, TrainingSpec(name="reviews", folds=5), stages, registry, MIXED))
    [call] = registry.calls
    version_draft = call["draft"]
    folds = set(stages.fitted) - {version_draft}
    assert len(folds) == 5 and all(not store.draft_dir("reviews", draft).exists() for draft in folds)
    # each fold's classifier learned from the other folds and predicted its own: every document once, by a model that never saw it
    assert sorted(document for draft in folds for document in stages.predicted[draft]) == sorted(MIXED.texts)
    for draft in folds:
        assert sorted(stages.fitted[draft] + stages.predicted[draft]) == sorted(MIXED.texts)
    assert sorted(stages.fitted[version_draft]) == sorted(MIXED.texts) and version_draft not in stages.predicted
    training = report.training
    assert training["evaluation"] == "5-fold cross-validation"
    assert (training["accuracy"], training["misclassified"][0]["text"]) == (0.9, "不好")
    assert (training["statistics"]["train_documents"], training["statistics"]["test_documents"]) == (10, 10)
    assert 0 < training["statistics"]["test_oov_share"] < 1  # held-out folds hold characters the others lack
    assert "cross-validating" in training["phase_seconds"]
    assert call["metrics"]["test_documents"] == 10 and call["lineage"]["test_dataset_sha256"] == ""


def test_folds_are_stratified_seeded_and_checked() -> None:
    labels = ["a"] * 6 + ["b"] * 3
    folds = stratified_folds(labels, 3, seed=1)
    assert [Counter(label for label, fold in zip(labels, folds) if fold == f) for f in range(3)] == [{"a": 2, "b": 1}] * 3
    assert stratified_folds(labels, 3, seed=1) == folds != stratified_folds(labels, 3, seed=2)
    with pytest.raises(InvalidInput, match="2 to 9 folds"):
        stratified_folds(labels, 1, seed=1)


def test_progress_names_each_phase_with_documents_done_of_the_total(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages, seen = FakeStages(store), []
    spec = TrainingSpec(name="reviews", classifier={"algorithm": "ALGORITHM_SGD", "epochs": 3})
    asyncio.run(train(store, spec, stages, FakeRegistry(store), MIXED, TEST, progress=seen.append))
    assert all(isinstance(event, Progress) and event.elapsed_seconds >= 0 for event in seen)
    ends = [(event.phase, event.documents_done, event.documents_total) for event in seen if event.documents_done == event.documents_total]
    assert ends == [
        ("segmenting", 10, 10),
        ("fitting features", 10, 10),
        ("fitting classifier", 30, 30),  # SGD: an epoch is a pass over the data
        ("segmenting the test documents", 2, 2),
        ("evaluating", 2, 2),
        ("registering", 0, 0),
    ]
    assert seen[0] == Progress("segmenting", 0, 10, seen[0].elapsed_seconds, 0.0)
    [draft] = stages.fitted
    assert sorted(stages.fitted[draft]) == sorted(MIXED.texts * 3)


def test_tuning_cross_validates_the_training_split_then_trains_the_best_trial(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages, registry, seen = FakeStages(store), FakeRegistry(store), []
    space = SearchSpace(
        selections=(Selection.NONE,),
        word_ngrams=((1, 1),),
        char_ngrams=((1, 2),),
        algorithms=(Algorithm.ENSEMBLE, Algorithm.LINEAR_SVM),
        regularization=(0.0,),
        folds=2,
    )
    twice = Corpus(MIXED.texts * 2, MIXED.labels * 2, "mixed.txt")
    report = asyncio.run(train(store, TrainingSpec(name="reviews", tuning=space), stages, registry, twice, TEST, progress=seen.append))
    trials = report.training["trials"]
    assert [(t["number"], t["changes"]["classifier"]["algorithm"], t["best"]) for t in trials] == [
        (1, "ALGORITHM_ENSEMBLE", False),
        (2, "ALGORITHM_LINEAR_SVM", True),
    ]
    assert trials[1]["score"] == 1.0 > trials[0]["score"] and all(t["seconds"] >= 0 for t in trials)
    # the version is the best trial's configuration, fitted on the whole training split, and says so
    [call] = registry.calls
    assert stages.options[call["draft"]]["algorithm"] == "ALGORITHM_LINEAR_SVM" == call["lineage"]["config"]["classifier"]["algorithm"]
    assert report.training["config"]["classifier"]["algorithm"] == "ALGORITHM_LINEAR_SVM"
    assert sorted(stages.fitted[call["draft"]]) == sorted(twice.texts)
    # 2 trials × 2 folds in throwaway drafts, on the training split only: the test corpus never seen before the end
    folds = set(stages.fitted) - {call["draft"]}
    assert len(folds) == 4 and all(not store.draft_dir("reviews", draft).exists() for draft in folds)
    assert all(document in twice.texts for draft in folds for document in stages.predicted[draft])
    assert {(event.trial, event.trials) for event in seen if event.phase.endswith("fold 2 of 2)")} == {(1, 2), (2, 2)}
    assert "tuning" in report.training["phase_seconds"]
    json_format.ParseDict(report.training, training_pb2.TrainingReport())


def stream_of(corpus: Corpus, batch: int) -> tuple[CorpusStream, list[int]]:
    """The corpus as a stream of batches; the list counts the passes over it."""
    passes = [0]

    async def read():
        passes[0] += 1
        for start in range(0, len(corpus.texts), batch):
            yield corpus.subset(range(start, min(start + batch, len(corpus.texts))))

    return CorpusStream(read, len(corpus.texts), corpus.sha256, corpus.source), passes


SGD = {"algorithm": "ALGORITHM_SGD", "epochs": 2}


def test_a_streamed_corpus_is_read_again_on_every_pass_and_never_held(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages, registry = FakeStages(store), FakeRegistry(store)
    stream, passes = stream_of(MIXED, batch=3)
    report = asyncio.run(train(store, TrainingSpec(name="reviews", classifier=SGD, test_fraction=0.4), stages, registry, stream))
    assert passes == [4]  # the features' pass, an epoch each for SGD, the evaluation's
    [call] = registry.calls
    learned, evaluated = stages.fitted[call["draft"]], stages.predicted[call["draft"]]
    assert learned[: len(learned) // 2] == learned[len(learned) // 2 :]  # the same documents each epoch
    trained = learned[: len(learned) // 2]
    assert sorted(trained + evaluated) == sorted(MIXED.texts)  # held out from the stream, the same split every pass
    assert Counter(MIXED.labels[MIXED.texts.index(text)] for text in evaluated) == {"好": 2, "差": 2}  # stratified: 40% of each
    stats = report.training["statistics"]
    assert (stats["documents"], stats["train_documents"], stats["test_documents"]) == (10, 6, 4)
    assert stats["characters"] == sum(map(len, MIXED.texts)) and stats["tokens"] == sum(map(len, trained))
    assert report.training["evaluation"] == "held-out 40%" and report.predictions == []
    assert call["lineage"]["dataset_sha256"] == corpus_sha256(MIXED.texts, MIXED.labels) and call["lineage"]["dataset_documents"] == 10
    json_format.ParseDict(report.training, training_pb2.TrainingReport())

    test_stream, test_passes = stream_of(TEST, batch=1)
    tested = asyncio.run(train(store, TrainingSpec(name="reviews", classifier=SGD), FakeStages(store), registry, stream, test_stream))
    assert test_passes == [1] and tested.training["statistics"]["test_documents"] == 2 and tested.accuracy == 1.0
    assert registry.calls[1]["lineage"]["test_dataset_sha256"] == corpus_sha256(TEST.texts, TEST.labels)


def test_a_streamed_corpus_refuses_what_would_hold_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stream, passes = stream_of(MIXED, batch=3)
    for spec, refusal in (
        (TrainingSpec(name="reviews"), "SGD classifier only"),
        (TrainingSpec(name="reviews", classifier=SGD, folds=3), "k-fold and tuning need it in memory"),
    ):
        with pytest.raises(InvalidInput, match=refusal):
            asyncio.run(train(store, spec, FakeStages(store), FakeRegistry(store), stream))
    with pytest.raises(InvalidInput, match="stream the test corpus too"):
        asyncio.run(train(store, TrainingSpec(name="reviews", classifier=SGD), FakeStages(store), FakeRegistry(store), stream, TEST))
    assert passes == [0]


def test_held_out_from_a_stream_is_stratified_seeded_and_the_same_each_pass() -> None:
    labels = ["a"] * 100 + ["b"] * 30

    def held(seed: int) -> list[bool]:
        split = HeldOut(0.2, seed)
        return [split.held(label) for label in labels]

    assert (sum(held(1)[:100]), sum(held(1)[100:])) == (20, 6)
    assert held(1) == held(1) != held(2)
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        HeldOut(1.0, 0)
