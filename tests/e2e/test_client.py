"""fenlei.client against the real pipeline of the session mesh (model "reviews").

The client talks to the pipeline's own address (no gateway, so no token needed there).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fenlei.client import AsyncClient, Client
from fenlei.v1 import common_pb2, segmenter_pb2


@pytest.fixture(scope="module")
def titles(mesh) -> list[str]:
    lines = mesh.test_file.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines if line.strip()][:40]


def test_client_classifies_with_the_real_pipeline(mesh, tools, titles):
    with Client(mesh.address("pipeline"), timeout=tools.HANG_GUARD) as client:
        one = client.classify(titles[0], model=tools.MODEL, top_k=3)
        assert len(one.labels) == 3 and one.model == tools.MODEL and one.version
        assert all(label.label in mesh.labels for label in one.labels)
        assert [label.score for label in one.labels] == sorted((label.score for label in one.labels), reverse=True)

        batch = client.classify_batch(titles, model=tools.MODEL, top_k=1)
        assert [p.id for p in batch.predictions] == [str(i) for i in range(len(titles))]
        assert batch.predictions[0].labels[0].label == one.labels[0].label

        streamed = list(client.classify_stream(iter(titles), model=tools.MODEL, top_k=1, batch_size=7))
        assert [p.id for p in streamed] == [p.id for p in batch.predictions]
        assert [p.labels[0].label for p in streamed] == [p.labels[0].label for p in batch.predictions]

        explained = client.classify(titles[0], model=tools.MODEL, top_k=1, explain=3)
        assert explained.explanation and all(c.feature for c in explained.explanation)

        with pytest.raises(grpc.RpcError) as failure:
            client.classify("x", model="no-such-model")
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_client_stub_reaches_a_stage(mesh, tools):
    with Client(mesh.address("segmenter"), timeout=tools.HANG_GUARD) as client:
        answer = client.segmenter.Segment(segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id="a", text="我爱北京天安门")]))
    assert answer.documents[0].id == "a" and "".join(answer.documents[0].tokens) == "我爱北京天安门"


def test_async_client_with_the_real_pipeline(mesh, tools, titles):
    async def run():
        async with AsyncClient(mesh.address("pipeline"), timeout=tools.HANG_GUARD) as client:
            one = await client.classify(titles[0], model=tools.MODEL, top_k=1)
            batch = await client.classify_batch(titles, model=tools.MODEL, top_k=1)
            streamed = [p async for p in client.classify_stream(titles, model=tools.MODEL, top_k=1, batch_size=5)]
            return one, batch, streamed

    one, batch, streamed = asyncio.run(run())
    assert one.labels[0].label == batch.predictions[0].labels[0].label
    assert [(p.id, p.labels[0].label) for p in streamed] == [(p.id, p.labels[0].label) for p in batch.predictions]
