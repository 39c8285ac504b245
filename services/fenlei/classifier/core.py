"""Linear classifiers over feature vectors, fitted from a stream and kept as plain data.

Every algorithm is linear at prediction time, so a fitted model is `classes`, `coef`
(classes x dimension), `intercept` and a `scoring` rule that turns X @ coef.T + intercept
into scores:
- "softmax": probabilities (logistic regression, both naive Bayes, and every binary
  probabilistic model, whose single sklearn row w is stored as the rows -w/2, w/2 so that
  the softmax of the two is sklearn's sigmoid);
- "ovr_sigmoid": one-vs-rest sigmoids normalised to sum 1 (SGD with logistic loss);
- "decision": margins (SVM, ensemble); a binary SVM's row w is stored as -w, w.
scikit-learn fits the models; prediction is numpy/scipy only.

The default, ENSEMBLE, sums three standardised linear models: a linear SVM, an SVM on
naive-Bayes-weighted features (NBSVM, Wang & Manning 2012) and multinomial naive Bayes.
Their errors differ, and a sum of linear models is one linear model.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from fenlei.errors import Cancelled, InvalidInput, NotFound, quote_list
from fenlei.runtime import artifacts

# sklearn is imported where a model is fitted: a process that only serves models (the
# classifier service as it starts) is spared its second of imports.
if TYPE_CHECKING:
    from sklearn.linear_model import SGDClassifier


class Algorithm(enum.Enum):
    ENSEMBLE = "ensemble"
    COMPLEMENT_NB = "complement_nb"
    MULTINOMIAL_NB = "multinomial_nb"
    LOGISTIC_REGRESSION = "logistic_regression"
    LINEAR_SVM = "linear_svm"
    SGD = "sgd"


# Naive Bayes (alone or inside the ensemble) reads feature values as counts.
COUNTS_ONLY = frozenset({Algorithm.MULTINOMIAL_NB, Algorithm.COMPLEMENT_NB, Algorithm.ENSEMBLE})


# What regularization=0 means: C for the SVMs and logistic regression, alpha otherwise.
DEFAULT_REGULARIZATION = {
    Algorithm.ENSEMBLE: 1.0,
    Algorithm.COMPLEMENT_NB: 0.3,
    Algorithm.MULTINOMIAL_NB: 0.1,
    Algorithm.LOGISTIC_REGRESSION: 10.0,
    Algorithm.LINEAR_SVM: 1.0,
    Algorithm.SGD: 1e-5,
}
# The ensemble's naive Bayes smoothing, for L2-normalised TF-IDF inputs (a document adds
# about 1 to its class's feature mass, so an alpha of 1 would swamp it).
NBSVM_ALPHA = 0.1
ENSEMBLE_NB_ALPHA = 0.03
SCORINGS = ("softmax", "ovr_sigmoid", "decision")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ClassifierConfig:
    algorithm: Algorithm = Algorithm.ENSEMBLE
    regularization: float = 0.0
    epochs: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.algorithm, Algorithm):
            raise InvalidInput(f"algorithm must be one of {[a.value for a in Algorithm]}, not {self.algorithm!r}")
        if isinstance(self.regularization, bool) or not isinstance(self.regularization, (int, float)):
            raise InvalidInput(f"regularization must be a number, not {self.regularization!r}")
        if not np.isfinite(self.regularization) or self.regularization < 0:
            raise InvalidInput(f"regularization must be >= 0 (0 = the algorithm's default), not {self.regularization!r}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise InvalidInput(f"epochs must be an integer >= 1, not {self.epochs!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise InvalidInput(f"seed must be an integer in 0..2**32-1, not {self.seed!r}")

    @property
    def effective_regularization(self) -> float:
        return float(self.regularization) or DEFAULT_REGULARIZATION[self.algorithm]

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm.value,
            "regularization": float(self.regularization),
            "epochs": int(self.epochs),
            "seed": int(self.seed),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassifierConfig:
        return artifacts.config_from_json(cls, data, "classifier")


@dataclass(slots=True)
class Scored:
    label: str
    score: float


@dataclass(slots=True)
class Explained:
    feature_index: int
    label: str
    weight: float


@dataclass(slots=True)
class Prediction:
    labels: list[Scored]
    explanation: list[Explained]


def _check_labels(labels: Sequence[str], what: str) -> list[str]:
    labels = list(labels)
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput(f"{what} {i} has an empty label; every label must be a non-empty string")
    return labels


class ClassifierTrainer:
    """Fits one algorithm from batches of (vectors, labels).

    SGD learns each batch as it arrives (partial_fit), so it must know every label up front:
    pass `classes`. The other algorithms gather the batches and fit in finish(); for them
    `classes`, when given, is checked against the labels seen.
    """

    def __init__(self, config: ClassifierConfig, dimension: int, classes: Sequence[str] = ()) -> None:
        if not _is_int(dimension) or dimension < 1:
            raise InvalidInput(f"dimension must be a positive integer (the features' dimension), not {dimension!r}")
        self.config = config
        self.dimension = int(dimension)
        classes = _check_labels(classes, "class")
        if len(set(classes)) != len(classes):
            raise InvalidInput(f"the label set [{quote_list(classes)}] has duplicates")
        self.classes = sorted(classes)
        self.examples = 0
        self._batches: list[sp.csr_matrix] = []
        self._labels: list[str] = []
        self._sgd: SGDClassifier | None = None
        if config.algorithm is Algorithm.SGD:
            if len(self.classes) < 2:
                raise InvalidInput(
                    "SGD learns batch by batch and must know every label up front: send the full label set "
                    f"(at least two labels) with the first batch, not {self.classes}"
                )
            from sklearn.linear_model import SGDClassifier

            self._sgd = SGDClassifier(loss="log_loss", alpha=config.effective_regularization, random_state=config.seed)

    def add(self, X: sp.spmatrix, labels: Sequence[str]) -> None:
        if not sp.issparse(X) or X.ndim != 2:
            raise InvalidInput("feature vectors must be a 2-d sparse matrix")
        X = sp.csr_matrix(X, dtype=np.float32)
        labels = _check_labels(labels, "example")
        if X.shape[0] != len(labels):
            raise InvalidInput(f"got {X.shape[0]} vectors but {len(labels)} labels; send one label per vector")
        if X.shape[1] != self.dimension:
            raise InvalidInput(f"vectors have {X.shape[1]} dimensions but the classifier was set up for {self.dimension}")
        if not np.isfinite(X.data).all():
            raise InvalidInput("feature vectors contain NaN or infinite values")
        if self.config.algorithm in COUNTS_ONLY and X.nnz and X.data.min() < 0:
            raise InvalidInput(
                f"negative feature value {float(X.data.min())}: the {self.config.algorithm.value} classifier models counts and needs values >= 0"
            )
        if self.classes:
            unknown = sorted(set(labels) - set(self.classes))
            if unknown:
                raise InvalidInput(
                    f"labels [{quote_list(unknown)}] are not in the label set [{quote_list(self.classes)}] sent with the first batch"
                )
        if not labels:
            return
        self.examples += len(labels)
        if self._sgd is not None:
            self._sgd.partial_fit(X, labels, classes=self.classes)
        else:
            self._batches.append(X)
            self._labels += labels

    def finish(self, should_stop: Callable[[], bool] = lambda: False) -> LinearModel:
        """The fitted model. should_stop is asked between the costly steps (each model of the
        ensemble, each class of NBSVM); when it says yes, the fit ends with Cancelled."""
        if self.examples == 0:
            raise InvalidInput("no training examples were sent; send labelled vectors of at least two classes")
        if self._sgd is not None:
            return _from_sgd(self._sgd, self.config)
        seen = sorted(set(self._labels))
        if len(seen) < 2:
            raise InvalidInput(f"training examples carry only the label(s) [{quote_list(seen)}]; a classifier needs at least two")
        missing = sorted(set(self.classes) - set(seen))
        if missing:
            raise InvalidInput(f"labels [{quote_list(missing)}] of the label set have no training examples; drop them or add examples")
        X = sp.vstack(self._batches, format="csr")
        y = np.asarray(self._labels, dtype=object)
        self._batches, self._labels = [], []
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            # liblinear's iteration cap is reached on some corpora long after accuracy settles.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return _fit(X, y, self.config, should_stop)


def _fit(X: sp.csr_matrix, y: np.ndarray, config: ClassifierConfig, should_stop: Callable[[], bool]) -> LinearModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.svm import LinearSVC

    algorithm, strength = config.algorithm, config.effective_regularization
    Cancelled.check(should_stop)
    if algorithm is Algorithm.ENSEMBLE:
        return _fit_ensemble(X, y, strength, config.seed, should_stop)
    if algorithm is Algorithm.LINEAR_SVM:
        svm = LinearSVC(C=strength, random_state=config.seed).fit(X, y)
        return _linear(svm.classes_, svm.coef_, svm.intercept_, "decision", algorithm)
    if algorithm is Algorithm.LOGISTIC_REGRESSION:
        lr = LogisticRegression(C=strength, max_iter=1000, random_state=config.seed).fit(X, y)
        return _linear(lr.classes_, lr.coef_, lr.intercept_, "softmax", algorithm)
    if algorithm is Algorithm.MULTINOMIAL_NB:
        nb = MultinomialNB(alpha=strength).fit(X, y)
        return _linear(nb.classes_, nb.feature_log_prob_, nb.class_log_prior_, "softmax", algorithm)
    # ComplementNB scores without the class prior once there are two or more classes.
    cnb = ComplementNB(alpha=strength).fit(X, y)
    return _linear(cnb.classes_, cnb.feature_log_prob_, np.zeros(len(cnb.classes_)), "softmax", algorithm)


def _from_sgd(sgd: SGDClassifier, config: ClassifierConfig) -> LinearModel:
    scoring = "softmax" if len(sgd.classes_) == 2 else "ovr_sigmoid"
    return _linear(sgd.classes_, sgd.coef_, sgd.intercept_, scoring, config.algorithm)


def _rows(coef: np.ndarray, intercept: np.ndarray, scoring: str) -> tuple[np.ndarray, np.ndarray]:
    """One row per class. sklearn keeps a binary model as one row w for the second class;
    under softmax the rows -w/2, w/2 give exactly its sigmoid(w.x + b), otherwise -w, w
    give its decision value for the second class."""
    coef, intercept = np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64).ravel()
    if coef.shape[0] == 1:
        half = 0.5 if scoring == "softmax" else 1.0
        coef = np.vstack([-half * coef[0], half * coef[0]])
        intercept = np.array([-half * intercept[0], half * intercept[0]])
    return coef, intercept


def _linear(classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray, scoring: str, algorithm: Algorithm) -> LinearModel:
    return LinearModel([str(c) for c in classes], *_rows(coef, intercept, scoring), scoring, algorithm)


def _nb_ratios(X: sp.csr_matrix, positive: np.ndarray, alpha: float) -> np.ndarray:
    """Log-count ratio r of NBSVM: how much likelier each feature is in the class than outside it."""
    inside = np.asarray(X[positive].sum(axis=0), dtype=np.float64).ravel() + alpha
    outside = np.asarray(X[~positive].sum(axis=0), dtype=np.float64).ravel() + alpha
    return np.log(inside / inside.sum()) - np.log(outside / outside.sum())


def _fit_nbsvm(
    X: sp.csr_matrix, y: np.ndarray, classes: np.ndarray, C: float, seed: int, should_stop: Callable[[], bool]
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest SVMs on features scaled by each class's ratio; the scaling folds into the
    weights (w * r), so the model stays linear in the unscaled features."""
    from sklearn.svm import LinearSVC

    coef, intercept = [], []
    # Two classes need one SVM, for the second class, as in sklearn.
    for label in classes[1:] if len(classes) == 2 else classes:
        Cancelled.check(should_stop)
        positive = y == label
        ratios = _nb_ratios(X, positive, NBSVM_ALPHA)
        svm = LinearSVC(C=C, random_state=seed).fit(X @ sp.diags(ratios), positive)
        coef.append(svm.coef_[0] * ratios)
        intercept.append(svm.intercept_[0])
    return _rows(np.asarray(coef), np.asarray(intercept), "decision")


def _fit_ensemble(X: sp.csr_matrix, y: np.ndarray, C: float, seed: int, should_stop: Callable[[], bool]) -> LinearModel:
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=C, random_state=seed).fit(X, y)
    classes = svm.classes_
    Cancelled.check(should_stop)
    nb = MultinomialNB(alpha=ENSEMBLE_NB_ALPHA).fit(X, y)
    members = [
        _rows(svm.coef_, svm.intercept_, "decision"),
        _fit_nbsvm(X, y, classes, C, seed, should_stop),
        (nb.feature_log_prob_, nb.class_log_prior_),
    ]
    coef = np.zeros((len(classes), X.shape[1]))
    intercept = np.zeros(len(classes))
    for member_coef, member_intercept in members:
        # Centre each member's scores over the classes and scale them to unit spread on the
        # training data, so no member dominates the sum by its units alone.
        member_coef = member_coef - member_coef.mean(axis=0)
        member_intercept = member_intercept - member_intercept.mean()
        spread = np.asarray(X @ member_coef.T + member_intercept).std() or 1.0
        coef += member_coef / spread
        intercept += member_intercept / spread
    return LinearModel([str(c) for c in classes], coef, intercept, "decision", Algorithm.ENSEMBLE)


class LinearModel:
    """A fitted classifier: scores = scoring(X @ coef.T + intercept)."""

    def __init__(self, classes: Sequence[str], coef: np.ndarray, intercept: np.ndarray, scoring: str, algorithm: Algorithm) -> None:
        coef = np.asarray(coef, dtype=np.float32)
        intercept = np.asarray(intercept, dtype=np.float32)
        if coef.ndim != 2 or coef.shape[0] != len(classes) or intercept.shape != (len(classes),) or len(classes) < 2:
            raise artifacts.ArtifactError(
                f"a linear model needs >= 2 classes, coef classes x dimension and one intercept per class; "
                f"got {len(classes)} classes, coef {coef.shape}, intercept {intercept.shape}"
            )
        if scoring not in SCORINGS:
            raise artifacts.ArtifactError(f"unknown scoring {scoring!r}; known: {', '.join(SCORINGS)}")
        self.classes = list(classes)
        self.coef = coef
        self.intercept = intercept
        self.scoring = scoring
        self.algorithm = algorithm
        self._index = {label: i for i, label in enumerate(self.classes)}
        if len(self._index) != len(self.classes):
            raise artifacts.ArtifactError(f"the classes {self.classes} have duplicates")
        # X @ coef_t is a sparse x dense-C-order product, the fastest layout for scipy.
        self._coef_t = np.ascontiguousarray(coef.T)

    @property
    def dimension(self) -> int:
        return self.coef.shape[1]

    def _scores(self, X: sp.csr_matrix, columns: np.ndarray | None) -> np.ndarray:
        """Scores of every row for the classes in `columns` (all for None), under the scoring."""
        coef_t, intercept = self._coef_t, self.intercept
        if columns is not None:
            coef_t, intercept = coef_t[:, columns], intercept[columns]
        raw = np.asarray(X @ coef_t, dtype=np.float64) + intercept
        if self.scoring == "softmax":
            raw -= raw.max(axis=1, keepdims=True)
            np.exp(raw, out=raw)
        elif self.scoring == "ovr_sigmoid":
            raw = expit(raw)
        else:
            return raw
        raw /= raw.sum(axis=1, keepdims=True)
        return raw

    def predict(self, X: sp.spmatrix, top_k: int = 0, explain: int = 0, restrict_to: Sequence[str] = ()) -> list[Prediction]:
        """Labels best first (top_k of them, all for 0) and, for explain > 0, the features with
        the largest value * weight for each document's top label. restrict_to scores only
        those labels; probabilities are then renormalised over them."""
        if not _is_int(top_k) or top_k < 0:
            raise InvalidInput(f"top_k must be an integer >= 0 (0 returns every label), not {top_k!r}")
        if not _is_int(explain) or explain < 0:
            raise InvalidInput(f"explain must be an integer >= 0, not {explain!r}")
        columns = None
        labels = np.asarray(self.classes, dtype=object)
        if restrict_to:
            wanted = list(dict.fromkeys(restrict_to))
            unknown = [label for label in wanted if label not in self._index]
            if unknown:
                raise NotFound(f"labels [{quote_list(unknown)}] are not in this model; it knows [{quote_list(self.classes, 20)}]")
            columns = np.array([self._index[label] for label in wanted])
            labels = labels[columns]
        if not sp.issparse(X) or X.ndim != 2 or X.shape[1] != self.dimension:
            raise InvalidInput(f"vectors must be a sparse matrix with {self.dimension} columns, got shape {getattr(X, 'shape', None)}")
        X = sp.csr_matrix(X, dtype=np.float32)
        scores = self._scores(X, columns)
        n, k = scores.shape
        keep = k if top_k == 0 else min(top_k, k)
        if keep == 1:
            order = scores.argmax(axis=1)[:, None]
        else:
            order = np.argpartition(-scores, keep - 1, axis=1)[:, :keep] if keep < k else np.tile(np.arange(k), (n, 1))
            ranked = np.take_along_axis(scores, order, axis=1)
            order = np.take_along_axis(order, np.argsort(-ranked, axis=1, kind="stable"), axis=1)
        top_scores = np.take_along_axis(scores, order, axis=1).tolist()
        top_labels = labels[order].tolist()
        if explain:
            best = order[:, 0] if columns is None else columns[order[:, 0]]
            explanations = self._explain(X, best, explain)
        else:
            explanations = [[] for _ in range(n)]
        return [
            Prediction([Scored(label, score) for label, score in zip(row_labels, row_scores)], explanation)
            for row_labels, row_scores, explanation in zip(top_labels, top_scores, explanations)
        ]

    def _explain(self, X: sp.csr_matrix, best: np.ndarray, count: int) -> list[list[Explained]]:
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        contributions = X.data * self.coef[best[rows], X.indices]
        result = []
        for row in range(X.shape[0]):
            start, end = X.indptr[row], X.indptr[row + 1]
            values = contributions[start:end]
            top = np.argsort(-values, kind="stable")[:count]
            label = self.classes[best[row]]
            result.append([Explained(int(X.indices[start + i]), label, float(values[i])) for i in top])
        return result

    def save(self, directory: Path) -> None:
        artifacts.write_json(directory, "classifier", {"classes": self.classes, "scoring": self.scoring, "algorithm": self.algorithm.value})
        artifacts.write_array(directory, "coef", self.coef)
        artifacts.write_array(directory, "intercept", self.intercept)

    @classmethod
    def load(cls, directory: Path) -> LinearModel:
        meta = artifacts.read_json(directory, "classifier")
        coef = artifacts.read_array(directory, "coef")
        intercept = artifacts.read_array(directory, "intercept")
        try:
            classes = meta["classes"]
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise TypeError("classes must be a list of strings")
            return cls(classes, coef, intercept, meta["scoring"], Algorithm(meta["algorithm"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise artifacts.ArtifactError(f"damaged classifier part in {directory}: {exc}") from exc
