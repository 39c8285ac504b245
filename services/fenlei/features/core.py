"""TF-IDF vectors fitted from a labelled stream, with optional supervised term selection.

Fitting never keeps documents: it accumulates document frequencies (and, when a selection
is configured, per-class term statistics) batch by batch, so a stream larger than memory
can be fitted. Vectors match scikit-learn's TfidfVectorizer(smooth_idf=True, norm="l2").

Selection scores come from statistics a stream can sum:
- chi2 and ANOVA F are those of SelectKBest on the *un-normalised* TF-IDF matrix. A
  document's L2 norm depends on the final IDF of all its terms, so the normalised values
  are unknown while streaming; scaling a column by its IDF multiplies its chi2 by that IDF
  and leaves F unchanged, so both follow from per-class sums of the term weights.
- mutual information is that between a term's presence in a document and the label
  (sklearn's mutual_info_classif with discrete features on the binary matrix).
After selection the kept terms are renumbered 0..k-1 and vectors are normalised over them.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from fenlei.errors import Cancelled, InvalidInput
from fenlei.runtime import artifacts


class Selection(enum.Enum):
    NONE = "none"
    CHI2 = "chi2"
    MUTUAL_INFO = "mutual_info"
    ANOVA_F = "anova_f"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureConfig:
    sublinear_tf: bool = True
    min_df: int = 1
    selection: Selection = Selection.NONE
    top_k: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.sublinear_tf, bool):
            raise InvalidInput(f"sublinear_tf must be true or false, not {self.sublinear_tf!r}")
        if not _is_int(self.min_df) or self.min_df < 1:
            raise InvalidInput(f"min_df must be an integer >= 1, not {self.min_df!r}")
        if not isinstance(self.selection, Selection):
            raise InvalidInput(f"selection must be one of {[s.value for s in Selection]}, not {self.selection!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise InvalidInput(f"top_k must be an integer >= 0 (0 keeps every term), not {self.top_k!r}")
        if self.top_k and self.selection is Selection.NONE:
            raise InvalidInput(f"top_k={self.top_k} needs a selection method: one of chi2, mutual_info, anova_f")

    def to_json(self) -> dict[str, Any]:
        return {"sublinear_tf": self.sublinear_tf, "min_df": int(self.min_df), "selection": self.selection.value, "top_k": int(self.top_k)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        return artifacts.config_from_json(cls, data, "feature")


# Pending per-class entries are merged into the total beyond this many (and beyond the total's size).
MERGE_AT = 1 << 20


class _ClassTermSums:
    """Per-class sums of a per-document term statistic, kept sparse (most terms occur in few
    classes). Batches are merged when they outgrow the total, so merging stays linear."""

    def __init__(self) -> None:
        self._total = sp.csr_matrix((0, 0))
        self._pending: list[sp.coo_matrix] = []
        self._pending_nnz = 0

    def add(self, batch: sp.spmatrix) -> None:
        self._pending.append(batch.tocoo())
        self._pending_nnz += batch.nnz
        if self._pending_nnz > max(self._total.nnz, MERGE_AT):
            self._merge()

    def _merge(self) -> None:
        parts = [self._total.tocoo(), *self._pending]
        shape = (max(p.shape[0] for p in parts), max(p.shape[1] for p in parts))
        self._total = sp.csr_matrix(
            (
                np.concatenate([p.data for p in parts]).astype(np.float64),
                (np.concatenate([p.row for p in parts]), np.concatenate([p.col for p in parts])),
            ),
            shape=shape,
        )
        self._pending, self._pending_nnz = [], 0

    def rows(self, n_classes: int, columns: np.ndarray) -> Iterator[np.ndarray]:
        """Yields each class's sums over `columns` as a dense vector."""
        self._merge()
        # The last batch spans every class and term seen, so the total does too.
        total = self._total[:, columns].tocsr()
        for c in range(n_classes):
            yield total.getrow(c).toarray().ravel()


class FeatureFitter:
    """Accumulates a labelled stream of term lists, batch by batch."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._vocabulary: dict[str, int] = {}
        self._df = np.zeros(1 << 16, dtype=np.int64)
        self._classes: dict[str, int] = {}
        self._class_documents: list[int] = []
        selection = config.selection
        self._presence = _ClassTermSums() if selection is Selection.MUTUAL_INFO else None
        self._sums = _ClassTermSums() if selection in (Selection.CHI2, Selection.ANOVA_F) else None
        self._squares = _ClassTermSums() if selection is Selection.ANOVA_F else None

    @property
    def documents(self) -> int:
        return sum(self._class_documents)

    def add(self, term_lists: Sequence[Sequence[str]], labels: Sequence[str]) -> None:
        if len(term_lists) != len(labels):
            raise InvalidInput(f"got {len(term_lists)} documents but {len(labels)} labels; send one label per document")
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label.strip():
                raise InvalidInput(f"document {i} of the batch has an empty label; every training document needs one")
        lengths = _lengths(term_lists)
        if not len(lengths):
            return
        flat = list(itertools.chain.from_iterable(term_lists))
        vocabulary = self._vocabulary
        ids = np.fromiter(map(vocabulary.get, flat, itertools.repeat(-1)), dtype=np.int64, count=len(flat))
        # New terms are rare once a stream is under way, so only they take the Python loop.
        for position in np.flatnonzero(ids < 0).tolist():
            ids[position] = vocabulary.setdefault(flat[position], len(vocabulary))
        counts = _count_matrix(lengths, ids, len(vocabulary))
        self._grow_df(len(vocabulary))
        self._df[: len(vocabulary)] += np.bincount(counts.indices, minlength=len(vocabulary))

        class_ids = np.fromiter(
            (self._classes.setdefault(label, len(self._classes)) for label in labels), dtype=np.int64, count=len(labels)
        )
        self._class_documents += [0] * (len(self._classes) - len(self._class_documents))
        for c, n in zip(*np.unique(class_ids, return_counts=True)):
            self._class_documents[c] += int(n)
        if self._presence is None and self._sums is None:
            return
        membership = sp.csr_matrix((np.ones(len(labels)), (class_ids, np.arange(len(labels)))), shape=(len(self._classes), len(labels)))
        if self._presence is not None:
            present = counts.copy()
            present.data[:] = 1.0
            self._presence.add(membership @ present)
        if self._sums is not None:
            weights = _tf_weights(counts, self.config.sublinear_tf)
            self._sums.add(membership @ weights)
            if self._squares is not None:
                weights.data **= 2
                self._squares.add(membership @ weights)

    def _grow_df(self, size: int) -> None:
        if size > len(self._df):
            grown = np.zeros(max(size, 2 * len(self._df)), dtype=np.int64)
            grown[: len(self._df)] = self._df
            self._df = grown

    def _kept(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Columns that pass min_df, with every column's document frequency and IDF."""
        n = self.documents
        if n == 0:
            raise InvalidInput("no training documents were sent; send at least two classes of labelled documents")
        if len(self._classes) < 2:
            raise InvalidInput(
                f"training documents carry only {len(self._classes)} label ({', '.join(self._classes)}); a classifier needs at least two"
            )
        df = self._df[: len(self._vocabulary)]
        kept = np.flatnonzero(df >= self.config.min_df)
        if not len(kept):
            raise InvalidInput(f"no term occurs in at least min_df={self.config.min_df} documents (of {n}); lower min_df")
        return kept, df, np.log((1.0 + n) / (1.0 + df)) + 1.0

    def _terms(self, columns: np.ndarray) -> list[str]:
        terms = [""] * len(self._vocabulary)
        for term, column in self._vocabulary.items():
            terms[column] = term
        return [terms[i] for i in columns.tolist()]

    def selection_scores(self) -> tuple[list[str], np.ndarray]:
        """Every term that passes min_df, in first-seen order, with its score under the
        configured selection (higher is better)."""
        if self.config.selection is Selection.NONE:
            raise InvalidInput("no selection is configured: set selection to chi2, mutual_info or anova_f")
        kept, df, idf = self._kept()
        return self._terms(kept), self._scores(kept, df[kept], idf[kept])

    def finish(self, should_stop: Callable[[], bool] = lambda: False) -> FeatureSpace:
        """The fitted space. should_stop is asked between the costly steps; when it says yes,
        the fit ends with Cancelled."""
        kept, df, idf = self._kept()
        selected = kept
        top_k = self.config.top_k
        if self.config.selection is not Selection.NONE and 0 < top_k < len(kept):
            Cancelled.check(should_stop)
            scores = self._scores(kept, df[kept], idf[kept])
            Cancelled.check(should_stop)
            # Stable order: among equal scores the earlier-seen term wins.
            best = np.argsort(-scores, kind="stable")[:top_k]
            selected = kept[np.sort(best)]
        return FeatureSpace(self.config, self._terms(selected), idf[selected].astype(np.float32), vocabulary_size=len(kept))

    def _scores(self, columns: np.ndarray, df: np.ndarray, idf: np.ndarray) -> np.ndarray:
        n_classes = len(self._classes)
        class_documents = np.asarray(self._class_documents, dtype=np.float64)
        n = class_documents.sum()
        selection = self.config.selection
        # __init__ keeps exactly the per-class sums the configured selection scores with.
        with np.errstate(divide="ignore", invalid="ignore"):
            if selection is Selection.CHI2:
                assert self._sums is not None
                per_class = list(self._sums.rows(n_classes, columns))
                totals = np.sum(per_class, axis=0)
                chi2 = np.zeros(len(columns))
                for c, observed in enumerate(per_class):
                    expected = totals * (class_documents[c] / n)
                    chi2 += (observed - expected) ** 2 / expected
                return chi2 * idf
            if selection is Selection.ANOVA_F:
                assert self._sums is not None and self._squares is not None
                between = np.zeros(len(columns))
                totals = np.zeros(len(columns))
                for c, sums in enumerate(self._sums.rows(n_classes, columns)):
                    between += sums**2 / class_documents[c]
                    totals += sums
                squares = np.zeros(len(columns))
                for row in self._squares.rows(n_classes, columns):
                    squares += row
                mean_square = totals**2 / n
                ss_between = between - mean_square
                ss_within = squares - mean_square - ss_between
                f = (ss_between / (n_classes - 1)) / (ss_within / (n - n_classes))
                return np.where(np.isnan(f), 0.0, f)
            # Mutual information of presence (present/absent) and class: the sum over the
            # 2 x classes table of P(e, c) log(P(e, c) / (P(e) P(c))), with 0 log 0 = 0.
            assert self._presence is not None
            mi = np.zeros(len(columns))
            p_present = df / n
            for c, both in enumerate(self._presence.rows(n_classes, columns)):
                p_class = class_documents[c] / n
                for joint, marginal in (
                    (both / n, p_present),
                    ((class_documents[c] - both) / n, 1.0 - p_present),
                ):
                    mi += np.where(joint > 0, joint * np.log(joint / (marginal * p_class)), 0.0)
            return mi


def _lengths(term_lists: Sequence[Sequence[str]]) -> np.ndarray:
    # A bare string would silently become one term per character.
    if any(isinstance(terms, (str, bytes)) for terms in term_lists):
        raise InvalidInput("each document must be a list of terms, not a string")
    return np.fromiter(map(len, term_lists), dtype=np.int64, count=len(term_lists))


def _count_matrix(lengths: np.ndarray, ids: np.ndarray, dimension: int) -> sp.csr_matrix:
    """Documents x terms raw counts from each document's term count and the flat term ids;
    ids < 0 (unknown terms) are dropped."""
    n = len(lengths)
    known = ids >= 0
    if not known.all():
        lengths = np.bincount(np.repeat(np.arange(n), lengths)[known], minlength=n)
        ids = ids[known]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    index_type = np.int32 if max(dimension, len(ids)) < 2**31 else np.int64
    matrix = sp.csr_matrix(
        (np.ones(len(ids), dtype=np.float32), ids.astype(index_type), indptr.astype(index_type)),
        shape=(n, dimension),
    )
    matrix.sum_duplicates()
    return matrix


def _tf_weights(counts: sp.csr_matrix, sublinear: bool) -> sp.csr_matrix:
    weights = counts.astype(np.float64)
    if sublinear:
        np.log(weights.data, out=weights.data)
        weights.data += 1.0
    return weights


class FeatureSpace:
    """A fitted vocabulary with IDF weights: term lists in, L2-normalised sparse rows out."""

    def __init__(self, config: FeatureConfig, terms: Sequence[str], idf: np.ndarray, vocabulary_size: int) -> None:
        if len(terms) != len(idf):
            raise artifacts.ArtifactError(f"{len(terms)} terms but {len(idf)} IDF weights")
        self.config = config
        self.terms = list(terms)
        self.vocabulary = {term: column for column, term in enumerate(self.terms)}
        if len(self.vocabulary) != len(self.terms):
            raise artifacts.ArtifactError("the feature terms contain duplicates")
        self.idf = np.asarray(idf, dtype=np.float32)
        self.vocabulary_size = int(vocabulary_size)

    @property
    def dimension(self) -> int:
        return len(self.terms)

    def transform(self, term_lists: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """Rows are float32 TF-IDF vectors with unit L2 norm; unknown terms are ignored and a
        document without known terms is an empty row."""
        lengths = _lengths(term_lists)
        n = len(lengths)
        flat = itertools.chain.from_iterable(term_lists)
        ids = np.fromiter(map(self.vocabulary.get, flat, itertools.repeat(-1)), dtype=np.int64, count=int(lengths.sum()))
        matrix = _count_matrix(lengths, ids, self.dimension)
        data = matrix.data
        if self.config.sublinear_tf:
            np.log(data, out=data)
            data += 1.0
        data *= self.idf[matrix.indices]
        rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
        norms = np.sqrt(np.bincount(rows, weights=data.astype(np.float64) ** 2, minlength=n))
        data /= norms[rows].astype(np.float32)
        return matrix

    def feature_names(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        indices = np.asarray(indices, dtype=np.int64).ravel()
        bad = indices[(indices < 0) | (indices >= self.dimension)]
        if len(bad):
            raise InvalidInput(f"feature index {int(bad[0])} is outside this model's {self.dimension} features (0..{self.dimension - 1})")
        terms = self.terms
        return [terms[i] for i in indices.tolist()]

    def save(self, directory: Path) -> None:
        artifacts.write_json(directory, "features", {"config": self.config.to_json(), "vocabulary_size": self.vocabulary_size})
        artifacts.write_json(directory, "terms", self.terms)
        artifacts.write_array(directory, "idf", self.idf)

    @classmethod
    def load(cls, directory: Path) -> FeatureSpace:
        meta = artifacts.read_json(directory, "features")
        terms = artifacts.read_json(directory, "terms")
        idf = artifacts.read_array(directory, "idf")
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms) or idf.ndim != 1:
            raise artifacts.ArtifactError(f"damaged features part in {directory}: terms must be strings, idf a vector")
        try:
            config = FeatureConfig.from_json(meta["config"])
            return cls(config, terms, idf, meta["vocabulary_size"])
        except (KeyError, TypeError, InvalidInput) as exc:
            raise artifacts.ArtifactError(f"damaged features part in {directory}: {exc}") from exc
