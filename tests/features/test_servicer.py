"""The features servicer in-process: Fit (a labelled stream) → Transform / TransformStream
→ DescribeFeatures, option mapping, versions on disk, errors as status codes."""

from __future__ import annotations

import math

import grpc
import pytest

from fenlei.features import servicer
from fenlei.features.core import FeatureFitter
from fenlei.v1 import common_pb2, features_pb2, features_pb2_grpc

CORPUS = [
    (["足球", "比赛", "进球"], "sports"),
    (["足球", "球员"], "sports"),
    (["比赛", "冠军", "足球"], "sports"),
    (["股票", "上涨", "市场"], "finance"),
    (["股票", "基金"], "finance"),
    (["市场", "下跌", "股票"], "finance"),
]
VOCABULARY = {term for terms, _ in CORPUS for term in terms}  # 10 terms
IN_TWO_DOCUMENTS = {"足球", "比赛", "股票", "市场"}


@pytest.fixture(scope="module")
def served(module_servers, helpers, tmp_path_factory):
    return module_servers.start("features", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("features-home")))


@pytest.fixture
def stub(served) -> features_pb2_grpc.FeaturesStub:
    return features_pb2_grpc.FeaturesStub(served.channel)


def fit_requests(model: common_pb2.ModelRef, corpus=CORPUS, per_message: int = 4, **options) -> list[features_pb2.FitRequest]:
    """The corpus in messages of per_message documents; model and options in the first."""
    requests = []
    for start in range(0, len(corpus), per_message):
        request = features_pb2.FitRequest(
            documents=[
                common_pb2.LabelledDocument(document=common_pb2.TokenizedDocument(tokens=terms), label=label)
                for terms, label in corpus[start : start + per_message]
            ]
        )
        if start == 0:
            request.model.CopyFrom(model)
            request.options.CopyFrom(features_pb2.FeatureOptions(**options))
        requests.append(request)
    return requests


def fit(stub, helpers, store, name: str, corpus=CORPUS, **options) -> tuple[common_pb2.ModelRef, features_pb2.FitResponse]:
    _, model = helpers.reserve(store, name)
    answer = stub.Fit(iter(fit_requests(model, corpus, **options)), timeout=helpers.TIMEOUT)
    assert answer.model == model
    return model, answer


def transform(stub, helpers, model, *token_lists) -> list[common_pb2.FeatureVector]:
    request = features_pb2.TransformRequest(
        documents=[common_pb2.TokenizedDocument(id=f"v{i}", tokens=tokens) for i, tokens in enumerate(token_lists)], model=model
    )
    vectors = list(stub.Transform(request, timeout=helpers.TIMEOUT).vectors)
    assert [v.id for v in vectors] == [f"v{i}" for i in range(len(token_lists))]
    for vector in vectors:
        assert len(vector.indices) == len(vector.values)
    return vectors


def describe(stub, helpers, model, indices) -> list[str]:
    return list(stub.DescribeFeatures(features_pb2.DescribeFeaturesRequest(indices=indices, model=model), timeout=helpers.TIMEOUT).names)


def weights(stub, helpers, model, vector) -> dict[str, float]:
    return dict(zip(describe(stub, helpers, model, list(vector.indices)), vector.values))


def test_fit_transform_describe(stub, helpers, served) -> None:
    model, answer = fit(stub, helpers, served.store, "feat-basic")
    assert (answer.documents, answer.vocabulary_size, answer.dimension) == (6, len(VOCABULARY), len(VOCABULARY))
    assert set(describe(stub, helpers, model, list(range(answer.dimension)))) == VOCABULARY

    known, single, unknown = transform(stub, helpers, model, ["足球", "进球", "没见过"], ["股票"], ["没见过"])
    assert set(weights(stub, helpers, model, known)) == {"足球", "进球"}
    assert all(value > 0 for value in known.values)
    assert all(index < answer.dimension for index in known.indices)
    assert describe(stub, helpers, model, list(single.indices)) == ["股票"]
    assert list(unknown.indices) == [] and list(unknown.values) == []  # no known terms: an empty vector


def test_describe_is_parallel_to_the_indices(stub, helpers, served) -> None:
    model, answer = fit(stub, helpers, served.store, "feat-describe")
    forward = describe(stub, helpers, model, list(range(answer.dimension)))
    assert describe(stub, helpers, model, list(reversed(range(answer.dimension)))) == list(reversed(forward))
    assert describe(stub, helpers, model, [3, 3, 0]) == [forward[3], forward[3], forward[0]]
    error = helpers.rpc_error(stub.DescribeFeatures, features_pb2.DescribeFeaturesRequest(indices=[answer.dimension], model=model))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and str(answer.dimension) in error.details(), error.details()


def test_sublinear_tf_option(stub, helpers, served) -> None:
    document = ["足球", "足球", "进球"]
    ratios = {}
    for sublinear in (True, False):
        model, _ = fit(stub, helpers, served.store, f"feat-sublinear-{str(sublinear).lower()}", sublinear_tf=sublinear)
        [vector] = transform(stub, helpers, model, document)
        named = weights(stub, helpers, model, vector)
        ratios[sublinear] = named["足球"] / named["进球"]
    # a term seen twice weighs 2x raw, (1 + ln 2)x sublinear: the ratio of ratios shows which
    assert ratios[False] / ratios[True] == pytest.approx(2 / (1 + math.log(2)), rel=1e-4)


def test_min_df_option(stub, helpers, served) -> None:
    model, answer = fit(stub, helpers, served.store, "feat-min-df", min_df=2)
    assert (answer.vocabulary_size, answer.dimension) == (4, 4)
    assert set(describe(stub, helpers, model, [0, 1, 2, 3])) == IN_TWO_DOCUMENTS


@pytest.mark.parametrize(
    "selection",
    [features_pb2.FEATURE_SELECTION_CHI2, features_pb2.FEATURE_SELECTION_MUTUAL_INFO, features_pb2.FEATURE_SELECTION_ANOVA_F],
    ids=["chi2", "mutual_info", "anova_f"],
)
def test_selection_keeps_top_k(stub, helpers, served, selection) -> None:
    name = f"feat-select-{features_pb2.FeatureSelection.Name(selection).lower().replace('_', '-')}"
    model, answer = fit(stub, helpers, served.store, name, selection=selection, top_k=3)
    assert (answer.vocabulary_size, answer.dimension) == (len(VOCABULARY), 3)
    kept = describe(stub, helpers, model, [0, 1, 2])
    assert len(set(kept)) == 3 and set(kept) <= VOCABULARY
    [vector] = transform(stub, helpers, model, sorted(VOCABULARY))
    assert set(weights(stub, helpers, model, vector)) == set(kept)


def test_transform_stream_answers_in_order(stub, helpers, served) -> None:
    model, _ = fit(stub, helpers, served.store, "feat-stream")
    requests = [
        features_pb2.TransformStreamRequest(
            documents=[common_pb2.TokenizedDocument(id=f"m{n}-{i}", tokens=terms) for i, (terms, _) in enumerate(CORPUS[: n + 1])],
            model=model,
        )
        for n in range(5)
    ]
    requests.insert(2, features_pb2.TransformStreamRequest(model=model))  # an empty batch: an empty answer
    answers = list(stub.TransformStream(iter(requests), timeout=helpers.TIMEOUT))
    assert [[v.id for v in a.vectors] for a in answers] == [[d.id for d in r.documents] for r in requests]
    unary = transform(stub, helpers, model, *[terms for terms, _ in CORPUS[:5]])
    assert [(list(v.indices), list(v.values)) for v in answers[-1].vectors] == [(list(v.indices), list(v.values)) for v in unary]


def test_versions_on_disk_by_name_and_version(stub, helpers, served) -> None:
    store = served.store
    other = [(["电影", "导演"], "film"), (["电影", "票房"], "film"), (["手机", "芯片"], "tech"), (["手机", "屏幕"], "tech")]
    v1 = helpers.publish(store, fit(stub, helpers, store, "feat-versions")[0])
    v2 = helpers.publish(store, fit(stub, helpers, store, "feat-versions", corpus=other)[0])
    assert (v1.version, v2.version) == ("v1", "v2")
    newest = common_pb2.ModelRef(name="feat-versions")
    [in_v1] = transform(stub, helpers, v1, ["电影", "足球"])
    [in_newest] = transform(stub, helpers, newest, ["电影", "足球"])
    assert describe(stub, helpers, v1, list(in_v1.indices)) == ["足球"]
    assert describe(stub, helpers, newest, list(in_newest.indices)) == ["电影"]


def test_fitting_into_a_published_version_is_refused(stub, helpers, served) -> None:
    draft, _ = fit(stub, helpers, served.store, "feat-published")
    model = helpers.publish(served.store, draft)
    error = helpers.rpc_error(stub.Fit, iter(fit_requests(model)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "published" in error.details(), error.details()
    # nor does the draft it was take fits any more
    error = helpers.rpc_error(stub.Fit, iter(fit_requests(draft)))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "published or discarded" in error.details(), error.details()
    # the published version is untouched and still serves
    assert transform(stub, helpers, model, ["足球"])[0].indices


@pytest.mark.parametrize(
    "case, code, named",
    [
        ("empty-stream", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ("no-model", grpc.StatusCode.INVALID_ARGUMENT, "name and version"),
        ("unreserved-version", grpc.StatusCode.NOT_FOUND, "v9"),
        ("one-class", grpc.StatusCode.INVALID_ARGUMENT, "two"),
        ("empty-label", grpc.StatusCode.INVALID_ARGUMENT, "label"),
        ("top-k-without-selection", grpc.StatusCode.INVALID_ARGUMENT, "selection"),
        ("batch-over-limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "65"),
    ],
    ids=["empty-stream", "no-model", "unreserved-version", "one-class", "empty-label", "top-k-without-selection", "batch-over-limit"],
)
def test_bad_fits(stub, helpers, served, case, code, named) -> None:
    draft, model = helpers.reserve(served.store, f"feat-bad-{case}")
    requests = fit_requests(model)
    if case == "empty-stream":
        requests = []
    elif case == "no-model":
        requests[0].ClearField("model")
    elif case == "unreserved-version":
        requests[0].model.version = "v9"
    elif case == "one-class":
        requests = fit_requests(model, [(terms, "sports") for terms, _ in CORPUS])
    elif case == "empty-label":
        requests[-1].documents[-1].label = ""
    elif case == "top-k-without-selection":
        requests[0].options.top_k = 5
    elif case == "batch-over-limit":
        requests = fit_requests(model, CORPUS * 11, per_message=65)
    error = helpers.rpc_error(stub.Fit, iter(requests))
    assert error.code() == code and named in error.details(), (error.code(), error.details())
    # nothing was stored for the version
    assert not draft.part("features").exists()


@pytest.mark.parametrize(
    "model, code, named",
    [
        (common_pb2.ModelRef(name="no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model"),
        (common_pb2.ModelRef(), grpc.StatusCode.INVALID_ARGUMENT, "model name"),
        (common_pb2.ModelRef(name="feat-basic", version="v42"), grpc.StatusCode.NOT_FOUND, "v42"),
    ],
    ids=["unknown-model", "no-model", "unknown-version"],
)
def test_bad_transforms(stub, helpers, model, code, named) -> None:
    request = features_pb2.TransformRequest(documents=[common_pb2.TokenizedDocument(id="x", tokens=["足球"])], model=model)
    error = helpers.rpc_error(stub.Transform, request)
    assert error.code() == code and named in error.details(), (error.code(), error.details())
    error = helpers.rpc_error(stub.DescribeFeatures, features_pb2.DescribeFeaturesRequest(indices=[0], model=model))
    assert error.code() == code, error.details()


def test_transform_batch_over_the_limit(stub, helpers, served) -> None:
    model, _ = fit(stub, helpers, served.store, "feat-limit")
    documents = [common_pb2.TokenizedDocument(id=str(i), tokens=["足球"]) for i in range(65)]
    error = helpers.rpc_error(stub.Transform, features_pb2.TransformRequest(documents=documents, model=model))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "65" in error.details(), error.details()
    answers, error = helpers.stream_error(
        stub.TransformStream,
        [
            features_pb2.TransformStreamRequest(documents=documents[:2], model=model),
            features_pb2.TransformStreamRequest(documents=documents, model=model),
        ],
    )
    assert len(answers) == 1 and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "stream message 1" in error.details(), error.details()


def test_a_fit_whose_caller_goes_away_stops_and_writes_nothing(stub, helpers, served, monkeypatch) -> None:
    published = helpers.publish(served.store, fit(stub, helpers, served.store, "feat-cancel-other")[0])
    draft, model = helpers.reserve(served.store, "feat-cancelled")
    helpers.cancel_while_finishing(
        monkeypatch,
        FeatureFitter,
        lambda: stub.Fit.future(iter(fit_requests(model)), timeout=helpers.TIMEOUT),
        lambda: transform(stub, helpers, published, ["足球"]),  # the server serves while the fit computes
    )
    assert not draft.part("features").exists()  # nothing was saved
    assert fit(stub, helpers, served.store, "feat-after-cancel")[1].dimension == len(VOCABULARY)
