import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from fenlei.errors import InvalidInput, NotFound
from fenlei.runtime import artifacts
from fenlei.runtime.models import ModelStore
from fenlei.training.core import Corpus, TrainingSpec, evaluate, read_corpus, stratified_split, train


def test_reads_tab_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("好看的电影\tpos\n\n难看\tneg\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text('review,stars\n"好,看",5\n难看,1\n', encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(json.dumps({"t": "好看", "y": 1}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert read_corpus(tmp_path / "a.txt") == Corpus(["好看的电影", "难看"], ["pos", "neg"])
    assert read_corpus(tmp_path / "b.csv", "review", "stars") == Corpus(["好,看", "难看"], ["5", "1"])
    assert read_corpus(tmp_path / "c.jsonl", "t", "y") == Corpus(["好看"], ["1"])


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


CORPUS = Corpus(["好看", "很好", "好极了", "太差", "差劲", "很差"], ["好", "好", "好", "差", "差", "差"])


def test_training_publishes_a_complete_version_only_at_the_end(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    stages = FakeStages(store)
    report = asyncio.run(train(store, TrainingSpec(name="reviews"), stages, CORPUS, CORPUS))
    assert (report.version, report.accuracy) == ("v1", 1.0)
    [draft_id] = stages.drafts
    assert draft_id.startswith("draft-") and not store.draft_dir("reviews", draft_id).exists()
    manifest = store.manifest("reviews", "v1")
    assert sorted(manifest["files"]) == [
        "classifier/classifier.json",
        "features/features.json",
        "preprocessor/preprocessor.json",
        "segmenter/segmenter.json",
    ]
    assert manifest["report"]["accuracy"] == 1.0 and manifest["labels"] == ["好", "差"]
    store.verify("reviews", "v1")


def test_a_failed_training_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(train(store, TrainingSpec(name="reviews"), FakeStages(store, fail_in_predict=True), CORPUS, CORPUS))
    assert store.versions("reviews") == [] and store.incomplete("reviews") == []
    assert list((tmp_path / "models" / "reviews" / ".drafts").iterdir()) == []
