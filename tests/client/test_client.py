"""fenlei.client.Client against a scripted Pipeline on loopback (see conftest.py)."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from fenlei.client import MAX_MESSAGE_BYTES, Client, channel_options, service_config
from fenlei.v1 import common_pb2, datasets_pb2_grpc, jobs_pb2_grpc, pipeline_pb2, pipeline_pb2_grpc, registry_pb2_grpc, segmenter_pb2_grpc

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def client_for(fake, **kwargs) -> Client:
    return Client(fake.address, **{**FAST, **kwargs})


# ---------------------------------------------------------------- the pipeline methods


def test_classify_returns_the_protobuf_answer(fake):
    with client_for(fake) as client:
        answer = client.classify("体育新闻", model="news", top_k=3, version="v7", explain=2, labels=["体育", "财经"])
    assert isinstance(answer, pipeline_pb2.ClassifyResponse)
    assert [label.label for label in answer.labels] == ["体育新闻"]
    assert (answer.model, answer.version) == ("news", "v7")
    (request,) = fake.servicer.calls[0].requests
    assert request == pipeline_pb2.ClassifyRequest(text="体育新闻", model="news", top_k=3, version="v7", explain=2, labels=["体育", "财经"])


def test_classify_batch_keeps_order_and_ids(fake):
    with client_for(fake) as client:
        texts = client.classify_batch(["甲", "乙", "丙"], model="news")
        documents = client.classify_batch([common_pb2.Document(id="a", text="甲"), "乙"])
    assert isinstance(texts, pipeline_pb2.ClassifyBatchResponse)
    assert [(p.id, p.labels[0].label) for p in texts.predictions] == [("0", "甲"), ("1", "乙"), ("2", "丙")]
    assert [(p.id, p.labels[0].label) for p in documents.predictions] == [("a", "甲"), ("1", "乙")]


def test_classify_stream_yields_one_prediction_per_text_in_order(fake):
    texts = [f"第{i}条" for i in range(10)]
    read: list[int] = []

    def lazily():
        for i, text in enumerate(texts):
            read.append(i)
            yield text

    with client_for(fake) as client:
        stream = client.classify_stream(lazily(), model="news", top_k=1, batch_size=3)
        assert read == []  # nothing is read before iteration starts
        predictions = list(stream)
    assert all(isinstance(p, common_pb2.Prediction) for p in predictions)
    assert [p.labels[0].label for p in predictions] == texts
    assert [p.id for p in predictions] == [str(i) for i in range(10)]
    (call,) = fake.servicer.calls
    assert [len(r.documents) for r in call.requests] == [3, 3, 3, 1]
    assert all(r.model == "news" and r.top_k == 1 for r in call.requests)


def test_routing_key_and_the_stream_answers_themselves(fake):
    with client_for(fake) as client:
        client.classify("甲", model="news", routing_key="user-1")
        client.classify_batch(["甲"], model="news", routing_key="user-2")
        answers = list(client.classify_stream_responses(["甲", "乙", "丙"], model="news", routing_key="user-3", batch_size=2))
    assert all(isinstance(answer, pipeline_pb2.ClassifyStreamResponse) for answer in answers)
    assert [[p.labels[0].label for p in answer.predictions] for answer in answers] == [["甲", "乙"], ["丙"]]
    assert [answer.version for answer in answers] == ["v1", "v1"]
    keys = [request.routing_key for call in fake.servicer.calls for request in call.requests]
    assert keys == ["user-1", "user-2", "user-3", "user-3"]


def test_classify_stream_stopped_early_cancels_the_call(fake):
    with client_for(fake) as client:
        stream = client.classify_stream((str(i) for i in range(1000)), batch_size=1)
        assert next(stream).id == "0"
        stream.close()
        # the channel still works afterwards
        assert client.classify("x").labels[0].label == "x"


def test_bad_arguments_fail_before_any_call(fake):
    with client_for(fake) as client:
        with pytest.raises(TypeError):
            client.classify_batch("一段文字")
        with pytest.raises(TypeError):
            client.classify_stream("一段文字")
        with pytest.raises(TypeError):
            client.classify("x", labels="体育")
        with pytest.raises(TypeError):
            client.classify_batch([1, 2])
        with pytest.raises(ValueError):
            client.classify_stream(["x"], batch_size=0)
        with pytest.raises(ValueError):
            client.classify("x", timeout=0)
    assert fake.servicer.calls == []
    for retries in (-1, 5):
        with pytest.raises(ValueError):
            Client(fake.address, retries=retries)
    with pytest.raises(ValueError):
        Client(fake.address, timeout=None)


# ---------------------------------------------------------------- metadata


def test_token_and_metadata_arrive_on_every_call(fake):
    with client_for(fake, token="t0ken", metadata=[("x-tenant", "acme")]) as client:
        client.classify("x")
        client.classify_batch(["x"])
        list(client.classify_stream(["x"]))
        client.pipeline.Classify(pipeline_pb2.ClassifyRequest(text="raw stub"))
    assert len(fake.servicer.calls) == 4
    for call in fake.servicer.calls:
        assert call.metadata["authorization"] == "Bearer t0ken", call
        assert call.metadata["x-tenant"] == "acme", call


def test_per_call_metadata_adds_and_overrides(fake):
    with client_for(fake, token="t0ken", metadata=[("x-tenant", "acme")]) as client:
        client.classify("x", metadata=[("x-request-id", "42"), ("x-tenant", "other")])
        client.classify("x", metadata=[("authorization", "Bearer other")])
    first, second = fake.servicer.calls
    assert (first.metadata["x-request-id"], first.metadata["x-tenant"]) == ("42", "other")
    assert first.metadata["authorization"] == "Bearer t0ken"
    assert second.metadata["authorization"] == "Bearer other"


def test_token_callable_is_asked_at_every_call(fake):
    tokens = iter(["one", "two"])
    with client_for(fake, token=lambda: next(tokens)) as client:
        client.classify("x")
        client.classify("x")
    assert [call.metadata["authorization"] for call in fake.servicer.calls] == ["Bearer one", "Bearer two"]


def test_no_token_no_authorization(fake):
    with client_for(fake) as client:
        client.classify("x")
    assert "authorization" not in fake.servicer.calls[0].metadata


# ---------------------------------------------------------------- deadlines


def test_every_call_has_the_default_deadline(fake):
    with client_for(fake, timeout=7.0) as client:
        client.classify("x")
        client.classify_batch(["x"])
        list(client.classify_stream(["x"]))
        client.pipeline.ClassifyBatch(pipeline_pb2.ClassifyBatchRequest())  # a raw stub call too
        client.classify("x", timeout=2.0)
    remaining = [call.time_remaining for call in fake.servicer.calls]
    assert all(r is not None for r in remaining), remaining
    assert all(5.0 < r <= 7.1 for r in remaining[:4]), remaining  # timer granularity
    assert 0 < remaining[4] <= 2.1, remaining


def test_deadline_exceeded_within_the_deadline(fake):
    fake.servicer.delay = 5.0
    with client_for(fake, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failure:
            client.classify("x")
        elapsed = time.monotonic() - started
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0, elapsed
    assert fake.servicer.count("Classify") == 1  # DEADLINE_EXCEEDED is not retried


def test_per_call_timeout_overrides_the_default(fake):
    fake.servicer.delay = 0.5
    with client_for(fake, timeout=0.1) as client:
        assert client.classify("x", timeout=10).labels[0].label == "x"
        with pytest.raises(grpc.RpcError) as failure:
            list(client.classify_stream(["x"]))
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


# ---------------------------------------------------------------- retries


def test_unavailable_is_retried_by_grpc(fake):
    fake.servicer.failures = [UNAVAILABLE, UNAVAILABLE]
    with client_for(fake, retries=3) as client:
        assert client.classify("x").labels[0].label == "x"
    assert fake.servicer.count("Classify") == 3


def test_unavailable_gives_up_after_retries_plus_one_attempts(fake):
    fake.servicer.failures = [UNAVAILABLE] * 10
    with client_for(fake, retries=2) as client:
        with pytest.raises(grpc.RpcError) as failure:
            client.classify_batch(["x"])
    assert failure.value.code() == UNAVAILABLE
    assert "scripted" in failure.value.details()
    assert fake.servicer.count("ClassifyBatch") == 3


def test_retries_zero_means_one_attempt(fake):
    fake.servicer.failures = [UNAVAILABLE]
    with client_for(fake, retries=0) as client:
        with pytest.raises(grpc.RpcError) as failure:
            client.classify("x")
    assert failure.value.code() == UNAVAILABLE
    assert fake.servicer.count("Classify") == 1


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAUTHENTICATED]
)
def test_other_codes_are_not_retried(fake, code):
    fake.servicer.failures = [code, code, code]
    with client_for(fake, retries=3) as client:
        with pytest.raises(grpc.RpcError) as failure:
            client.classify("x")
    assert failure.value.code() == code
    assert fake.servicer.count("Classify") == 1


def test_a_stream_is_retried_before_any_response(fake):
    fake.servicer.failures = [UNAVAILABLE]
    with client_for(fake, retries=3) as client:
        predictions = list(client.classify_stream(["一", "二", "三"], batch_size=2))
    assert [p.labels[0].label for p in predictions] == ["一", "二", "三"]
    assert fake.servicer.count("ClassifyStream") == 2


def test_retries_are_throttled_while_every_call_fails(overloaded):
    # gRPC's retry throttling: a bucket of 10 tokens, one taken per failed attempt, no retry at half or below.
    per_call = []
    with Client(overloaded.address, retries=3, **FAST) as client:
        for _ in range(50):
            before = overloaded.servicer.attempts
            with pytest.raises(grpc.RpcError) as failure:
                client.classify("x")
            assert failure.value.code() == UNAVAILABLE
            per_call.append(overloaded.servicer.attempts - before)
    assert per_call[0] == 4  # a fresh client retries in full
    assert sum(per_call) <= 50 + 10 // 2  # not 4 × 50: at most half the bucket in retries
    assert per_call[-45:] == [1] * 45


def test_raw_stub_calls_are_retried_too(fake):
    fake.servicer.failures = [UNAVAILABLE]
    with client_for(fake) as client:
        client.stub("pipeline").Classify(pipeline_pb2.ClassifyRequest(text="x"))
    assert fake.servicer.count("Classify") == 2


def test_a_large_request_is_still_retried(fake):
    # gRPC retries only what fits its retry buffer (256 KiB by default): the client sizes it to the message limit.
    fake.servicer.failures = [UNAVAILABLE]
    text = "字" * (1 << 20)  # 3 MiB in UTF-8
    with client_for(fake) as client:
        assert client.classify(text).labels[0].label == text
    assert fake.servicer.count("Classify") == 2


def test_messages_up_to_16_mib(fake):
    text = "字" * (5 << 20)  # 15 MiB in UTF-8, both ways (the default receive limit is 4 MiB)
    with client_for(fake, timeout=60) as client:
        assert client.classify(text).labels[0].label == text
        with pytest.raises(grpc.RpcError) as failure:
            client.classify(text + "字" * (1 << 20))  # 18 MiB
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_service_config():
    config = json.loads(service_config(3, initial_backoff=0.2, max_backoff=3, backoff_multiplier=1.5))
    (method,) = config["methodConfig"]
    whole = {name["service"] for name in method["name"] if "method" not in name}
    assert whole == {
        "fenlei.v1.Pipeline", "fenlei.v1.Segmenter", "fenlei.v1.Preprocessor", "fenlei.v1.Features", "fenlei.v1.Classifier",
        "fenlei.v1.Telemetry",
    }  # fmt: skip
    # Of the registry only the reads: a retried change could be made twice.
    reads = {f"{name['service'].rsplit('.', 1)[1]}.{name['method']}" for name in method["name"] if "method" in name}
    assert reads == {
        "ModelRegistry.GetVersion", "ModelRegistry.ListModels", "ModelRegistry.SearchVersions", "ModelRegistry.GetHistory",
        "ModelRegistry.ExportRegistry", "Experiments.GetExperiment", "Experiments.ListExperiments",
        "Datasets.GetDataset", "Datasets.ListDatasets", "Datasets.ReadDataset",
        "Jobs.GetJob", "Jobs.ListJobs", "Jobs.WatchJob", "Jobs.GetJobReport", "Jobs.CancelJob",
        "LiveConfig.GetConfig", "LiveConfig.ListConfigChanges", "LiveConfig.ListDenyRules",
    }  # fmt: skip
    assert method["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.2s",
        "maxBackoff": "3s",
        "backoffMultiplier": 1.5,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}
    throttled = json.loads(service_config(1, retry_max_tokens=100, retry_token_ratio=0.5))["retryThrottling"]
    assert throttled == {"maxTokens": 100, "tokenRatio": 0.5}
    for bad in ({"retry_max_tokens": 0}, {"retry_max_tokens": 1001}, {"retry_token_ratio": 0}, {"retry_token_ratio": 0.0001}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            service_config(3, **bad)
    options = dict(channel_options(3))
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.max_send_message_length"] == options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    assert "retryPolicy" not in json.loads(service_config(0))["methodConfig"][0]


# ---------------------------------------------------------------- stubs and lifecycle


def test_stubs_for_every_service(fake):
    with client_for(fake) as client:
        assert isinstance(client.pipeline, pipeline_pb2_grpc.PipelineStub)
        assert isinstance(client.stub("segmenter"), segmenter_pb2_grpc.SegmenterStub)
        assert client.stub("segmenter") is client.segmenter
        assert isinstance(client.model_registry, registry_pb2_grpc.ModelRegistryStub)
        assert isinstance(client.experiments, registry_pb2_grpc.ExperimentsStub)
        assert isinstance(client.datasets, datasets_pb2_grpc.DatasetsStub)
        assert isinstance(client.jobs, jobs_pb2_grpc.JobsStub)
        for name in ("preprocessor", "features", "classifier"):
            assert type(client.stub(name)).__name__ == name.capitalize() + "Stub"
        with pytest.raises(KeyError):
            client.stub("gateway")


def test_close(fake):
    client = client_for(fake)
    client.classify("x")
    client.close()
    with pytest.raises(ValueError):
        client.classify("x")


def test_unreachable_target_is_unavailable(fake):
    port = fake.address.rsplit(":", 1)[1]
    fake.server.stop(None).wait(30)
    with Client(f"127.0.0.1:{port}", timeout=5, retries=1, **FAST) as client:
        with pytest.raises(grpc.RpcError) as failure:
            client.classify("x")
    assert failure.value.code() == UNAVAILABLE


def test_a_large_request_is_not_retried_with_the_default_retry_buffer(fake):
    # The counterpart of test_a_large_request_is_still_retried: the buffer option is what makes it work
    # (and a client's options= override the client's own).
    fake.servicer.failures = [UNAVAILABLE]
    with client_for(fake, options=[("grpc.per_rpc_retry_buffer_size", 256 << 10)]) as client:
        with pytest.raises(grpc.RpcError) as failure:
            client.classify("字" * (1 << 20))
    assert failure.value.code() == UNAVAILABLE
    assert fake.servicer.count("Classify") == 1
