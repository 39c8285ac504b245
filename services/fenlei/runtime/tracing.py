"""OpenTelemetry tracing of every service, configured by the standard OTEL_* variables.

A call between services is a span on each side (opentelemetry-instrumentation-grpc's
interceptors), and W3C trace context crosses the hop in the call's metadata. Health and
reflection are not traced. A stage's open stream is not traced as a call either: it
outlives the requests whose batches it carries, so a span of it would never end and
would belong to no request. Each batch names its request's trace instead (its `trace`
field, filled from the caller's current span) and the stage opens a span per batch as a
child of it.

    OTEL_EXPORTER_OTLP_ENDPOINT   where spans go (OTLP over gRPC); `fenlei up` points it at its collector
    OTEL_TRACES_SAMPLER           the SDK's samplers (default: parentbased_always_on)
    OTEL_SDK_DISABLED=true        no tracing at all
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue

from fenlei import services
from fenlei.v1 import common_pb2

UNTRACED_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
        # The collector's (fenlei.telemetry.collector): a traced export would be exported, and so on for ever.
        "opentelemetry.proto.collector.trace.v1.TraceService",
    }
)
STAGE_STREAMS = frozenset(stage.stream for stage in services.STAGES)
# Attributes of fenlei's own spans.
DOCUMENTS, CHARACTERS, TOKENS = "fenlei.documents", "fenlei.characters", "fenlei.tokens"
# Terms: what the preprocessor makes of tokens (n-grams, tags); those of them the features
# stage's vocabulary lacks, and their share (a drift signal).
TERMS, UNKNOWN_TERMS, OOV_SHARE = "fenlei.terms", "fenlei.unknown_terms", "fenlei.oov_share"

_tracer = trace.get_tracer("fenlei")


def configure(service: str) -> None:
    """The process's tracer provider: its spans name `service`, and go in batches, in the
    background, to the OTLP endpoint of the environment (the OTEL_* variables say everything)."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def _traced(details: Any) -> bool:
    method: str = details.method.decode() if isinstance(details.method, bytes) else details.method
    return method.lstrip("/").split("/", 1)[0] not in UNTRACED_SERVICES and method not in STAGE_STREAMS


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """A server span per call, but for health, reflection and the stages' open streams."""
    return [aio_server_interceptor(filter_=_traced)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For the channels services open to each other: a client span per call, and the trace
    context in its metadata. Bidirectional streams stay as they are: the only ones fenlei
    opens are the stages' open streams, whose batches carry their trace themselves."""
    return [
        interceptor
        for interceptor in aio_client_interceptors(filter_=_traced)
        if not isinstance(interceptor, grpc.aio.StreamStreamClientInterceptor)
    ]


def current_trace() -> common_pb2.TraceContext:
    """The current span's W3C context, for a batch sent on a stage's open stream."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return common_pb2.TraceContext(traceparent=carrier.get("traceparent", ""), tracestate=carrier.get("tracestate", ""))


@contextlib.contextmanager
def span(
    name: str,
    parent: common_pb2.TraceContext | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[trace.Span]:
    """A span of fenlei's own, current while the block runs: a child of `parent` when
    given (a batch's trace field), else of the current span. An exception ends it as an error."""
    context = None
    if parent is not None:
        carrier = {"traceparent": parent.traceparent, "tracestate": parent.tracestate}
        context = propagate.extract({key: value for key, value in carrier.items() if value})
    with _tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes) as current:
        yield current


# A stage's batch function (fenlei.runtime.rpc.BatchFn) and what a batch it handled
# counts: measure(servicer, request, items) → attributes of the batch's span.
BatchFn = Callable[[Any, Any, Any], None]
Measure = Callable[[Any, Any, Any], Mapping[str, AttributeValue]]


def per_batch(handle: BatchFn, stream: str, measure: Measure) -> BatchFn:
    """handle for a stage's open stream: each batch in a span "<stream> batch", a child of
    the request the batch belongs to, with what measure counts as attributes."""
    name = f"{stream} batch"

    def traced(servicer: Any, request: Any, items: Any) -> None:
        with span(name, request.trace, trace.SpanKind.SERVER) as current:
            handle(servicer, request, items)
            if current.is_recording():
                current.set_attributes(measure(servicer, request, items))

    return traced


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Attributes of the current span (the call's, in a servicer)."""
    trace.get_current_span().set_attributes(attributes)


def trace_id() -> str:
    """The current trace's id as 32 hex digits, as `fenlei trace` takes it; "" outside a trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""
