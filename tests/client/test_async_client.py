"""fenlei.client.AsyncClient against a scripted Pipeline on loopback (see conftest.py).

No pytest-asyncio: each test runs its coroutine with asyncio.run.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from fenlei.client import AsyncClient
from fenlei.v1 import common_pb2, pipeline_pb2, pipeline_pb2_grpc

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def client_for(fake, **kwargs) -> AsyncClient:
    return AsyncClient(fake.address, **{**FAST, **kwargs})


def test_classify_batch_and_stream(fake):
    texts = [f"第{i}条" for i in range(10)]

    async def main():
        async with client_for(fake) as client:
            one = await client.classify("体育新闻", model="news", top_k=2, labels=["体育"])
            batch = await client.classify_batch(["甲", common_pb2.Document(id="b", text="乙")])
            streamed = [p async for p in client.classify_stream(texts, model="news", batch_size=4)]
            return one, batch, streamed

    one, batch, streamed = run(main())
    assert isinstance(one, pipeline_pb2.ClassifyResponse)
    assert (one.labels[0].label, one.model) == ("体育新闻", "news")
    assert fake.servicer.calls[0].requests[0].labels == ["体育"]
    assert [(p.id, p.labels[0].label) for p in batch.predictions] == [("0", "甲"), ("b", "乙")]
    assert [p.labels[0].label for p in streamed] == texts
    assert [p.id for p in streamed] == [str(i) for i in range(10)]
    assert [len(r.documents) for r in fake.servicer.calls[2].requests] == [4, 4, 2]


def test_classify_stream_from_an_async_iterable(fake):
    async def texts():
        for i in range(5):
            await asyncio.sleep(0)
            yield f"文本{i}"

    async def main():
        async with client_for(fake) as client:
            return [p async for p in client.classify_stream(texts(), batch_size=2)]

    predictions = run(main())
    assert [(p.id, p.labels[0].label) for p in predictions] == [(str(i), f"文本{i}") for i in range(5)]


def test_the_stream_answers_themselves(fake):
    async def main():
        async with client_for(fake) as client:
            return [answer async for answer in client.classify_stream_responses(["甲", "乙", "丙"], routing_key="user-3", batch_size=2)]

    answers = run(main())
    assert [[p.labels[0].label for p in answer.predictions] for answer in answers] == [["甲", "乙"], ["丙"]]
    assert [request.routing_key for request in fake.servicer.calls[0].requests] == ["user-3", "user-3"]


def test_classify_stream_stopped_early(fake):
    async def main():
        async with client_for(fake) as client:
            stream = client.classify_stream([str(i) for i in range(1000)], batch_size=1)
            first = await stream.__anext__()
            await stream.aclose()
            again = await client.classify("x")
            return first, again

    first, again = run(main())
    assert first.id == "0" and again.labels[0].label == "x"


def test_token_metadata_and_deadline_on_every_call(fake):
    async def main():
        async with client_for(fake, token="t0ken", metadata=[("x-tenant", "acme")], timeout=7.0) as client:
            await client.classify("x")
            await client.classify_batch(["x"])
            [p async for p in client.classify_stream(["x"])]
            await client.pipeline.Classify(pipeline_pb2.ClassifyRequest(text="raw"))
            await client.classify("x", timeout=2.0, metadata=[("x-request-id", "42")])

    run(main())
    calls = fake.servicer.calls
    assert len(calls) == 5
    for call in calls:
        assert call.metadata["authorization"] == "Bearer t0ken", call
        assert call.metadata["x-tenant"] == "acme", call
    assert calls[4].metadata["x-request-id"] == "42"
    remaining = [call.time_remaining for call in calls]
    assert all(5.0 < r <= 7.1 for r in remaining[:4]), remaining
    assert 0 < remaining[4] <= 2.1, remaining


def test_deadline_exceeded_within_the_deadline(fake):
    fake.servicer.delay = 5.0

    async def main():
        async with client_for(fake, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as failure:
                await client.classify("x")
            return failure.value, time.monotonic() - started

    error, elapsed = run(main())
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0, elapsed
    assert fake.servicer.count("Classify") == 1


def test_stream_deadline(fake):
    fake.servicer.delay = 5.0

    async def main():
        async with client_for(fake, timeout=0.3) as client:
            with pytest.raises(grpc.RpcError) as failure:
                [p async for p in client.classify_stream(["x"])]
            return failure.value

    assert run(main()).code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unavailable_is_retried(fake):
    fake.servicer.failures = [UNAVAILABLE, UNAVAILABLE]

    async def main():
        async with client_for(fake, retries=3) as client:
            return await client.classify("x")

    assert run(main()).labels[0].label == "x"
    assert fake.servicer.count("Classify") == 3


def test_unavailable_gives_up_after_retries_plus_one_attempts(fake):
    fake.servicer.failures = [UNAVAILABLE] * 10

    async def main():
        async with client_for(fake, retries=4) as client:
            with pytest.raises(grpc.RpcError) as failure:
                await client.classify_batch(["x"])
            return failure.value

    assert run(main()).code() == UNAVAILABLE
    assert fake.servicer.count("ClassifyBatch") == 5


def test_concurrent_calls_to_a_failing_service_retry_at_most_half_the_bucket(overloaded):
    async def main():
        async with AsyncClient(overloaded.address, retries=4, **FAST) as client:
            return await asyncio.gather(*(client.classify("x") for _ in range(50)), return_exceptions=True)

    failures = run(main())
    assert all(isinstance(failure, grpc.RpcError) and failure.code() == UNAVAILABLE for failure in failures)
    # 5 attempts a call without throttling; with it, the 10-token bucket allows 5 retries in all
    assert 50 <= overloaded.servicer.attempts <= 50 + 10 // 2


def test_invalid_argument_is_not_retried(fake):
    fake.servicer.failures = [grpc.StatusCode.INVALID_ARGUMENT] * 3

    async def main():
        async with client_for(fake, retries=3) as client:
            with pytest.raises(grpc.RpcError) as failure:
                await client.classify("x")
            return failure.value

    assert run(main()).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.servicer.count("Classify") == 1


def test_a_stream_is_retried_before_any_response(fake):
    fake.servicer.failures = [UNAVAILABLE]

    async def main():
        async with client_for(fake) as client:
            return [p async for p in client.classify_stream(["一", "二", "三"], batch_size=2)]

    assert [p.labels[0].label for p in run(main())] == ["一", "二", "三"]
    assert fake.servicer.count("ClassifyStream") == 2


def test_stubs_and_close(fake):
    async def main():
        client = client_for(fake)
        assert isinstance(client.stub("pipeline"), pipeline_pb2_grpc.PipelineStub)
        assert client.stub("classifier") is client.classifier
        answer = await client.stub("pipeline").ClassifyBatch(
            pipeline_pb2.ClassifyBatchRequest(documents=[common_pb2.Document(id="z", text="x")])
        )
        await client.close()
        with pytest.raises(ValueError):
            await client.classify("x")
        return answer

    assert run(main()).predictions[0].id == "z"


def test_large_messages(fake):
    text = "字" * (5 << 20)  # 15 MiB in UTF-8, both ways

    async def main():
        async with client_for(fake, timeout=60) as client:
            return await client.classify(text)

    assert run(main()).labels[0].label == text


def test_constructed_outside_the_event_loop(fake):
    client = client_for(fake, token="t0ken")  # no loop running here: the channel is made at first use

    async def main():
        async with client:
            return await client.classify("x")

    assert run(main()).labels[0].label == "x"
    assert fake.servicer.calls[0].metadata["authorization"] == "Bearer t0ken"


def test_bad_arguments_fail_before_any_call(fake):
    async def main():
        async with client_for(fake) as client:
            with pytest.raises(TypeError):
                await client.classify_batch("一段文字")
            with pytest.raises(TypeError):
                client.classify_stream("一段文字")
            with pytest.raises(ValueError):
                client.classify_stream(["x"], batch_size=0)

    run(main())
    assert fake.servicer.calls == []
