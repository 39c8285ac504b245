"""Bad input against the session mesh: each case gets the right status code and a message
naming the problem, and afterwards the service still answers a good request."""

from __future__ import annotations

import grpc
import pytest

from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc, segmenter_pb2

GOOD = "姚明率领火箭队击败湖人"
TIMEOUT = 30  # a hang guard; every call here answers in well under a second


def still_serving(mesh, pipeline=None) -> None:
    answer = (pipeline or mesh.pipeline).Classify(pipeline_pb2.ClassifyRequest(text=GOOD, model="reviews", top_k=1), timeout=TIMEOUT)
    assert answer.labels and answer.version == "v1"


def rejected(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(*args, timeout=TIMEOUT, **kwargs)
    return failure.value


def classify_error(mesh, **fields) -> grpc.RpcError:
    fields.setdefault("model", "reviews")
    return rejected(mesh.pipeline.Classify, pipeline_pb2.ClassifyRequest(**fields))


@pytest.mark.parametrize("text", ["", " ", "  \t\r\n  ", "\u3000\u3000"], ids=["empty", "space", "whitespace", "ideographic-space"])
def test_empty_and_whitespace_text(mesh, text) -> None:
    error = classify_error(mesh, text=text)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no text" in error.details(), error.details()
    still_serving(mesh)


def test_empty_document_in_a_batch_is_named_by_id(mesh) -> None:
    docs = [common_pb2.Document(id="fine", text=GOOD), common_pb2.Document(id="blank-one", text=" ")]
    error = rejected(mesh.pipeline.ClassifyBatch, pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "blank-one" in error.details(), error.details()
    still_serving(mesh)


def test_a_one_megabyte_document(mesh) -> None:
    text = "中文" * 175_000  # 350,000 characters, 1.05 MB of UTF-8
    assert len(text.encode("utf-8")) > 1_000_000
    error = classify_error(mesh, text=text)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "350,000" in error.details() and "limit" in error.details(), error.details()
    # the same through a batch names the document
    docs = [common_pb2.Document(id="ok", text=GOOD), common_pb2.Document(id="huge", text=text)]
    error = rejected(mesh.pipeline.ClassifyBatch, pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "huge" in error.details(), error.details()
    still_serving(mesh)


def test_a_batch_over_the_limit(mesh) -> None:
    docs = [common_pb2.Document(id=str(i), text=GOOD) for i in range(4097)]
    error = rejected(mesh.pipeline.ClassifyBatch, pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4097" in error.details() and "4096" in error.details(), error.details()
    # a stage enforces the same limit on its own
    error = rejected(mesh.stub("segmenter").Segment, segmenter_pb2.SegmentRequest(documents=docs))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "4097" in error.details()
    still_serving(mesh)


def test_a_message_over_the_size_limit(mesh) -> None:
    """17 MB is over the services' 16 MiB message limit: refused before any work."""
    docs = [common_pb2.Document(id=str(i), text="字" * 60_000) for i in range(100)]
    request = pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews")
    assert request.ByteSize() > 16 << 20
    error = rejected(mesh.pipeline.ClassifyBatch, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details(), error.details()
    still_serving(mesh)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, built by hand."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


@pytest.mark.parametrize(
    "service, method, body",
    [
        # ClassifyRequest{text: <invalid UTF-8>, model: "reviews"}
        ("pipeline", "/fenlei.v1.Pipeline/Classify", _field(1, b"\xe4\xb8\xad\xff\xfe") + _field(2, b"reviews")),
        # SegmentRequest{documents: [Document{id: "x", text: <invalid UTF-8>}]}
        ("segmenter", "/fenlei.v1.Segmenter/Segment", _field(1, _field(1, b"x") + _field(2, b"\xc3\x28abc"))),
    ],
    ids=["pipeline", "segmenter"],
)
def test_invalid_utf8_over_raw_grpc(mesh, service, method, body) -> None:
    raw = mesh.channel(service).unary_unary(method)  # no serializers: bytes go out as they are
    error = rejected(raw, body)
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL), (error.code(), error.details())
    still_serving(mesh)
    # the same service answers a well-formed request sent the same raw way
    if service == "segmenter":
        good = segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id="x", text="北京")]).SerializeToString()
        assert segmenter_pb2.SegmentResponse.FromString(raw(good, timeout=TIMEOUT)).documents[0].tokens == ["北京"]


@pytest.mark.parametrize("rpc", ["Classify", "ClassifyBatch", "ClassifyStream"])
def test_unknown_model(mesh, rpc) -> None:
    if rpc == "Classify":
        error = classify_error(mesh, text=GOOD, model="no-such-model")
    elif rpc == "ClassifyBatch":
        error = rejected(
            mesh.pipeline.ClassifyBatch,
            pipeline_pb2.ClassifyBatchRequest(documents=[common_pb2.Document(id="a", text=GOOD)], model="no-such-model"),
        )
    else:
        request = pipeline_pb2.ClassifyStreamRequest(documents=[common_pb2.Document(id="a", text=GOOD)], model="no-such-model")
        with pytest.raises(grpc.RpcError) as failure:
            list(mesh.pipeline.ClassifyStream(iter([request]), timeout=TIMEOUT))
        error = failure.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in error.details(), error.details()
    still_serving(mesh)


def test_unknown_version_and_bad_model_names(mesh) -> None:
    error = classify_error(mesh, text=GOOD, version="v99")
    assert error.code() == grpc.StatusCode.NOT_FOUND and "v99" in error.details(), error.details()
    error = classify_error(mesh, text=GOOD, model="../reviews")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "../reviews" in error.details(), error.details()
    error = classify_error(mesh, text=GOOD, version="latest")  # a name an alias could have
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no version or alias 'latest'" in error.details(), error.details()
    error = classify_error(mesh, text=GOOD, version="latest/../v1")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "latest/../v1" in error.details(), error.details()
    still_serving(mesh)


def test_unknown_label_is_named(mesh) -> None:
    error = classify_error(mesh, text=GOOD, labels=["positive", "no-such-label"])
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), error.code()
    assert "no-such-label" in error.details(), error.details()
    still_serving(mesh)


def test_stage_errors_name_the_callers_stream_message(mesh, dedicated_pipeline) -> None:
    """An error found by a stage (the classifier: unknown label) reaches the caller in the
    caller's terms: a unary call has no stream messages, and in a ClassifyStream the error
    names the caller's message, not a position in the pipeline's private stage streams."""
    error = classify_error(mesh, text=GOOD, labels=["no-such-label"])
    assert "no-such-label" in error.details()
    assert "stream message" not in error.details(), error.details()

    good = pipeline_pb2.ClassifyStreamRequest(documents=[common_pb2.Document(id="a", text=GOOD)], model="reviews")
    bad = pipeline_pb2.ClassifyStreamRequest(documents=[common_pb2.Document(id="b", text=GOOD)], model="reviews", labels=["no-such-label"])
    # the failing stream is aborted mid-way: a pipeline of the test's own takes that risk
    with grpc.insecure_channel(dedicated_pipeline().address) as channel:
        pipeline = pipeline_pb2_grpc.PipelineStub(channel)
        answers = []
        with pytest.raises(grpc.RpcError) as failure:
            for response in pipeline.ClassifyStream(iter([good, good, bad, good]), timeout=TIMEOUT):
                answers.append(response)
        assert len(answers) == 2
        details = failure.value.details()
        assert "no-such-label" in details
        assert "stream message 2:" in details and details.count("stream message") == 1, details
        still_serving(mesh, pipeline)


def test_stream_whose_500th_document_is_empty(mesh, dedicated_pipeline) -> None:
    """Five messages of 200 documents; document 499 (the 500th, in message 2) is empty. The
    answers to messages 0 and 1 arrive, then INVALID_ARGUMENT naming that document."""
    texts = ["北京二手房成交量环比下降", GOOD, "教育部公布高考招生新政策", "新款网络游戏公测开启"]
    requests = []
    for number in range(5):
        docs = [
            common_pb2.Document(id=f"doc-{i}", text="" if i == 499 else texts[i % len(texts)])
            for i in range(number * 200, (number + 1) * 200)
        ]
        requests.append(pipeline_pb2.ClassifyStreamRequest(documents=docs, model="reviews", top_k=1))

    # the failing stream is aborted mid-way: a pipeline of the test's own takes that risk
    with grpc.insecure_channel(dedicated_pipeline().address) as channel:
        pipeline = pipeline_pb2_grpc.PipelineStub(channel)
        answers = []
        with pytest.raises(grpc.RpcError) as failure:
            for response in pipeline.ClassifyStream(iter(requests), timeout=TIMEOUT):
                answers.append(response)
        error = failure.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'doc-499'" in error.details(), error.details()
        assert "stream message 2" in error.details(), error.details()
        assert len(answers) == 2
        assert [p.id for a in answers for p in a.predictions] == [f"doc-{i}" for i in range(400)]
        assert all(p.labels for a in answers for p in a.predictions)
        still_serving(mesh, pipeline)
        # and a new stream on the same pipeline works
        assert len(list(pipeline.ClassifyStream(iter(requests[:2]), timeout=TIMEOUT))) == 2
