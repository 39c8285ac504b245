"""Tracing (fenlei.runtime.tracing) on in-process servers, with an in-memory exporter: the
pipeline and the four stages as fenlei.runtime.server starts them, a toy model trained
through them. A Classify is one trace: the pipeline's server span, and under it a span
per batch in each stage (the batches travel on open streams, which have no span of
their own); a traced client's span is the parent of the server's; health is not traced.
And the local collector (fenlei.telemetry.collector) as an OTLP exporter reaches it."""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from testkit import wait_for

from fenlei import services
from fenlei.classifier import servicer as classifier_servicer
from fenlei.features import servicer as features_servicer
from fenlei.pipeline import servicer as pipeline_servicer
from fenlei.preprocessor import servicer as preprocessor_servicer
from fenlei.registry import servicer as registry_servicer
from fenlei.runtime import tracing
from fenlei.runtime.models import ModelStore
from fenlei.runtime.stages import StageStreams
from fenlei.segmenter import servicer as segmenter_servicer
from fenlei.telemetry import collector
from fenlei.telemetry import spans as kept
from fenlei.training.core import Corpus, TrainingSpec, train
from fenlei.training.register import GrpcRegistry
from fenlei.training.stages import GrpcStages
from fenlei.v1 import pipeline_pb2, pipeline_pb2_grpc, segmenter_pb2, segmenter_pb2_grpc

STAGES = {
    "segmenter": segmenter_servicer,
    "preprocessor": preprocessor_servicer,
    "features": features_servicer,
    "classifier": classifier_servicer,
}
BATCH_SPANS = {stage.name: f"{stage.stream} batch" for stage in services.STAGES}
CLASSIFY = "/fenlei.v1.Pipeline/Classify"
SPORTS = ["足球", "篮球", "比赛", "进球", "冠军", "球员", "联赛", "教练"]
FINANCE = ["股票", "基金", "市场", "上涨", "下跌", "投资", "银行", "利率"]


def corpus() -> Corpus:
    texts, labels = [], []
    for words, label in ((SPORTS, "sports"), (FINANCE, "finance")):
        for i in range(16):
            texts.append(words[i % 8] + words[(i + 3) % 8] + words[(i + 5) % 8])
            labels.append(label)
    return Corpus(texts, labels)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span this process ends, from here on. The SDK has one global provider per
    process: a test module that set one first keeps it, and gets this exporter too."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def mesh(spans, module_servers, helpers, tmp_path_factory):
    home = tmp_path_factory.mktemp("tracing-home")
    stages = {name: module_servers.start(name, module.register, helpers.settings_for(home)) for name, module in STAGES.items()}
    addresses = {name: served.address for name, served in stages.items()}
    registry = module_servers.start("registry", registry_servicer.register, helpers.settings_for(home))

    async def fit() -> None:
        streams = StageStreams(addresses)
        try:
            async with grpc.aio.insecure_channel(registry.address) as channel:
                await train(ModelStore(home), TrainingSpec(name="toy"), GrpcStages(streams), GrpcRegistry(channel), corpus(), corpus())
        finally:
            await streams.close()

    module_servers.loop.run(fit())
    settings = helpers.settings_for(
        home,
        pipeline_servicer.PipelineSettings,
        default_model="toy",
        stage_batch_documents=2,
        **{f"{n}_address": a for n, a in addresses.items()},
    )
    pipeline = module_servers.start("pipeline", pipeline_servicer.register, settings)
    return {"pipeline": pipeline, "loop": module_servers.loop, **stages}


def finished(spans: InMemorySpanExporter, count: int, trace_id: int) -> list[ReadableSpan]:
    """The spans of a trace, once `count` of them have ended (a stage ends its span as it answers)."""
    return wait_for(
        lambda: (found := [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]) and len(found) >= count and found,
        f"{count} spans of the trace",
        timeout=30,
    )


def server_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    return wait_for(lambda: next((s for s in spans.get_finished_spans() if s.name == name), None), f"a span {name}", timeout=30)


def test_a_classify_is_one_trace_with_a_span_per_stage_batch(mesh, spans, helpers) -> None:
    spans.clear()
    stub = pipeline_pb2_grpc.PipelineStub(mesh["pipeline"].channel)
    documents = helpers.documents("足球联赛冠军", "股票市场下跌", "篮球教练进球")  # two stage batches (of at most 2)
    answer = stub.ClassifyBatch(pipeline_pb2.ClassifyBatchRequest(documents=documents), timeout=helpers.TIMEOUT)
    assert [p.labels[0].label for p in answer.predictions] == ["sports", "finance", "sports"]

    root = server_span(spans, "/fenlei.v1.Pipeline/ClassifyBatch")
    trace_spans = finished(spans, 1 + 2 * len(STAGES), root.context.trace_id)
    assert root.parent is None and root.kind == trace.SpanKind.SERVER
    assert (
        dict(root.attributes or {}).items()
        >= {
            "fenlei.model": "toy",
            "fenlei.version": "v1",
            "fenlei.documents": 3,
            "fenlei.characters": 18,
            "rpc.grpc.status_code": 0,
        }.items()
    )
    children = [s for s in trace_spans if s is not root]
    # Two batches through each stage, each a child of the request's span; none for the streams themselves.
    assert sorted(s.name for s in children) == sorted(name for name in BATCH_SPANS.values() for _ in range(2))
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in children)
    assert not any(s.name in tracing.STAGE_STREAMS for s in spans.get_finished_spans())
    by_stage = {stage: [s for s in children if s.name == name] for stage, name in BATCH_SPANS.items()}
    assert sorted(s.attributes["fenlei.documents"] for s in by_stage["segmenter"]) == [1, 2]
    assert sum(s.attributes["fenlei.characters"] for s in by_stage["segmenter"]) == 18
    assert all(s.attributes["fenlei.tokens"] > 0 for s in by_stage["segmenter"])
    assert all(s.attributes["fenlei.terms"] > 0 for s in by_stage["preprocessor"])
    # The toy vocabulary knows every word of these texts, not every character n-gram across words.
    assert all(0 <= s.attributes["fenlei.oov_share"] < 1 for s in by_stage["features"])
    assert sorted(s.attributes["fenlei.documents"] for s in by_stage["classifier"]) == [1, 2]


def test_the_answer_names_its_trace(mesh, spans, helpers) -> None:
    stub = pipeline_pb2_grpc.PipelineStub(mesh["pipeline"].channel)
    answer, call = stub.Classify.with_call(pipeline_pb2.ClassifyRequest(text="股票市场下跌"), timeout=helpers.TIMEOUT)
    assert answer.labels[0].label == "finance"
    trace_id = dict(call.initial_metadata())[pipeline_servicer.TRACE_ID_HEADER]
    wait_for(
        lambda: any(s.name == CLASSIFY and trace.format_trace_id(s.context.trace_id) == trace_id for s in spans.get_finished_spans()),
        f"the Classify span of trace {trace_id}",
        timeout=30,
    )


def test_each_message_of_a_classify_stream_is_a_request_of_its_own(mesh, spans, helpers) -> None:
    spans.clear()
    stub = pipeline_pb2_grpc.PipelineStub(mesh["pipeline"].channel)
    requests = [pipeline_pb2.ClassifyStreamRequest(documents=helpers.documents(text)) for text in ("足球联赛冠军", "银行利率上涨")]
    answers = list(stub.ClassifyStream(iter(requests), timeout=helpers.TIMEOUT))
    assert [a.predictions[0].labels[0].label for a in answers] == ["sports", "finance"]

    stream = server_span(spans, "/fenlei.v1.Pipeline/ClassifyStream")
    trace_spans = finished(spans, 1 + 2 + 2 * len(STAGES), stream.context.trace_id)
    messages = [s for s in trace_spans if s.name == "/fenlei.v1.Pipeline/ClassifyStream message"]
    assert len(messages) == 2 and all(m.parent.span_id == stream.context.span_id for m in messages)
    for message in messages:
        batches = [s for s in trace_spans if s.parent is not None and s.parent.span_id == message.context.span_id]
        assert sorted(s.name for s in batches) == sorted(BATCH_SPANS.values())
        assert message.attributes["fenlei.documents"] == 1


def test_a_traced_client_is_the_parent_of_the_server_span_and_health_is_not_traced(mesh, spans, helpers) -> None:
    spans.clear()
    address = mesh["segmenter"].address

    async def call() -> tuple[int, int]:
        async with grpc.aio.insecure_channel(address, interceptors=tracing.client_interceptors()) as channel:
            with tracing.span("caller") as caller:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                request = segmenter_pb2.SegmentRequest(documents=helpers.documents("我来到北京清华大学"))
                await segmenter_pb2_grpc.SegmenterStub(channel).Segment(request)
            return caller.get_span_context().trace_id, caller.get_span_context().span_id

    trace_id, caller_id = mesh["loop"].run(call())
    found = finished(spans, 3, trace_id)  # the caller, its client span, the server's span
    client = next(s for s in found if s.kind == trace.SpanKind.CLIENT)
    server = next(s for s in found if s.kind == trace.SpanKind.SERVER)
    assert client.name == server.name == "/fenlei.v1.Segmenter/Segment"
    assert client.parent.span_id == caller_id and server.parent.span_id == client.context.span_id
    assert not [s for s in spans.get_finished_spans() if "Health" in s.name]


def test_the_collector_keeps_each_span_as_a_json_line_and_rotates_its_file(servers, helpers, tmp_path) -> None:
    settings = helpers.settings_for(tmp_path, collector.CollectorSettings, spans_file_bytes=4_000)
    served = servers.start(collector.PART, collector.register, settings)
    # Spans of a provider of the test's own, sent as a service's exporter sends them.
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "tester"}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    tracer = provider.get_tracer("test")
    exporter = OTLPSpanExporter(endpoint=served.address, insecure=True)
    with tracer.start_as_current_span("outer", attributes={"fenlei.documents": 3, "fenlei.model": "toy"}):
        with tracer.start_as_current_span("inner", kind=trace.SpanKind.SERVER):
            pass
    inner, outer = recorded.get_finished_spans()
    assert exporter.export([inner, outer]) == SpanExportResult.SUCCESS

    first = kept.read(tmp_path)
    assert [(s.name, s.service, s.kind) for s in first] == [("inner", "tester", "server"), ("outer", "tester", "internal")]
    assert first[0].parent_span_id == first[1].span_id == trace.format_span_id(outer.context.span_id)
    assert first[1].trace_id == trace.format_trace_id(outer.context.trace_id) and first[1].parent_span_id == ""
    assert first[1].attributes == {"fenlei.documents": 3, "fenlei.model": "toy"}
    assert first[1].duration_ms == (outer.end_time - outer.start_time) / 1e6

    # Past the size, the file becomes spans.jsonl.1 (the one before it goes) and a new one starts.
    while not (kept.directory(tmp_path) / f"{kept.FILE_NAME}.1").exists():
        assert exporter.export([inner, outer]) == SpanExportResult.SUCCESS
    assert exporter.export([inner]) == SpanExportResult.SUCCESS
    current = (kept.directory(tmp_path) / kept.FILE_NAME).read_text().splitlines()
    assert len(current) == 1 and json.loads(current[0])["name"] == "inner"
    assert len(kept.read(tmp_path)) == 1 + len((kept.directory(tmp_path) / f"{kept.FILE_NAME}.1").read_text().splitlines())
    exporter.shutdown()
