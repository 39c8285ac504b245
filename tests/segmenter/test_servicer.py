"""The segmenter servicer in-process: tokens equal jieba's for every option the request
maps onto the core, models on disk by name and version, errors as status codes."""

from __future__ import annotations

import grpc
import jieba
import jieba.posseg
import pytest

from fenlei.runtime.models import ModelStore
from fenlei.segmenter import servicer
from fenlei.segmenter.core import Mode, SegmentConfig
from fenlei.v1 import common_pb2, segmenter_pb2, segmenter_pb2_grpc

TEXTS = ["他来到了网易杭研大厦", "小明硕士毕业于中国科学院计算所", "蓝鲸智云发布新版本", "我来到北京清华大学"]
MODES = {
    "accurate": segmenter_pb2.SEGMENT_MODE_ACCURATE,
    "search": segmenter_pb2.SEGMENT_MODE_SEARCH,
    "full": segmenter_pb2.SEGMENT_MODE_FULL,
}


@pytest.fixture(scope="module")
def reference() -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def cut(tokenizer: jieba.Tokenizer, text: str, mode: str = "accurate", hmm: bool = True) -> list[str]:
    if mode == "search":
        return tokenizer.lcut_for_search(text, HMM=hmm)
    return tokenizer.lcut(text, cut_all=mode == "full", HMM=hmm)


@pytest.fixture(scope="module")
def samples(texts: dict[str, list[str]]) -> list[str]:
    """60 real texts, newspaper paragraphs and reviews in turn."""
    return [text for three in zip(texts["news"], texts["negative"], texts["positive"]) for text in three][:60]


@pytest.fixture(scope="module")
def served(module_servers, helpers, tmp_path_factory):
    return module_servers.start("segmenter", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("segmenter-home")))


@pytest.fixture
def stub(served) -> segmenter_pb2_grpc.SegmenterStub:
    return segmenter_pb2_grpc.SegmenterStub(served.channel)


def segment(stub, helpers, texts, **options) -> list[common_pb2.TokenizedDocument]:
    request = segmenter_pb2.SegmentRequest(documents=helpers.documents(*texts))
    if options:
        request.options.CopyFrom(segmenter_pb2.SegmentOptions(**options))
    return list(stub.Segment(request, timeout=helpers.TIMEOUT).documents)


def publish_config(store: ModelStore, name: str, config: SegmentConfig) -> str:
    with store.create_draft(name) as draft:
        config.save(draft.part("segmenter"))
        return store.publish(draft, {})


def test_default_segmentation_is_jiebas(stub, helpers, reference, samples) -> None:
    answer = segment(stub, helpers, samples)
    assert [d.id for d in answer] == [f"d{i}" for i in range(len(samples))]
    for document, text in zip(answer, samples):
        assert list(document.tokens) == reference.lcut(text), text
        assert not document.tags


@pytest.mark.parametrize("hmm", [True, False], ids=["hmm", "no-hmm"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_mode_and_hmm_map_onto_jieba(stub, helpers, reference, samples, mode, hmm) -> None:
    texts = TEXTS + samples[:20]
    answer = segment(stub, helpers, texts, mode=MODES[mode], hmm=hmm)
    for document, text in zip(answer, texts):
        assert list(document.tokens) == cut(reference, text, mode, hmm), (mode, hmm, text)


def test_options_really_change_the_answer(stub, helpers) -> None:
    text = TEXTS[0]
    with_hmm = segment(stub, helpers, [text], hmm=True)[0].tokens
    without_hmm = segment(stub, helpers, [text], hmm=False)[0].tokens
    assert "杭研" in with_hmm and "杭研" not in without_hmm
    search = segment(stub, helpers, [TEXTS[1]], mode=segmenter_pb2.SEGMENT_MODE_SEARCH)[0].tokens
    accurate = segment(stub, helpers, [TEXTS[1]], mode=segmenter_pb2.SEGMENT_MODE_ACCURATE)[0].tokens
    assert "科学院" in search and "科学院" not in accurate
    # unset hmm means on, unset mode means accurate
    assert segment(stub, helpers, [text], pos_tags=False)[0].tokens == with_hmm


def test_user_words_apply_to_their_request_only(stub, helpers, reference) -> None:
    words = ["杭研大厦", "蓝鲸智云"]
    answer = segment(stub, helpers, TEXTS, user_words=words)
    with_words = jieba.Tokenizer()
    with_words.FREQ, with_words.total, with_words.initialized = dict(reference.FREQ), reference.total, True
    for word in words:
        with_words.add_word(word)
    for document, text in zip(answer, TEXTS):
        assert list(document.tokens) == with_words.lcut(text), text
    assert "杭研大厦" in answer[0].tokens and "蓝鲸智云" in answer[2].tokens
    # the next request without them gets jieba's dictionary again
    plain = segment(stub, helpers, TEXTS)
    assert [list(d.tokens) for d in plain] == [reference.lcut(t) for t in TEXTS]


def test_pos_tags_are_jiebas(stub, helpers, samples) -> None:
    texts = TEXTS + samples[:10]
    answer = segment(stub, helpers, texts, pos_tags=True)
    for document, text in zip(answer, texts):
        pairs = jieba.posseg.lcut(text)
        assert list(document.tokens) == [p.word for p in pairs], text
        assert list(document.tags) == [p.flag for p in pairs], text


def test_pos_tags_need_accurate_mode(stub, helpers) -> None:
    request = segmenter_pb2.SegmentRequest(
        documents=helpers.documents(TEXTS[0]), options=segmenter_pb2.SegmentOptions(mode=segmenter_pb2.SEGMENT_MODE_FULL, pos_tags=True)
    )
    error = helpers.rpc_error(stub.Segment, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "accurate" in error.details(), error.details()


def test_stream_answers_each_message_with_its_own_options(stub, helpers, reference) -> None:
    requests = [
        segmenter_pb2.SegmentStreamRequest(documents=helpers.documents(*TEXTS, prefix="a")),
        segmenter_pb2.SegmentStreamRequest(
            documents=helpers.documents(*TEXTS, prefix="b"), options=segmenter_pb2.SegmentOptions(mode=segmenter_pb2.SEGMENT_MODE_SEARCH)
        ),
        segmenter_pb2.SegmentStreamRequest(),  # an empty batch gets an empty answer
        segmenter_pb2.SegmentStreamRequest(
            documents=helpers.documents(*TEXTS, prefix="c"), options=segmenter_pb2.SegmentOptions(hmm=False)
        ),
    ]
    answers = list(stub.SegmentStream(iter(requests), timeout=helpers.TIMEOUT))
    assert len(answers) == len(requests)
    assert [[d.id for d in a.documents] for a in answers] == [[d.id for d in r.documents] for r in requests]
    expected = [
        [reference.lcut(t) for t in TEXTS],
        [reference.lcut_for_search(t) for t in TEXTS],
        [],
        [reference.lcut(t, HMM=False) for t in TEXTS],
    ]
    assert [[list(d.tokens) for d in a.documents] for a in answers] == expected


def test_models_on_disk_by_name_and_version(stub, helpers, served, reference) -> None:
    store = served.store
    v1 = publish_config(store, "seg-versions", SegmentConfig(user_words=("杭研大厦",)))
    v2 = publish_config(store, "seg-versions", SegmentConfig(mode=Mode.SEARCH, hmm=False))
    assert (v1, v2) == ("v1", "v2")

    def tokens(version: str = "", text: str = TEXTS[0], **options) -> list[str]:
        request = segmenter_pb2.SegmentRequest(
            documents=helpers.documents(text), model=common_pb2.ModelRef(name="seg-versions", version=version)
        )
        if options:
            request.options.CopyFrom(segmenter_pb2.SegmentOptions(**options))
        return list(stub.Segment(request, timeout=helpers.TIMEOUT).documents[0].tokens)

    assert "杭研大厦" in tokens("v1")
    # newest published version answers for the bare name
    assert tokens() == tokens("v2") == reference.lcut_for_search(TEXTS[0], HMM=False)
    assert tokens(text=TEXTS[1]) == reference.lcut_for_search(TEXTS[1], HMM=False)
    # request options override the model's
    assert tokens("v2", mode=segmenter_pb2.SEGMENT_MODE_ACCURATE, hmm=True) == reference.lcut(TEXTS[0])
    # and request user words add to the model's
    both = tokens("v1", text=TEXTS[0] + TEXTS[2], user_words=["蓝鲸智云"])
    assert "杭研大厦" in both and "蓝鲸智云" in both


def test_options_left_unset_keep_the_models_values(stub, helpers, served) -> None:
    publish_config(served.store, "seg-tagged", SegmentConfig(pos_tags=True))
    request = segmenter_pb2.SegmentRequest(
        documents=helpers.documents(TEXTS[0]),
        model=common_pb2.ModelRef(name="seg-tagged"),
        options=segmenter_pb2.SegmentOptions(hmm=False),  # says nothing about tags
    )
    document = stub.Segment(request, timeout=helpers.TIMEOUT).documents[0]
    assert len(document.tags) == len(document.tokens) > 0
    request.options.pos_tags = False
    assert not stub.Segment(request, timeout=helpers.TIMEOUT).documents[0].tags


def test_a_draft_loads_only_by_its_id(stub, helpers, served) -> None:
    with served.store.create_draft("seg-draft") as draft:
        SegmentConfig(user_words=("杭研大厦",)).save(draft.part("segmenter"))

        def request(version: str) -> segmenter_pb2.SegmentRequest:
            model = common_pb2.ModelRef(name="seg-draft", version=version)
            return segmenter_pb2.SegmentRequest(documents=helpers.documents(TEXTS[0]), model=model)

        assert "杭研大厦" in stub.Segment(request(draft.id), timeout=helpers.TIMEOUT).documents[0].tokens
        for version in ("", "v1"):  # neither "newest" nor a version number reaches a draft
            error = helpers.rpc_error(stub.Segment, request(version))
            assert error.code() == grpc.StatusCode.NOT_FOUND and "seg-draft" in error.details(), error.details()


def test_damaged_model_is_failed_precondition(stub, helpers, served) -> None:
    version = publish_config(served.store, "seg-damaged", SegmentConfig())
    (served.store.version_dir("seg-damaged", version) / "segmenter" / "segmenter.json").write_text("{not json", encoding="utf-8")
    request = segmenter_pb2.SegmentRequest(documents=helpers.documents(TEXTS[0]), model=common_pb2.ModelRef(name="seg-damaged"))
    error = helpers.rpc_error(stub.Segment, request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "damaged" in error.details(), error.details()


@pytest.mark.parametrize(
    "documents, code, named",
    [
        ([("ok", "北京"), ("blank", "")], grpc.StatusCode.INVALID_ARGUMENT, "'blank'"),
        ([("spaces", " \t\u3000 ")], grpc.StatusCode.INVALID_ARGUMENT, "'spaces'"),
        ([("ok", "北京"), ("long", "字" * 2_001)], grpc.StatusCode.RESOURCE_EXHAUSTED, "'long'"),
        ([(str(i), "北京") for i in range(65)], grpc.StatusCode.RESOURCE_EXHAUSTED, "65"),
        ([("nul", "北京\x00大学")], grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
    ],
    ids=["empty", "whitespace", "too-long", "batch-over-limit", "nul-character"],
)
def test_bad_documents(stub, helpers, documents, code, named) -> None:
    request = segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id=i, text=t) for i, t in documents])
    error = helpers.rpc_error(stub.Segment, request)
    assert error.code() == code and named in error.details(), (error.code(), error.details())
    assert segment(stub, helpers, ["北京"])[0].tokens == ["北京"]  # still serving


@pytest.mark.parametrize(
    "model, options, code, named",
    [
        (common_pb2.ModelRef(name="no-such-model"), None, grpc.StatusCode.NOT_FOUND, "no-such-model"),
        (common_pb2.ModelRef(name="Bad Name"), None, grpc.StatusCode.INVALID_ARGUMENT, "Bad Name"),
        (common_pb2.ModelRef(name="seg-x", version="latest/../v1"), None, grpc.StatusCode.INVALID_ARGUMENT, "latest/../v1"),
        (None, segmenter_pb2.SegmentOptions(user_words=["two words"]), grpc.StatusCode.INVALID_ARGUMENT, "two words"),
        (None, segmenter_pb2.SegmentOptions(user_words=[""]), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ],
    ids=["unknown-model", "bad-model-name", "bad-version", "unmatchable-user-word", "empty-user-word"],
)
def test_bad_model_or_options(stub, helpers, model, options, code, named) -> None:
    request = segmenter_pb2.SegmentRequest(documents=helpers.documents(TEXTS[0]), model=model, options=options)
    error = helpers.rpc_error(stub.Segment, request)
    assert error.code() == code and named in error.details(), (error.code(), error.details())


def test_stream_error_names_the_message_and_document(stub, helpers) -> None:
    requests = [
        segmenter_pb2.SegmentStreamRequest(documents=helpers.documents("北京", "上海", prefix="first-")),
        segmenter_pb2.SegmentStreamRequest(
            documents=[common_pb2.Document(id="ok", text="北京"), common_pb2.Document(id="bad-one", text=" ")]
        ),
        segmenter_pb2.SegmentStreamRequest(documents=helpers.documents("广州")),
    ]
    answers, error = helpers.stream_error(stub.SegmentStream, requests)
    assert [[d.id for d in a.documents] for a in answers] == [["first-0", "first-1"]]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stream message 1" in error.details() and "'bad-one'" in error.details(), error.details()
