import json
from collections import Counter
from pathlib import Path

import pytest

from fenlei.errors import InvalidInput
from fenlei.training.core import Corpus, evaluate, read_corpus, stratified_split


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
