"""The preprocessor servicer in-process: each request option overrides the model's (or
the default) configuration, models on disk by name and version, errors as status codes."""

from __future__ import annotations

import grpc
import pytest

from fenlei.preprocessor import servicer
from fenlei.preprocessor.core import PreprocessConfig
from fenlei.runtime.models import ModelStore
from fenlei.v1 import common_pb2, preprocessor_pb2, preprocessor_pb2_grpc

TOKENS = ["ＡＢＣ", "，", "的", "北京", "123", "!!", "猫", "大学"]
# jieba's tokens for "访问https://example.com/a或写信给someone@example.com"
ADDRESSES = ["访问", "https", "://", "example", ".", "com", "/", "a", "或", "写信", "给", "someone", "@", "example", ".", "com"]
UNIGRAMS = dict(word_ngrams=preprocessor_pb2.NgramRange(min=1, max=1), char_ngrams=preprocessor_pb2.NgramRange(max=0))


@pytest.fixture(scope="module")
def served(module_servers, helpers, tmp_path_factory):
    return module_servers.start("preprocessor", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("preprocessor-home")))


@pytest.fixture
def stub(served) -> preprocessor_pb2_grpc.PreprocessorStub:
    return preprocessor_pb2_grpc.PreprocessorStub(served.channel)


def terms(stub, helpers, *token_lists, model=None, **options) -> list[list[str]]:
    request = preprocessor_pb2.PreprocessRequest(
        documents=[common_pb2.TokenizedDocument(id=f"t{i}", tokens=tokens) for i, tokens in enumerate(token_lists)], model=model
    )
    if options:
        request.options.CopyFrom(preprocessor_pb2.PreprocessOptions(**options))
    answer = stub.Preprocess(request, timeout=helpers.TIMEOUT)
    assert [d.id for d in answer.documents] == [f"t{i}" for i in range(len(token_lists))]
    return [list(d.tokens) for d in answer.documents]


def publish_config(store: ModelStore, name: str, **fields) -> str:
    with store.create_draft(name) as draft:
        PreprocessConfig.from_json({**PreprocessConfig().to_json(), **fields}).save(draft.part("preprocessor"))
        return store.publish(draft, {})


def test_default_filters(stub, helpers) -> None:
    # width and case normalised; punctuation and stopwords dropped; digits kept
    assert terms(stub, helpers, TOKENS, **UNIGRAMS) == [["abc", "北京", "123", "猫", "大学"]]


@pytest.mark.parametrize(
    "option, expected",
    [
        (dict(remove_digits=True), ["abc", "北京", "猫", "大学"]),
        (dict(remove_stopwords=False), ["abc", "的", "北京", "123", "猫", "大学"]),
        (dict(lowercase=False), ["ABC", "北京", "123", "猫", "大学"]),
        (dict(normalize_width=False), ["ａｂｃ", "北京", "123", "猫", "大学"]),
        (dict(remove_punctuation=False), ["abc", ",", "北京", "123", "!!", "猫", "大学"]),
        (dict(min_token_length=2), ["abc", "北京", "123", "大学"]),
        (dict(extra_stopwords=["北京"]), ["abc", "123", "猫", "大学"]),
        # an option set to its default value is still an override, not "unset"
        (dict(remove_digits=False, lowercase=True), ["abc", "北京", "123", "猫", "大学"]),
    ],
    ids=[
        "remove_digits",
        "keep_stopwords",
        "keep_case",
        "keep_width",
        "keep_punctuation",
        "min_token_length",
        "extra_stopwords",
        "explicit-defaults",
    ],
)
def test_each_option_overrides(stub, helpers, option, expected) -> None:
    assert terms(stub, helpers, TOKENS, **UNIGRAMS, **option) == [expected]


def test_urls_and_emails(stub, helpers) -> None:
    assert terms(stub, helpers, ADDRESSES, **UNIGRAMS) == [["访问", "写信"]]
    kept_url = terms(stub, helpers, ADDRESSES, **UNIGRAMS, remove_urls=False)[0]
    assert "https" in kept_url and "example" in kept_url and "someone" not in kept_url
    kept_email = terms(stub, helpers, ADDRESSES, **UNIGRAMS, remove_emails=False)[0]
    assert "someone" in kept_email and "https" not in kept_email


def test_ngram_ranges(stub, helpers) -> None:
    words = ["北京", "大学", "教授"]
    off = preprocessor_pb2.NgramRange(max=0)
    assert terms(stub, helpers, words, word_ngrams=preprocessor_pb2.NgramRange(min=1, max=2), char_ngrams=off) == [
        ["北京", "大学", "教授", "北京 大学", "大学 教授"]
    ]
    assert terms(stub, helpers, words, word_ngrams=preprocessor_pb2.NgramRange(min=2, max=2), char_ngrams=off) == [
        ["北京 大学", "大学 教授"]
    ]
    chars = terms(stub, helpers, ["北京大学"], word_ngrams=off, char_ngrams=preprocessor_pb2.NgramRange(min=2, max=2))[0]
    assert len(chars) == 3 and all(c.endswith(g) for c, g in zip(chars, ["北京", "京大", "大学"])), chars
    both = terms(
        stub,
        helpers,
        ["北京大学"],
        word_ngrams=preprocessor_pb2.NgramRange(min=1, max=1),
        char_ngrams=preprocessor_pb2.NgramRange(min=1, max=3),
    )[0]
    assert len(both) == 1 + 4 + 3 + 2 and "北京大学" in both


def test_empty_token_lists_give_empty_terms(stub, helpers) -> None:
    assert terms(stub, helpers, [], ["，", "的"], ["北京"], **UNIGRAMS) == [[], [], ["北京"]]


@pytest.mark.parametrize(
    "options, named",
    [
        (dict(word_ngrams=preprocessor_pb2.NgramRange(min=3, max=1)), "word_ngrams"),
        (dict(char_ngrams=preprocessor_pb2.NgramRange(min=1, max=99)), "char_ngrams"),
        (dict(word_ngrams=preprocessor_pb2.NgramRange(max=0), char_ngrams=preprocessor_pb2.NgramRange(max=0)), "both"),
        (dict(min_token_length=0), "min_token_length"),
    ],
    ids=["word-range-backwards", "char-range-too-long", "no-terms-at-all", "zero-min-length"],
)
def test_bad_options(stub, helpers, options, named) -> None:
    request = preprocessor_pb2.PreprocessRequest(
        documents=[common_pb2.TokenizedDocument(id="x", tokens=TOKENS)], options=preprocessor_pb2.PreprocessOptions(**options)
    )
    error = helpers.rpc_error(stub.Preprocess, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and named in error.details(), (error.code(), error.details())


def test_stream_answers_each_message_with_its_own_options(stub, helpers) -> None:
    def message(prefix: str, **options) -> preprocessor_pb2.PreprocessStreamRequest:
        return preprocessor_pb2.PreprocessStreamRequest(
            documents=[common_pb2.TokenizedDocument(id=f"{prefix}{i}", tokens=TOKENS) for i in range(3)],
            options=preprocessor_pb2.PreprocessOptions(**UNIGRAMS, **options),
        )

    requests = [
        message("a"),
        message("b", remove_stopwords=False),
        preprocessor_pb2.PreprocessStreamRequest(),
        message("c", remove_digits=True),
    ]
    answers = list(stub.PreprocessStream(iter(requests), timeout=helpers.TIMEOUT))
    assert [[d.id for d in a.documents] for a in answers] == [[d.id for d in r.documents] for r in requests]
    assert [list(a.documents[0].tokens) if a.documents else None for a in answers] == [
        ["abc", "北京", "123", "猫", "大学"],
        ["abc", "的", "北京", "123", "猫", "大学"],
        None,
        ["abc", "北京", "猫", "大学"],
    ]


def test_models_on_disk_by_name_and_version(stub, helpers, served) -> None:
    store = served.store
    unigrams = dict(word_ngrams=[1, 1], char_ngrams=[0, 0])
    assert publish_config(store, "pre-versions", remove_stopwords=False, **unigrams) == "v1"
    assert publish_config(store, "pre-versions", extra_stopwords=["北京"], **unigrams) == "v2"

    def model(version: str = "") -> common_pb2.ModelRef:
        return common_pb2.ModelRef(name="pre-versions", version=version)

    assert terms(stub, helpers, TOKENS, model=model("v1")) == [["abc", "的", "北京", "123", "猫", "大学"]]
    assert terms(stub, helpers, TOKENS, model=model()) == terms(stub, helpers, TOKENS, model=model("v2")) == [["abc", "123", "猫", "大学"]]
    # request options override the model's; extra stopwords add to the model's
    assert terms(stub, helpers, TOKENS, model=model("v1"), remove_stopwords=True) == [["abc", "北京", "123", "猫", "大学"]]
    assert terms(stub, helpers, TOKENS, model=model("v2"), extra_stopwords=["大学"]) == [["abc", "123", "猫"]]
    assert terms(stub, helpers, TOKENS, model=model("v2"), char_ngrams=preprocessor_pb2.NgramRange(min=1, max=1))[0][:4] == [
        "abc",
        "123",
        "猫",
        "大学",
    ]


@pytest.mark.parametrize(
    "model, code, named",
    [
        (common_pb2.ModelRef(name="no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model"),
        (common_pb2.ModelRef(name="pre-x", version="v7"), grpc.StatusCode.NOT_FOUND, "v7"),
        (common_pb2.ModelRef(name="UPPER"), grpc.StatusCode.INVALID_ARGUMENT, "UPPER"),
    ],
    ids=["unknown-model", "unknown-version", "bad-name"],
)
def test_bad_models(stub, helpers, model, code, named) -> None:
    request = preprocessor_pb2.PreprocessRequest(documents=[common_pb2.TokenizedDocument(id="x", tokens=TOKENS)], model=model)
    error = helpers.rpc_error(stub.Preprocess, request)
    assert error.code() == code and named in error.details(), (error.code(), error.details())


def test_batch_over_the_limit(stub, helpers) -> None:
    request = preprocessor_pb2.PreprocessRequest(documents=[common_pb2.TokenizedDocument(id=str(i), tokens=TOKENS) for i in range(65)])
    error = helpers.rpc_error(stub.Preprocess, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "65" in error.details(), error.details()
    answers, error = helpers.stream_error(
        stub.PreprocessStream,
        [
            preprocessor_pb2.PreprocessStreamRequest(documents=request.documents[:3]),
            preprocessor_pb2.PreprocessStreamRequest(documents=request.documents),
        ],
    )
    assert len(answers) == 1 and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "stream message 1" in error.details(), error.details()
