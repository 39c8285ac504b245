import asyncio
import dataclasses

import pytest

from fenlei.classifier.core import Algorithm
from fenlei.errors import InvalidInput
from fenlei.features.core import Selection
from fenlei.training.core import DEFAULT_PREPROCESS, TrainingSpec, stratified_folds
from fenlei.training.options import STAGES, proto_values
from fenlei.training.tuning import DEFAULT_SPACE, SearchSpace, Trial, apply, search
from fenlei.v1 import classifier_pb2, features_pb2, jobs_pb2, preprocessor_pb2

LABELS = ["pos"] * 7 + ["neg"] * 5 + ["mid"] * 3


def default_values(stage: str, fields: tuple[str, ...]) -> dict:
    [found] = [s for s in STAGES if s.field == stage]
    values = proto_values(found.config(), found.options)
    return {field: values[field] for field in fields}


def test_the_default_space_always_tries_the_default_configuration():
    spec = TrainingSpec(name="m")
    first = DEFAULT_SPACE.combinations()[0]
    tried = apply(spec, first)
    assert tried.preprocess == spec.preprocess == DEFAULT_PREPROCESS
    assert tried.features == default_values("features", ("selection", "top_k"))
    assert tried.classifier == default_values("classifier", ("algorithm", "regularization"))
    for seed in range(5):
        assert DEFAULT_SPACE.draw(seed)[0] == first


def test_the_default_space_searches_ngrams_and_classifiers():
    combinations = DEFAULT_SPACE.combinations()
    for stage, option in [
        ("preprocessor", "word_ngrams"),
        ("preprocessor", "char_ngrams"),
        ("classifier", "algorithm"),
        ("classifier", "regularization"),
    ]:
        assert len({str(c[stage][option]) for c in combinations}) > 1, (stage, option)
    assert len(DEFAULT_SPACE.draw(0)) == DEFAULT_SPACE.max_trials < len(combinations)


def test_draws_are_seeded_distinct_combinations_in_order():
    space = SearchSpace(max_trials=5)
    combinations = space.combinations()
    drawn = space.draw(3)
    assert drawn == space.draw(3)
    assert len(drawn) == 5
    positions = [combinations.index(c) for c in drawn]
    assert positions == sorted(set(positions))
    assert any(space.draw(seed) != drawn for seed in range(4, 10))


def test_a_small_space_is_searched_whole():
    space = SearchSpace(
        selections=(Selection.NONE, Selection.CHI2),
        top_k=(0, 100),
        word_ngrams=((1, 1),),
        char_ngrams=((0, 0), (1, 2)),
        algorithms=(Algorithm.LINEAR_SVM,),
        regularization=(0.5, 2.0),
    )
    drawn = space.draw(0)
    # (none, 0) and (chi2, 100): chi2 with top_k 0 would keep everything, as none does.
    assert [(c["features"]["selection"], c["features"]["top_k"]) for c in drawn[::4]] == [
        ("FEATURE_SELECTION_NONE", 0),
        ("FEATURE_SELECTION_CHI2", 100),
    ]
    assert len(drawn) == 8
    assert {c["preprocessor"]["char_ngrams"]["max"] for c in drawn} == {0, 2}
    assert {c["classifier"]["regularization"] for c in drawn} == {0.5, 2.0}


def test_words_and_characters_both_off_are_left_out():
    space = SearchSpace(
        word_ngrams=((0, 0), (1, 1)),
        char_ngrams=((0, 0),),
        algorithms=(Algorithm.LINEAR_SVM,),
        selections=(Selection.NONE,),
        regularization=(0.0,),
    )
    assert [c["preprocessor"]["word_ngrams"] for c in space.combinations()] == [{"min": 1, "max": 1}]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"folds": 1}, "at least 2 folds"),
        ({"max_trials": 0}, "max_trials"),
        ({"selections": (Selection.CHI2,), "top_k": (0,)}, "top_k values above 0"),
        ({"word_ngrams": ((0, 0),), "char_ngrams": ((0, 0),)}, "no valid configuration"),
        ({"char_ngrams": ((3, 1),)}, "char_ngrams [3, 1] is invalid"),
        ({"regularization": (-1.0,)}, "regularization must be >= 0"),
        ({"algorithms": ()}, "at least one value of algorithms"),
    ],
)
def test_bad_spaces_are_refused_before_any_trial(changes, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        SearchSpace(**changes)


def test_a_job_space_takes_the_defaults_for_what_it_leaves_empty():
    assert SearchSpace.from_proto(jobs_pb2.TuningSpace()) == DEFAULT_SPACE
    space = SearchSpace.from_proto(
        jobs_pb2.TuningSpace(
            algorithms=[classifier_pb2.ALGORITHM_LINEAR_SVM, classifier_pb2.ALGORITHM_COMPLEMENT_NB],
            selections=[features_pb2.FEATURE_SELECTION_MUTUAL_INFO],
            top_k=[500],
            word_ngrams=[preprocessor_pb2.NgramRange(min=1, max=3)],
            folds=4,
        )
    )
    assert space == dataclasses.replace(
        DEFAULT_SPACE,
        algorithms=(Algorithm.LINEAR_SVM, Algorithm.COMPLEMENT_NB),
        selections=(Selection.MUTUAL_INFO,),
        top_k=(500,),
        word_ngrams=((1, 3),),
        folds=4,
    )
    with pytest.raises(InvalidInput, match="algorithms"):
        SearchSpace.from_proto(jobs_pb2.TuningSpace(algorithms=[classifier_pb2.ALGORITHM_UNSPECIFIED]))


def test_apply_changes_only_what_the_trial_sets():
    spec = TrainingSpec(name="m", features={"min_df": 2}, classifier={"epochs": 3}, seed=7)
    changes = SearchSpace(
        selections=(Selection.CHI2,), top_k=(100,), word_ngrams=((1, 2),), char_ngrams=((1, 3),), algorithms=(Algorithm.LINEAR_SVM,)
    ).combinations()[0]
    tried = apply(spec, changes)
    assert tried.preprocess == dataclasses.replace(spec.preprocess, word_ngrams=(1, 2), char_ngrams=(1, 3))
    assert tried.features == {"min_df": 2, "selection": "FEATURE_SELECTION_CHI2", "top_k": 100}
    assert tried.classifier == {"epochs": 3, "algorithm": "ALGORITHM_LINEAR_SVM", "regularization": 0.0}
    assert (tried.segment, tried.seed, tried.name) == (spec.segment, 7, "m")
    assert spec.features == {"min_df": 2}  # the job's own spec is left alone


def test_search_cross_validates_every_trial_and_marks_the_best():
    space = SearchSpace(
        selections=(Selection.NONE,),
        word_ngrams=((1, 1),),
        char_ngrams=((1, 2),),
        algorithms=(Algorithm.ENSEMBLE, Algorithm.LINEAR_SVM, Algorithm.LOGISTIC_REGRESSION),
        regularization=(0.0,),
    )
    fold_of = stratified_folds(LABELS, space.folds, seed=1)
    calls = []
    # The SVM scores best, and the same on every fold; the others vary by fold.
    means = {"ALGORITHM_ENSEMBLE": 0.6, "ALGORITHM_LINEAR_SVM": 0.9, "ALGORITHM_LOGISTIC_REGRESSION": 0.7}

    async def score(changes, train, test):
        calls.append((changes, train, test))
        algorithm = changes["classifier"]["algorithm"]
        return means[algorithm] + (0 if algorithm == "ALGORITHM_LINEAR_SVM" else 0.1 * (len(calls) % 2))

    heard = []
    trials = asyncio.run(search(space, fold_of, score, seed=0, on_trial=lambda trial, total: heard.append((trial.number, total))))

    assert len(calls) == 3 * space.folds
    for _, train, test in calls:
        assert not set(train) & set(test)
        assert sorted(train + test) == list(range(len(LABELS)))  # the training split only, all of it
    tests = [tuple(test) for _, _, test in calls[: space.folds]]
    assert len(set(tests)) == space.folds and sorted(i for t in tests for i in t) == list(range(len(LABELS)))
    assert heard == [(1, 3), (2, 3), (3, 3)]
    assert [t.best for t in trials] == [False, True, False]
    svm = trials[1]
    assert (svm.number, svm.score, svm.score_std) == (2, pytest.approx(0.9), 0.0)
    assert trials[0].score_std > 0
    assert svm.to_json()["changes"]["classifier"]["algorithm"] == "ALGORITHM_LINEAR_SVM"


def test_a_tie_goes_to_the_earlier_trial():
    space = SearchSpace(
        selections=(Selection.NONE,),
        word_ngrams=((1, 1), (1, 2)),
        char_ngrams=((1, 2),),
        algorithms=(Algorithm.LINEAR_SVM,),
        regularization=(0.0,),
    )

    async def score(changes, train, test):
        return 0.5

    trials = asyncio.run(search(space, stratified_folds(LABELS, 3, seed=0), score, seed=0))
    assert [t.best for t in trials] == [True, False]
    assert all(isinstance(t, Trial) and t.seconds >= 0 for t in trials)


def test_search_needs_two_folds():
    async def score(changes, train, test):
        return 1.0

    with pytest.raises(InvalidInput, match="at least 2 folds"):
        asyncio.run(search(DEFAULT_SPACE, [0] * len(LABELS), score, seed=0))
