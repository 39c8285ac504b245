"""Training: read a labelled corpus, split it, stream it through the stages to fit
features and classifier, evaluate on the held-out part and register the draft as a
model version, with its lineage and metrics.

The stages and the registry are reached through the `Stages` and `Registry` protocols
(implemented over gRPC in fenlei.training.stages and fenlei.training.register), so this
module holds no transport code.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sklearn.metrics import accuracy_score, classification_report, f1_score

from fenlei.errors import InvalidInput
from fenlei.preprocessor.core import PreprocessConfig
from fenlei.runtime.models import ModelStore, check_name
from fenlei.segmenter.core import SegmentConfig
from fenlei.training import lineage


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


# Word classes as features (the preprocessor's tag_terms): see PreprocessConfig.
DEFAULT_SEGMENT = SegmentConfig(feature_tags=True)


@dataclass
class TrainingSpec:
    name: str
    segment: SegmentConfig = DEFAULT_SEGMENT
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # Features and classifier options travel to their services as given (protobuf
    # field values by name, e.g. {"selection": "FEATURE_SELECTION_CHI2", "top_k": 20000}).
    features: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.2
    seed: int = 0
    # The registered version's tags.
    tags: Mapping[str, str] = field(default_factory=dict)


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
    train_documents: int
    test_documents: int
    dimension: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    seconds: float
    predictions: list[str]
    lineage: dict[str, Any] = field(default_factory=dict)
    registered: RegisteredVersion | None = None

    def metrics(self) -> dict[str, Any]:
        """The evaluation as the registry keeps it (fenlei.v1.Metrics, by its field names)."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {
                label: {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"], "support": int(row["support"])}
                for label, row in self.per_class.items()
            },
            "train_documents": self.train_documents,
            "test_documents": self.test_documents,
            "dimension": self.dimension,
            "train_seconds": self.seconds,
        }

    def format(self) -> str:
        lines = [
            f"model {self.name} {self.version}: trained on {self.train_documents} documents, "
            f"evaluated on {self.test_documents}, {self.dimension} features, {self.seconds:.1f} s",
            f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
        ]
        for label, row in self.per_class.items():
            lines.append(f"{label:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1-score']:>10.3f}{int(row['support']):>10}")
        lines.append(f"accuracy {self.accuracy:.4f}   macro F1 {self.macro_f1:.4f}")
        if self.registered is not None:
            data = self.lineage
            lines.append(f"registered {self.name} {self.version} by {self.registered.created_by} (digest {self.registered.digest[:12]})")
            lines.append(
                f"  from {data['dataset_documents']} documents of {data['dataset_source'] or 'an unnamed corpus'} "
                f"(sha256 {data['dataset_sha256'][:12]}), fenlei {data['code_version']}"
            )
        return "\n".join(lines)


class Stages(Protocol):
    async def terms(self, name: str, version: str, texts: Sequence[str]) -> list[list[str]]: ...

    async def fit_features(
        self, name: str, version: str, terms: Sequence[Sequence[str]], labels: Sequence[str], options: dict[str, Any]
    ) -> int: ...

    async def fit_classifier(
        self, name: str, version: str, terms: Sequence[Sequence[str]], labels: Sequence[str], dimension: int, options: dict[str, Any]
    ) -> None: ...

    async def predict(self, name: str, version: str, terms: Sequence[Sequence[str]]) -> list[str]: ...


class Registry(Protocol):
    async def register(
        self,
        name: str,
        draft: str,
        lineage: dict[str, Any],
        metrics: dict[str, Any],
        labels: Sequence[str],
        tags: Mapping[str, str],
    ) -> RegisteredVersion:
        """Makes the draft the model's next version; raises when the registry refuses it."""
        ...


def evaluate(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, dict[str, dict[str, float]]]:
    per_class = classification_report(truth, predicted, output_dict=True, zero_division=0)
    classes = {label: row for label, row in per_class.items() if label not in ("accuracy", "macro avg", "weighted avg")}
    return float(accuracy_score(truth, predicted)), float(f1_score(truth, predicted, average="macro", zero_division=0)), classes


async def train(
    store: ModelStore, spec: TrainingSpec, stages: Stages, registry: Registry, corpus: Corpus, test: Corpus | None = None
) -> Report:
    """Fits and evaluates a draft of spec.name, then registers it as the next version with
    its lineage and metrics, only when every step succeeded. A draft that fails, or that the
    registry refuses, is removed; one whose trainer died is removed by the next training of
    the model."""
    check_name(spec.name)
    started = time.monotonic()
    origin = lineage.lineage(spec, corpus, test)  # of the corpus as read, before any split
    if test is None:
        corpus, test = stratified_split(corpus, spec.test_fraction, spec.seed)
    if len(set(corpus.labels)) < 2:
        raise InvalidInput("training needs at least two classes")
    with store.create_draft(spec.name) as draft:
        spec.segment.save(draft.part("segmenter"))
        spec.preprocess.save(draft.part("preprocessor"))
        train_terms = await stages.terms(spec.name, draft.id, corpus.texts)
        dimension = await stages.fit_features(spec.name, draft.id, train_terms, corpus.labels, spec.features)
        await stages.fit_classifier(spec.name, draft.id, train_terms, corpus.labels, dimension, spec.classifier)
        predicted = await stages.predict(spec.name, draft.id, await stages.terms(spec.name, draft.id, test.texts))
        accuracy, macro_f1, per_class = evaluate(test.labels, predicted)
        report = Report(
            spec.name,
            "",
            len(corpus.texts),
            len(test.texts),
            dimension,
            accuracy,
            macro_f1,
            per_class,
            time.monotonic() - started,
            predicted,
            origin,
        )
        # The registry takes the draft's files into its store; what is left of the draft
        # (all of it, when the registry refuses) goes when the draft closes.
        report.registered = await registry.register(
            spec.name, draft.id, origin, report.metrics(), sorted(set(corpus.labels)), dict(spec.tags)
        )
        report.version = report.registered.version
    return report
