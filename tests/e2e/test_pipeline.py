"""Classifying through the generated Python stub (fenlei.v1.pipeline_pb2_grpc.PipelineStub)
against the session mesh: Classify, ClassifyBatch, ClassifyStream."""

from __future__ import annotations

import jieba.posseg
import pytest

from fenlei.preprocessor.core import TAG_MARK
from fenlei.v1 import common_pb2, features_pb2, pipeline_pb2

TEXTS = [
    "姚明率领火箭队击败湖人",
    "沪指放量大涨 券商股集体涨停",
    "教育部公布高考招生新政策",
    "新款网络游戏公测开启",
    "北京二手房成交量环比下降",
    "周杰伦新专辑首周销量破纪录",
]
TIMEOUT = 30  # a hang guard, not a speed requirement


def documents(prefix: str, texts: list[str]) -> list[common_pb2.Document]:
    return [common_pb2.Document(id=f"{prefix}-{i}", text=text) for i, text in enumerate(texts)]


def assert_ranked(labels, all_labels: list[str]) -> None:
    names = [scored.label for scored in labels]
    scores = [scored.score for scored in labels]
    assert len(set(names)) == len(names), names
    assert set(names) <= set(all_labels), names
    assert scores == sorted(scores, reverse=True), scores


def test_classify_returns_every_label_best_first(mesh) -> None:
    for text in TEXTS:
        answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=text, model="reviews"), timeout=TIMEOUT)
        assert [s.label for s in answer.labels] and len(answer.labels) == len(mesh.labels)
        assert_ranked(answer.labels, mesh.labels)
        assert answer.model == "reviews" and answer.version == "v1"
        assert not answer.explanation


def test_top_k_keeps_the_best_labels(mesh) -> None:
    full = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews"), timeout=TIMEOUT)
    for k in (1, 3):
        answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews", top_k=k), timeout=TIMEOUT)
        assert [s.label for s in answer.labels] == [s.label for s in full.labels[:k]]
        assert [s.score for s in answer.labels] == pytest.approx([s.score for s in full.labels[:k]], abs=1e-6)


def test_pinned_version_answers_and_names_itself(mesh) -> None:
    answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews", version="v1", top_k=2), timeout=TIMEOUT)
    assert (answer.model, answer.version, len(answer.labels)) == ("reviews", "v1", 2)


def test_labels_restrict_the_answer(mesh) -> None:
    wanted = ["negative", "positive"]
    answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews", labels=wanted), timeout=TIMEOUT)
    assert sorted(s.label for s in answer.labels) == wanted
    assert_ranked(answer.labels, wanted)


def test_classify_batch_echoes_ids_in_order(mesh) -> None:
    texts = TEXTS * 5
    docs = [common_pb2.Document(id=f"id-{(i * 7) % len(texts):02d}", text=text) for i, text in enumerate(texts)]
    answer = mesh.pipeline.ClassifyBatch(pipeline_pb2.ClassifyBatchRequest(documents=docs, model="reviews", top_k=3), timeout=TIMEOUT)
    assert [p.id for p in answer.predictions] == [d.id for d in docs]
    assert (answer.model, answer.version) == ("reviews", "v1")
    for prediction in answer.predictions:
        assert len(prediction.labels) == 3
        assert_ranked(prediction.labels, mesh.labels)
    # the same text gets the same answer wherever it sits in the batch
    by_text: dict[str, list[str]] = {}
    for doc, prediction in zip(docs, answer.predictions):
        by_text.setdefault(doc.text, []).append(prediction.labels[0].label)
    assert all(len(set(labels)) == 1 for labels in by_text.values()), by_text


def test_classify_stream_answers_each_message_in_order(mesh) -> None:
    sizes = [1, 7, 300, 0, 25, 600]  # 300 and 600 span several stage batches; 0 is an empty message
    texts = (TEXTS * 200)[: sum(sizes)]
    requests, start = [], 0
    for number, size in enumerate(sizes):
        chunk = texts[start : start + size]
        requests.append(
            pipeline_pb2.ClassifyStreamRequest(
                documents=[common_pb2.Document(id=f"m{number}-d{i}", text=t) for i, t in enumerate(chunk)], model="reviews", top_k=2
            )
        )
        start += size
    responses = list(mesh.pipeline.ClassifyStream(iter(requests), timeout=TIMEOUT))
    assert len(responses) == len(requests)
    for request, response in zip(requests, responses):
        assert [p.id for p in response.predictions] == [d.id for d in request.documents]
        assert all(len(p.labels) == 2 for p in response.predictions)
        if request.documents:
            assert (response.model, response.version) == ("reviews", "v1")


def test_explain_names_the_contributing_features(mesh) -> None:
    answer = mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=TEXTS[0], model="reviews", top_k=1, explain=5), timeout=TIMEOUT)
    assert 1 <= len(answer.explanation) <= 5
    for contribution in answer.explanation:
        assert contribution.feature, contribution
        assert contribution.label in mesh.labels
        assert contribution.weight != 0
    # the names are what the features service says those indices are
    named = mesh.stub("features").DescribeFeatures(
        features_pb2.DescribeFeaturesRequest(
            indices=[c.feature_index for c in answer.explanation], model=common_pb2.ModelRef(name="reviews", version="v1")
        ),
        timeout=TIMEOUT,
    )
    assert list(named.names) == [c.feature for c in answer.explanation]
    # and they come from the text: a term shares a character with it, a word class (¶nr) is one of its words'
    word_classes = {TAG_MARK + pair.flag for pair in jieba.posseg.lcut(TEXTS[0])}
    assert all(c.feature in word_classes or any(ch in TEXTS[0] for ch in c.feature) for c in answer.explanation), answer.explanation

    batch = mesh.pipeline.ClassifyBatch(
        pipeline_pb2.ClassifyBatchRequest(documents=documents("x", TEXTS), model="reviews", explain=3), timeout=TIMEOUT
    )
    for prediction in batch.predictions:
        assert 1 <= len(prediction.explanation) <= 3
        assert all(c.feature for c in prediction.explanation)


def test_classify_batch_and_stream_agree(mesh) -> None:
    options = dict(model="reviews", top_k=4, explain=2)
    unary = [mesh.pipeline.Classify(pipeline_pb2.ClassifyRequest(text=t, **options), timeout=TIMEOUT) for t in TEXTS]
    batch = mesh.pipeline.ClassifyBatch(pipeline_pb2.ClassifyBatchRequest(documents=documents("b", TEXTS), **options), timeout=TIMEOUT)
    stream_requests = [pipeline_pb2.ClassifyStreamRequest(documents=documents(f"s{i}", [t]), **options) for i, t in enumerate(TEXTS)]
    stream = [p for r in mesh.pipeline.ClassifyStream(iter(stream_requests), timeout=TIMEOUT) for p in r.predictions]
    assert len(batch.predictions) == len(stream) == len(unary)
    for one, from_batch, from_stream in zip(unary, batch.predictions, stream):
        labels = [s.label for s in one.labels]
        assert [s.label for s in from_batch.labels] == labels == [s.label for s in from_stream.labels]
        assert [s.score for s in from_batch.labels] == pytest.approx([s.score for s in one.labels], abs=1e-6)
        assert [s.score for s in from_stream.labels] == pytest.approx([s.score for s in one.labels], abs=1e-6)
        features = [c.feature for c in one.explanation]
        assert [c.feature for c in from_batch.explanation] == features == [c.feature for c in from_stream.explanation]


def test_stream_predictions_are_accurate_on_held_out_texts(mesh) -> None:
    """The held-out texts (not used to train or evaluate) classified over one stream; three
    classes, so chance is a third."""
    rows = [line.rsplit("\t", 1) for line in mesh.test_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    truth = [mesh.labels[int(label)] for _, label in rows]

    def requests():
        for start in range(0, len(rows), 100):
            yield pipeline_pb2.ClassifyStreamRequest(
                documents=[common_pb2.Document(id=str(i), text=rows[i][0]) for i in range(start, min(start + 100, len(rows)))],
                model="reviews",
                top_k=1,
            )

    predicted = {int(p.id): p.labels[0].label for r in mesh.pipeline.ClassifyStream(requests(), timeout=TIMEOUT) for p in r.predictions}
    assert sorted(predicted) == list(range(len(rows)))
    accuracy = sum(predicted[i] == truth[i] for i in range(len(rows))) / len(rows)
    assert accuracy >= 0.7, accuracy
