"""A training's full report, as plain data by the field names of fenlei.v1.TrainingReport:
what the jobs service answers with and the registry keeps with the version. Built from the
evaluation's predictions, so held-out, test-corpus, k-fold and streamed evaluations report alike."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# How many mistakes a report shows, and how many features per class.
MISCLASSIFIED = 20
INFORMATIVE = 15


@dataclass(frozen=True)
class Predicted:
    label: str
    score: float
    # The features that pushed this document hardest towards `label`: (name, value × weight).
    explanation: tuple[tuple[str, float], ...] = ()


class Evaluation:
    """An evaluation accumulated batch by batch, so a streamed test split is never held whole:
    accuracy, macro and weighted F1, per class and the confusion matrix (labels sorted), the
    most informative features per class and a seeded sample of the mistakes."""

    def __init__(self, seed: int = 0) -> None:
        self.confusion: Counter[tuple[str, str]] = Counter()
        # Per class, the classifier's explanations summed over its right predictions: the
        # weights the model used on real text, not the largest coefficients of rare terms.
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.right: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self.mistakes = 0
        self.sample: list[tuple[int, dict[str, Any]]] = []  # (document number, mistake): a reservoir
        self.documents = 0

    def add(self, texts: Sequence[str], truth: Sequence[str], predicted: Sequence[Predicted]) -> None:
        for text, true, prediction in zip(texts, truth, predicted, strict=True):
            self.confusion[true, prediction.label] += 1
            if prediction.label == true:
                self.right[true] += 1
                for feature, contribution in prediction.explanation:
                    self.sums[true][feature] += contribution
            else:
                mistake = (self.documents, {"text": text, "label": true, "predicted": prediction.label, "score": prediction.score})
                self.mistakes += 1
                if len(self.sample) < MISCLASSIFIED:
                    self.sample.append(mistake)
                elif (slot := self.rng.randrange(self.mistakes)) < MISCLASSIFIED:
                    self.sample[slot] = mistake
            self.documents += 1

    def report(self, labels: Sequence[str] = ()) -> dict[str, Any]:
        """labels: those of the training, which the matrix shows even when never seen here."""
        ordered = sorted({*labels, *(label for pair in self.confusion for label in pair)})
        matrix = np.array([[self.confusion[true, guess] for guess in ordered] for true in ordered], dtype=np.int64)
        right, support, guessed = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(guessed > 0, right / guessed, 0.0)
            recall = np.where(support > 0, right / support, 0.0)
            f1 = np.where(support + guessed > 0, 2 * right / (support + guessed), 0.0)
        total = int(support.sum())
        return {
            "accuracy": float(right.sum() / total) if total else 0.0,
            "macro_f1": float(f1.mean()) if len(ordered) else 0.0,
            "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
            "classes": [
                {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                for label, p, r, f, n in zip(ordered, precision, recall, f1, support, strict=True)
            ],
            "labels": ordered,
            "confusion": [{"counts": [int(count) for count in row]} for row in matrix],
            "informative_features": [
                {
                    "label": label,
                    "features": [
                        {"feature": feature, "weight": summed / self.right[label]}
                        for feature, summed in sorted(self.sums[label].items(), key=lambda item: (-item[1], item[0]))[:INFORMATIVE]
                    ],
                }
                for label in ordered
                if self.sums[label]
            ],
            "misclassified": [mistake for _, mistake in sorted(self.sample, key=lambda item: item[0])],
        }


def statistics(
    texts: Sequence[str], train_terms: Sequence[Sequence[str]], test_terms: Sequence[Sequence[str]], *, documents: int
) -> dict[str, Any]:
    """Dataset statistics: documents and characters of the corpus as read (texts), tokens and
    vocabulary of the training split's terms, and the share of the test split's terms the
    training split never saw."""
    vocabulary = {term for document in train_terms for term in document}
    test_tokens = sum(len(document) for document in test_terms)
    unseen = sum(term not in vocabulary for document in test_terms for term in document)
    return {
        "documents": documents,
        "characters": sum(len(text) for text in texts),
        "tokens": sum(len(document) for document in train_terms),
        "vocabulary": len(vocabulary),
        "train_documents": len(train_terms),
        "test_documents": len(test_terms),
        "test_oov_share": unseen / test_tokens if test_tokens else 0.0,
    }


def metrics(report: Mapping[str, Any], *, dimension: int, seconds: float) -> dict[str, Any]:
    """The report's summary as the registry indexes it (fenlei.v1.Metrics, by field name)."""
    stats = report["statistics"]
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class": {row["label"]: {key: row[key] for key in ("precision", "recall", "f1", "support")} for row in report["classes"]},
        "train_documents": stats["train_documents"],
        "test_documents": stats["test_documents"],
        "dimension": dimension,
        "train_seconds": seconds,
    }
