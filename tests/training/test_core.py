import asyncio
import hashlib
import importlib.metadata
import json
import subprocess
from collections import Counter
from pathlib import Path

import jieba
import pytest

from fenlei.errors import FailedPrecondition, InvalidInput, NotFound
from fenlei.preprocessor.core import PreprocessConfig, read_stopwords
from fenlei.runtime import artifacts
from fenlei.runtime.models import ModelStore
from fenlei.training import lineage as lineage_module
from fenlei.training.core import Corpus, RegisteredVersion, TrainingSpec, evaluate, read_corpus, stratified_split, train
from fenlei.training.lineage import code_version, corpus_sha256, stopwords_sha256


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
    """Stages that write their parts where the services would, and check what the store shows meanwhile."""

    def __init__(self, store: ModelStore, fail_in_predict: bool = False) -> None:
        self.store, self.fail_in_predict = store, fail_in_predict
        self.drafts: set[str] = set()

    async def terms(self, name, version, texts):
        self.drafts.add(version)
        return [list(text) for text in texts]

    async def fit_features(self, name, version, terms, labels, options):
        vocabulary = sorted({term for document in terms for term in document})
        artifacts.write_json(self.store.writable_part(name, version, "features"), "features", {"terms": vocabulary})
        return 3

    async def fit_classifier(self, name, version, terms, labels, dimension, options):
        artifacts.write_json(self.store.writable_part(name, version, "classifier"), "classifier", {"labels": sorted(set(labels))})

    async def predict(self, name, version, terms):
        # mid-training, the draft is no version: nothing serves it but by its id
        assert self.store.versions(name) == [] and self.store.incomplete(name) == []
        with pytest.raises(NotFound):
            self.store.resolve(name)
        if self.fail_in_predict:
            raise RuntimeError("a stage went away")
        return ["好" if "好" in ts else "差" for ts in terms]


class FakeRegistry:
    """Records what training registers; checks the draft is whole when it does; refuses when told to."""

    def __init__(self, store: ModelStore, refuse: bool = False) -> None:
        self.store, self.refuse = store, refuse
        self.calls: list[dict] = []

    async def register(self, name, draft, lineage, metrics, labels, tags):
        files = sorted(str(p.relative_to(self.store.draft_dir(name, draft))) for p in self.store.draft_dir(name, draft).rglob("*.json"))
        self.calls.append(dict(name=name, draft=draft, lineage=lineage, metrics=metrics, labels=labels, tags=tags, files=files))
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
    printed = report.format()
    assert "model reviews v1: trained on 6 documents" in printed
    assert (
        f"registered reviews v1 by alice (digest {'ab' * 6})\n  from 6 documents of reviews.txt (sha256 {corpus_sha256(CORPUS.texts, CORPUS.labels)[:12]})"
        in printed
    )


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
