"""The classifier servicer in-process: Fit (a labelled vector stream) → Predict /
PredictStream with top_k, explain and labels; every algorithm; versions on disk; errors."""

from __future__ import annotations

import grpc
import pytest

from fenlei.classifier import servicer
from fenlei.classifier.core import ClassifierTrainer
from fenlei.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

DIMENSION = 6
LABELS = ["a", "b", "c"]  # label k lives on features 2k and 2k+1
PROBABILISTIC = {
    classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION,
    classifier_pb2.ALGORITHM_MULTINOMIAL_NB,
    classifier_pb2.ALGORITHM_COMPLEMENT_NB,
    classifier_pb2.ALGORITHM_SGD,
}


def vector(label: str, id: str = "", strength: float = 1.0, other: float = 0.0) -> common_pb2.FeatureVector:
    k = LABELS.index(label)
    indices, values = [2 * k, 2 * k + 1], [strength, strength / 2]
    if other:
        indices.append((2 * k + 2) % DIMENSION)
        values.append(other)
    return common_pb2.FeatureVector(id=id, indices=indices, values=values)


def examples(swap: tuple[str, str] | None = None) -> list[common_pb2.LabelledVector]:
    result = []
    for round_ in range(8):
        for label in LABELS:
            target = label
            if swap and label in swap:
                target = swap[1] if label == swap[0] else swap[0]
            result.append(
                common_pb2.LabelledVector(vector=vector(label, strength=1.0 + round_ / 8, other=0.1 * (round_ % 3)), label=target)
            )
    return result


def fit_requests(
    model, algorithm=classifier_pb2.ALGORITHM_UNSPECIFIED, data=None, per_message=10, passes=1, labels=LABELS, dimension=DIMENSION
):
    data = examples() if data is None else data
    requests = []
    for _ in range(passes):
        for start in range(0, len(data), per_message):
            requests.append(classifier_pb2.ClassifierFitRequest(examples=data[start : start + per_message]))
    first = requests[0]
    first.model.CopyFrom(model)
    first.options.CopyFrom(classifier_pb2.ClassifierOptions(algorithm=algorithm, epochs=passes, seed=1))
    first.labels.extend(labels)
    first.dimension = dimension
    return requests


@pytest.fixture(scope="module")
def served(module_servers, helpers, tmp_path_factory):
    return module_servers.start("classifier", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("classifier-home")))


@pytest.fixture
def stub(served) -> classifier_pb2_grpc.ClassifierStub:
    return classifier_pb2_grpc.ClassifierStub(served.channel)


def fit(stub, helpers, store, name, algorithm=classifier_pb2.ALGORITHM_UNSPECIFIED, **kwargs) -> common_pb2.ModelRef:
    _, model = helpers.reserve(store, name)
    passes = 3 if algorithm == classifier_pb2.ALGORITHM_SGD else 1
    answer = stub.Fit(iter(fit_requests(model, algorithm, passes=passes, **kwargs)), timeout=helpers.TIMEOUT)
    assert answer.model == model
    assert answer.examples == passes * len(examples()) and sorted(answer.labels) == LABELS
    return model


def predict(stub, helpers, model, vectors, **options) -> list[common_pb2.Prediction]:
    request = classifier_pb2.PredictRequest(vectors=vectors, model=model, options=classifier_pb2.PredictOptions(**options))
    predictions = list(stub.Predict(request, timeout=helpers.TIMEOUT).predictions)
    assert [p.id for p in predictions] == [v.id for v in vectors]
    return predictions


@pytest.fixture(scope="module")
def lr_model(served, helpers):
    stub = classifier_pb2_grpc.ClassifierStub(served.channel)
    return fit(stub, helpers, served.store, "clf-lr", classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION)


ALGORITHMS = [
    classifier_pb2.ALGORITHM_UNSPECIFIED,
    classifier_pb2.ALGORITHM_LINEAR_SVM,
    classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION,
    classifier_pb2.ALGORITHM_MULTINOMIAL_NB,
    classifier_pb2.ALGORITHM_COMPLEMENT_NB,
    classifier_pb2.ALGORITHM_SGD,
    classifier_pb2.ALGORITHM_ENSEMBLE,
]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=[classifier_pb2.Algorithm.Name(a)[10:].lower() for a in ALGORITHMS])
def test_every_algorithm_fits_and_predicts(stub, helpers, served, algorithm) -> None:
    name = "clf-" + classifier_pb2.Algorithm.Name(algorithm)[10:].lower().replace("_", "-")
    model = fit(stub, helpers, served.store, name, algorithm)
    probes = [vector(label, id=f"probe-{label}") for label in LABELS]
    for probe, prediction in zip(probes, predict(stub, helpers, model, probes)):
        assert prediction.labels[0].label == probe.id[-1], prediction
        assert sorted(s.label for s in prediction.labels) == LABELS
        scores = [s.score for s in prediction.labels]
        assert scores == sorted(scores, reverse=True)
        if algorithm in PROBABILISTIC:
            assert all(0 <= s <= 1 for s in scores) and sum(scores) == pytest.approx(1, abs=1e-4), scores
    # the algorithm was really used: the draft's part says which
    part = served.store.draft_dir(model.name, model.version) / "classifier"
    assert any(part.iterdir())


def test_top_k(stub, helpers, lr_model) -> None:
    probe = [vector("b", id="p")]
    full = predict(stub, helpers, lr_model, probe)[0]
    for k in (1, 2):
        top = predict(stub, helpers, lr_model, probe, top_k=k)[0]
        assert [s.label for s in top.labels] == [s.label for s in full.labels[:k]]
        assert [s.score for s in top.labels] == pytest.approx([s.score for s in full.labels[:k]])
    assert len(predict(stub, helpers, lr_model, probe, top_k=10)[0].labels) == 3


def test_explain(stub, helpers, lr_model) -> None:
    probe = vector("c", id="p", other=0.3)
    [plain] = predict(stub, helpers, lr_model, [probe])
    assert not plain.explanation
    [explained] = predict(stub, helpers, lr_model, [probe], explain=2)
    assert len(explained.explanation) == 2
    for contribution in explained.explanation:
        assert contribution.feature_index in probe.indices
        assert contribution.label == explained.labels[0].label == "c"
        assert contribution.feature == ""  # names are the pipeline's business
    weights = [c.weight for c in explained.explanation]
    assert weights == sorted(weights, reverse=True) and weights[0] > 0
    # c's own features push towards c the most
    assert {c.feature_index for c in explained.explanation} == {4, 5}
    assert len(predict(stub, helpers, lr_model, [probe], explain=50)[0].explanation) == len(probe.indices)


def test_labels_restrict_the_answer(stub, helpers, lr_model) -> None:
    [restricted] = predict(stub, helpers, lr_model, [vector("a", id="p")], labels=["b", "c"])
    assert sorted(s.label for s in restricted.labels) == ["b", "c"]
    assert sum(s.score for s in restricted.labels) == pytest.approx(1, abs=1e-4)  # renormalised over the subset
    error = helpers.rpc_error(
        stub.Predict,
        classifier_pb2.PredictRequest(vectors=[vector("a")], model=lr_model, options=classifier_pb2.PredictOptions(labels=["b", "zzz"])),
    )
    assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), error.code()
    assert "zzz" in error.details(), error.details()


def test_predict_stream_answers_each_message_with_its_options(stub, helpers, lr_model) -> None:
    requests = [
        classifier_pb2.PredictStreamRequest(
            vectors=[vector(label, id=f"m{n}-{label}") for label in LABELS],
            model=lr_model,
            options=classifier_pb2.PredictOptions(top_k=n + 1),
        )
        for n in range(3)
    ]
    requests.insert(1, classifier_pb2.PredictStreamRequest(model=lr_model))  # empty batch, empty answer
    answers = list(stub.PredictStream(iter(requests), timeout=helpers.TIMEOUT))
    assert [[p.id for p in a.predictions] for a in answers] == [[v.id for v in r.vectors] for r in requests]
    assert [[len(p.labels) for p in a.predictions] for a in answers] == [[1, 1, 1], [], [2, 2, 2], [3, 3, 3]]
    assert all(p.labels[0].label == p.id[-1] for a in answers for p in a.predictions)


def test_versions_on_disk_by_name_and_version(stub, helpers, served) -> None:
    store = served.store
    v1 = helpers.publish(store, fit(stub, helpers, store, "clf-versions", classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION))
    v2 = helpers.publish(
        store, fit(stub, helpers, store, "clf-versions", classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION, data=examples(swap=("a", "b")))
    )
    assert (v1.version, v2.version) == ("v1", "v2")
    probe = [vector("a", id="p")]
    assert predict(stub, helpers, v1, probe)[0].labels[0].label == "a"
    assert predict(stub, helpers, v2, probe)[0].labels[0].label == "b"
    assert predict(stub, helpers, common_pb2.ModelRef(name="clf-versions"), probe)[0].labels[0].label == "b"


def test_fitting_into_a_published_version_is_refused(stub, helpers, served) -> None:
    model = helpers.publish(served.store, fit(stub, helpers, served.store, "clf-published", classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION))
    error = helpers.rpc_error(stub.Fit, iter(fit_requests(model, data=examples(swap=("a", "b")))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "published" in error.details(), error.details()
    assert predict(stub, helpers, model, [vector("a", id="p")])[0].labels[0].label == "a"  # unchanged


def test_a_fit_whose_caller_goes_away_stops_and_writes_nothing(stub, helpers, served, lr_model, monkeypatch) -> None:
    draft, model = helpers.reserve(served.store, "clf-cancelled")
    probe = [vector("b", id="p")]
    helpers.cancel_while_finishing(
        monkeypatch,
        ClassifierTrainer,
        lambda: stub.Fit.future(iter(fit_requests(model)), timeout=helpers.TIMEOUT),
        lambda: predict(stub, helpers, lr_model, probe),  # the server serves while the fit computes
    )
    assert not draft.part("classifier").exists()  # nothing was saved
    assert predict(stub, helpers, fit(stub, helpers, served.store, "clf-after-cancel"), probe)[0].labels[0].label == "b"


def _bad_vector_examples(kind: str) -> list[common_pb2.LabelledVector]:
    data = examples()
    if kind == "index":
        data[3].vector.indices[0] = DIMENSION
    elif kind == "fewer-values":
        del data[3].vector.values[-1]
    elif kind == "more-values":
        data[3].vector.values.append(0.5)
    elif kind == "negative":
        data[3].vector.values[0] = -1.0
    return data


@pytest.mark.parametrize(
    "case, code, named",
    [
        ("empty-stream", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ("no-dimension", grpc.StatusCode.INVALID_ARGUMENT, "dimension"),
        ("no-model", grpc.StatusCode.INVALID_ARGUMENT, "name and version"),
        ("index-outside-dimension", grpc.StatusCode.INVALID_ARGUMENT, str(DIMENSION)),
        ("fewer-values-than-indices", grpc.StatusCode.INVALID_ARGUMENT, "indices and values"),
        ("more-values-than-indices", grpc.StatusCode.INVALID_ARGUMENT, "indices and values"),
        ("label-not-in-label-set", grpc.StatusCode.INVALID_ARGUMENT, "c"),
        ("one-class", grpc.StatusCode.INVALID_ARGUMENT, "two"),
        ("sgd-without-label-set", grpc.StatusCode.INVALID_ARGUMENT, "label"),
        ("negative-value-for-naive-bayes", grpc.StatusCode.INVALID_ARGUMENT, "negative"),
        ("batch-over-limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "65"),
    ],
    ids=[
        "empty-stream",
        "no-dimension",
        "no-model",
        "index-outside-dimension",
        "fewer-values-than-indices",
        "more-values-than-indices",
        "label-not-in-label-set",
        "one-class",
        "sgd-without-label-set",
        "negative-value-for-naive-bayes",
        "batch-over-limit",
    ],
)
def test_bad_fits(stub, helpers, served, case, code, named) -> None:
    draft, model = helpers.reserve(served.store, f"clf-bad-{case}")
    algorithm, data, labels, per_message, dimension = classifier_pb2.ALGORITHM_LOGISTIC_REGRESSION, None, LABELS, 10, DIMENSION
    if case == "no-dimension":
        dimension = 0
    elif case == "index-outside-dimension":
        data = _bad_vector_examples("index")
    elif case == "fewer-values-than-indices":
        data = _bad_vector_examples("fewer-values")
    elif case == "more-values-than-indices":
        data = _bad_vector_examples("more-values")
    elif case == "label-not-in-label-set":
        labels = ["a", "b"]
    elif case == "one-class":
        data, labels = [e for e in examples() if e.label == "a"], ["a"]
    elif case == "sgd-without-label-set":
        algorithm, labels = classifier_pb2.ALGORITHM_SGD, []
    elif case == "negative-value-for-naive-bayes":
        algorithm, data = classifier_pb2.ALGORITHM_MULTINOMIAL_NB, _bad_vector_examples("negative")
    elif case == "batch-over-limit":
        data, per_message = examples() * 3, 65
    requests = fit_requests(model, algorithm, data=data, labels=labels, per_message=per_message, dimension=dimension)
    if case == "empty-stream":
        requests = []
    elif case == "no-model":
        requests[0].ClearField("model")
    error = helpers.rpc_error(stub.Fit, iter(requests))
    assert error.code() == code and named in error.details(), (error.code(), error.details())
    assert not draft.part("classifier").exists()


@pytest.mark.parametrize(
    "case, code, named",
    [
        ("unknown-model", grpc.StatusCode.NOT_FOUND, "no-such-model"),
        ("index-outside-dimension", grpc.StatusCode.INVALID_ARGUMENT, str(DIMENSION)),
        ("fewer-values-than-indices", grpc.StatusCode.INVALID_ARGUMENT, "indices and values"),
        ("batch-over-limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "65"),
    ],
    ids=["unknown-model", "index-outside-dimension", "fewer-values-than-indices", "batch-over-limit"],
)
def test_bad_predictions(stub, helpers, lr_model, case, code, named) -> None:
    model, vectors = lr_model, [vector("a", id="p")]
    if case == "unknown-model":
        model = common_pb2.ModelRef(name="no-such-model")
    elif case == "index-outside-dimension":
        vectors[0].indices[0] = DIMENSION
    elif case == "fewer-values-than-indices":
        del vectors[0].values[-1]
    elif case == "batch-over-limit":
        vectors = vectors * 65
    request = classifier_pb2.PredictRequest(vectors=vectors, model=model)
    error = helpers.rpc_error(stub.Predict, request)
    assert error.code() == code and named in error.details(), (error.code(), error.details())
    answers, error = helpers.stream_error(
        stub.PredictStream,
        [
            classifier_pb2.PredictStreamRequest(vectors=[vector("b", id="ok")], model=lr_model),
            classifier_pb2.PredictStreamRequest(vectors=vectors, model=model),
        ],
    )
    assert len(answers) == 1 and error.code() == code and "stream message 1" in error.details(), error.details()
