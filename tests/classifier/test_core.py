import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from fenlei.classifier.core import (
    ENSEMBLE_NB_ALPHA,
    NBSVM_ALPHA,
    Algorithm,
    ClassifierConfig,
    ClassifierTrainer,
    LinearModel,
)
from fenlei.errors import Cancelled, InvalidInput, NotFound
from fenlei.runtime import artifacts

DIMENSION = 60


def dataset(classes=("体育", "娱乐", "财经"), documents=240, seed=0):
    """L2-normalised non-negative sparse rows (like TF-IDF) whose active columns depend on the label."""
    rng = np.random.default_rng(seed)
    labels = [classes[i % len(classes)] for i in range(documents)]
    rows = []
    for label in labels:
        home = classes.index(label) * 10
        columns = np.concatenate([rng.choice(np.arange(home, home + 15), 3), rng.choice(DIMENSION, 4)])
        row = np.zeros(DIMENSION)
        row[columns] = rng.random(len(columns))
        rows.append(row)
    return sp.csr_matrix(normalize(np.array(rows)), dtype=np.float32), labels


def train(algorithm, X, labels, batch=50, classes=None, **options):
    trainer = ClassifierTrainer(
        ClassifierConfig(algorithm=algorithm, **options), X.shape[1], classes=sorted(set(labels)) if classes is None else classes
    )
    for start in range(0, X.shape[0], batch):
        trainer.add(X[start : start + batch], labels[start : start + batch])
    return trainer.finish()


def probabilities(model, X):
    """Scores in the model's class order for every row."""
    return np.array([[s.score for s in sorted(p.labels, key=lambda s: model.classes.index(s.label))] for p in model.predict(X)])


SKLEARN = {
    Algorithm.LINEAR_SVM: lambda: LinearSVC(C=1.0, random_state=0),
    Algorithm.LOGISTIC_REGRESSION: lambda: LogisticRegression(C=10.0, max_iter=1000, random_state=0),
    Algorithm.MULTINOMIAL_NB: lambda: MultinomialNB(alpha=0.1),
    Algorithm.COMPLEMENT_NB: lambda: ComplementNB(alpha=0.3),
}


@pytest.mark.parametrize("classes", [("体育", "娱乐", "财经"), ("neg", "pos")], ids=["multiclass", "binary"])
@pytest.mark.parametrize("algorithm", list(SKLEARN))
def test_batch_algorithms_match_sklearn(algorithm, classes):
    X, labels = dataset(classes)
    test, _ = dataset(classes, 60, seed=1)
    model = train(algorithm, X, labels)
    reference = SKLEARN[algorithm]().fit(X, labels)
    assert model.classes == list(reference.classes_)
    assert model.coef.shape == (len(classes), DIMENSION) and model.coef.dtype == np.float32
    assert [p.labels[0].label for p in model.predict(test)] == list(reference.predict(test))
    scores = probabilities(model, test)
    if algorithm is Algorithm.LINEAR_SVM:
        assert model.scoring == "decision"
        decision = reference.decision_function(test)
        expected = np.stack([-decision, decision], axis=1) if len(classes) == 2 else decision
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    else:
        assert model.scoring == "softmax"
        np.testing.assert_allclose(scores, reference.predict_proba(test), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("classes", [("体育", "娱乐", "财经"), ("neg", "pos")], ids=["multiclass", "binary"])
def test_sgd_learns_batch_by_batch_like_sklearn_partial_fit(classes):
    X, labels = dataset(classes)
    test, _ = dataset(classes, 60, seed=1)
    # The client sends the stream once per epoch; the trainer learns each batch as it comes.
    trainer = ClassifierTrainer(ClassifierConfig(algorithm=Algorithm.SGD, seed=3), DIMENSION, classes=list(reversed(classes)))
    reference = SGDClassifier(loss="log_loss", alpha=1e-5, random_state=3)
    for _ in range(3):
        for start in range(0, X.shape[0], 40):
            trainer.add(X[start : start + 40], labels[start : start + 40])
            reference.partial_fit(X[start : start + 40], labels[start : start + 40], classes=sorted(classes))
    model = trainer.finish()
    assert model.scoring == ("softmax" if len(classes) == 2 else "ovr_sigmoid")
    assert [p.labels[0].label for p in model.predict(test)] == list(reference.predict(test))
    np.testing.assert_allclose(probabilities(model, test), reference.predict_proba(test), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("classes", [("体育", "娱乐", "财经"), ("neg", "pos")], ids=["multiclass", "binary"])
def test_ensemble_is_the_sum_of_standardised_members(classes):
    X, labels = dataset(classes)
    test, _ = dataset(classes, 60, seed=1)
    y = np.array(labels)
    names = sorted(classes)

    def standardised(train_scores, test_scores):
        if train_scores.ndim == 1:
            train_scores = np.stack([-train_scores, train_scores], axis=1)
            test_scores = np.stack([-test_scores, test_scores], axis=1)
        centre = lambda s: s - s.mean(axis=1, keepdims=True)  # noqa: E731
        return centre(test_scores) / centre(train_scores).std()

    def nbsvm(rows):
        train_scores, test_scores = [], []
        for label in rows:
            positive = y == label
            p = np.asarray(X[positive].sum(axis=0)).ravel() + NBSVM_ALPHA
            q = np.asarray(X[~positive].sum(axis=0)).ravel() + NBSVM_ALPHA
            r = np.log(p / p.sum()) - np.log(q / q.sum())
            svm = LinearSVC(C=1.0, random_state=0).fit(X.multiply(r).tocsr(), positive)
            train_scores.append(svm.decision_function(X.multiply(r).tocsr()))
            test_scores.append(svm.decision_function(test.multiply(r).tocsr()))
        return np.array(train_scores).T.squeeze(), np.array(test_scores).T.squeeze()

    svm = LinearSVC(C=1.0, random_state=0).fit(X, y)
    nb = MultinomialNB(alpha=ENSEMBLE_NB_ALPHA).fit(X, y)
    expected = (
        standardised(svm.decision_function(X), svm.decision_function(test))
        + standardised(*nbsvm(names[1:] if len(names) == 2 else names))
        + standardised(nb.predict_joint_log_proba(X), nb.predict_joint_log_proba(test))
    )
    model = train(Algorithm.ENSEMBLE, X, labels)
    assert model.scoring == "decision" and model.algorithm is Algorithm.ENSEMBLE
    np.testing.assert_allclose(probabilities(model, test), expected, rtol=1e-4, atol=1e-4)


def test_default_is_the_ensemble():
    assert ClassifierConfig().algorithm is Algorithm.ENSEMBLE


def test_top_k_orders_labels_best_first():
    X, labels = dataset(("a", "b", "c", "d"))
    model = train(Algorithm.LOGISTIC_REGRESSION, X, labels)
    full = model.predict(X[:20])
    for prediction in full:
        scores = [s.score for s in prediction.labels]
        assert scores == sorted(scores, reverse=True) and len(scores) == 4
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    for k in (1, 2, 3):
        top = model.predict(X[:20], top_k=k)
        assert [[s.label for s in p.labels] for p in top] == [[s.label for s in p.labels[:k]] for p in full]
    assert len(model.predict(X[:1], top_k=10)[0].labels) == 4
    assert model.predict(X[:0], top_k=2, explain=3) == []


def test_restrict_to_scores_only_those_labels():
    X, labels = dataset(("a", "b", "c", "d"))
    model = train(Algorithm.LOGISTIC_REGRESSION, X, labels)
    full = probabilities(model, X[:30])
    restricted = model.predict(X[:30], restrict_to=["d", "b", "d"])
    for row, prediction in zip(full, restricted):
        assert sorted(s.label for s in prediction.labels) == ["b", "d"]
        # Probabilities are renormalised over the allowed labels.
        expected = {"b": row[1] / (row[1] + row[3]), "d": row[3] / (row[1] + row[3])}
        assert {s.label: s.score for s in prediction.labels} == pytest.approx(expected, rel=1e-4)
    with pytest.raises(NotFound, match=r"\['zz', 'yy'\]"):
        model.predict(X[:1], restrict_to=["a", "zz", "yy"])


def test_explain_returns_the_largest_contributions_to_the_top_label():
    X, labels = dataset()
    model = train(Algorithm.LINEAR_SVM, X, labels)
    for row, prediction in enumerate(model.predict(X[:10], top_k=1, explain=3)):
        top = prediction.labels[0].label
        vector = X.getrow(row)
        contributions = vector.data * model.coef[model.classes.index(top), vector.indices]
        expected = sorted(zip(vector.indices.tolist(), contributions.tolist()), key=lambda item: -item[1])[:3]
        assert [(e.feature_index, e.label) for e in prediction.explanation] == [(i, top) for i, _ in expected]
        np.testing.assert_allclose([e.weight for e in prediction.explanation], [w for _, w in expected], rtol=1e-5)
    restricted = model.predict(X[:5], explain=2, restrict_to=["财经"])
    assert all(e.label == "财经" for p in restricted for e in p.explanation)
    assert model.predict(X[:2])[0].explanation == []
    empty = model.predict(sp.csr_matrix((1, DIMENSION), dtype=np.float32), explain=5)[0]
    assert empty.explanation == [] and len(empty.labels) == 3


def test_save_and_load_round_trip_without_pickle(tmp_path):
    X, labels = dataset(("neg", "pos"))
    model = train(Algorithm.SGD, X, labels, epochs=2)
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.json", "coef.npy", "intercept.npy"]
    assert np.load(tmp_path / "coef.npy", allow_pickle=False).shape == (2, DIMENSION)
    loaded = LinearModel.load(tmp_path)
    assert (loaded.classes, loaded.scoring, loaded.algorithm) == (model.classes, model.scoring, model.algorithm)
    assert loaded.dimension == DIMENSION
    np.testing.assert_array_equal(probabilities(loaded, X), probabilities(model, X))
    meta = json.loads((tmp_path / "classifier.json").read_text())
    (tmp_path / "classifier.json").write_text(json.dumps({**meta, "scoring": "magic"}))
    with pytest.raises(artifacts.ArtifactError, match="unknown scoring"):
        LinearModel.load(tmp_path)


def test_trainer_errors():
    X, labels = dataset()
    with pytest.raises(InvalidInput, match="must know every label up front"):
        ClassifierTrainer(ClassifierConfig(algorithm=Algorithm.SGD), DIMENSION)
    with pytest.raises(InvalidInput, match="duplicates"):
        ClassifierTrainer(ClassifierConfig(), DIMENSION, classes=["a", "a"])
    trainer = ClassifierTrainer(ClassifierConfig(), DIMENSION, classes=["体育", "娱乐"])
    with pytest.raises(InvalidInput, match=r"labels \['财经'\] are not in the label set"):
        trainer.add(X[:3], labels[:3])
    with pytest.raises(InvalidInput, match="3 vectors but 2 labels"):
        trainer.add(X[:3], labels[:2])
    with pytest.raises(InvalidInput, match="example 1 has an empty label"):
        trainer.add(X[:2], ["体育", ""])
    with pytest.raises(InvalidInput, match=f"but the classifier was set up for {DIMENSION}"):
        trainer.add(sp.csr_matrix((1, DIMENSION + 1), dtype=np.float32), ["体育"])
    bad = X[:1].copy()
    bad.data[0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        trainer.add(bad, ["体育"])
    with pytest.raises(InvalidInput, match="no training examples"):
        trainer.finish()
    trainer.add(X[:1], ["体育"])
    with pytest.raises(InvalidInput, match="at least two"):
        trainer.finish()
    trainer = ClassifierTrainer(ClassifierConfig(), DIMENSION, classes=["体育", "娱乐", "财经"])
    trainer.add(X[:2], labels[:2])
    with pytest.raises(InvalidInput, match=r"labels \['财经'\] of the label set have no training examples"):
        trainer.finish()


def test_predict_errors():
    X, labels = dataset()
    model = train(Algorithm.MULTINOMIAL_NB, X, labels)
    with pytest.raises(InvalidInput, match=f"{DIMENSION} columns"):
        model.predict(sp.csr_matrix((1, DIMENSION - 1), dtype=np.float32))
    with pytest.raises(InvalidInput, match="top_k"):
        model.predict(X[:1], top_k=-1)
    with pytest.raises(InvalidInput, match="explain"):
        model.predict(X[:1], explain=-2)


def test_config_json_and_validation():
    config = ClassifierConfig(algorithm=Algorithm.SGD, regularization=0.5, epochs=3, seed=7)
    assert ClassifierConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert ClassifierConfig.from_json({}) == ClassifierConfig()
    for bad, message in [
        ({"algorithm": "random_forest"}, "algorithm must be one of"),
        ({"regularization": -1}, "regularization"),
        ({"regularization": float("nan")}, "regularization"),
        ({"epochs": 0}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"penalty": "l1"}, "unknown classifier options"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            ClassifierConfig.from_json(bad)


def test_finish_stops_when_told_to():
    X, labels = dataset()
    asked = []

    def stop_at_the_second_question() -> bool:
        asked.append(True)
        return len(asked) == 2

    cases = ((Algorithm.LINEAR_SVM, lambda: True, []), (Algorithm.ENSEMBLE, stop_at_the_second_question, [True] * 2))
    for algorithm, should_stop, questions in cases:
        trainer = ClassifierTrainer(ClassifierConfig(algorithm=algorithm), DIMENSION)
        trainer.add(X, labels)
        with pytest.raises(Cancelled, match="cancelled: its caller went away"):
            trainer.finish(should_stop)
        assert asked == questions  # the ensemble asks between its models and stops when told, not later
