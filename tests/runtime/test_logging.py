"""fenlei.runtime.logging: each JSON line carries the trace and span ids of the current
OpenTelemetry span, else those of the caller's traceparent, and the request id; every
fenlei call served by the runtime ends with one "handled" line (method, code, duration),
health calls with none."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from fenlei.runtime import logging as jsonlog
from fenlei.segmenter import servicer
from fenlei.v1 import common_pb2, segmenter_pb2, segmenter_pb2_grpc

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


class Lines(logging.Handler):
    """The JSON lines a service would write, as objects."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(jsonlog.JsonFormatter("probe"))
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextlib.contextmanager
def captured(name: str) -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def line(message: str = "working") -> dict:
    with captured("fenlei.probe") as lines:
        logging.getLogger("fenlei.probe").info(message, extra={"fields": {"documents": 3}})
    [entry] = lines.lines
    return entry


@pytest.fixture
def bound() -> Iterator[None]:
    """Whatever a test binds stays in the test."""
    tokens = (jsonlog.request_id.set(""), jsonlog.caller.set(trace.INVALID_SPAN_CONTEXT), jsonlog.method.set(""))
    yield
    jsonlog.request_id.reset(tokens[0])
    jsonlog.caller.reset(tokens[1])
    jsonlog.method.reset(tokens[2])


def test_a_line_outside_any_span_carries_the_callers_traceparent_and_request_id(bound) -> None:
    jsonlog.bind_request((("traceparent", TRACEPARENT), ("x-request-id", "req-7"), ("x-other", b"binary")))
    entry = line()
    assert (entry["trace_id"], entry["span_id"], entry["request_id"]) == (TRACE_ID, SPAN_ID, "req-7")
    assert entry["service"] == "probe" and entry["level"] == "INFO" and entry["message"] == "working" and entry["documents"] == 3
    assert entry["time"].endswith("Z") and len(entry["time"]) == len("2026-12-01T14:01:38.123Z")


def test_a_line_inside_a_span_carries_its_trace_and_span_ids(bound) -> None:
    jsonlog.bind_request((("traceparent", TRACEPARENT),))
    tracer = TracerProvider().get_tracer("test")
    # as the server interceptor opens it: a child of the caller's span
    with tracer.start_as_current_span("batch", context=TraceContextTextMapPropagator().extract({"traceparent": TRACEPARENT})) as span:
        entry = line()
    context = span.get_span_context()
    assert entry["trace_id"] == trace.format_trace_id(context.trace_id) == TRACE_ID
    assert entry["span_id"] == trace.format_span_id(context.span_id) != SPAN_ID
    with tracer.start_as_current_span("a root of its own") as root:
        assert line()["trace_id"] == trace.format_trace_id(root.get_span_context().trace_id) != TRACE_ID


@pytest.mark.parametrize("traceparent", ["", "garbage", f"00-{'0' * 32}-{SPAN_ID}-01", f"00-{TRACE_ID}-{SPAN_ID}"])
def test_without_a_valid_traceparent_the_ids_are_empty(bound, traceparent) -> None:
    jsonlog.bind_request((("traceparent", traceparent),) if traceparent else ())
    entry = line()
    assert (entry["trace_id"], entry["span_id"], entry["request_id"]) == ("", "", "")


def test_times_sort_as_text_and_keep_milliseconds() -> None:
    assert jsonlog.format_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert jsonlog.format_time(1_764_597_698.123) == "2025-12-01T14:01:38.123Z"


@pytest.fixture(scope="module")
def segmenter(module_servers, helpers, tmp_path_factory):
    return module_servers.start("segmenter", servicer.register, helpers.settings_for(tmp_path_factory.mktemp("logging")))


def segment(channel: grpc.Channel, text: str, metadata: tuple[tuple[str, str], ...] = ()) -> segmenter_pb2.SegmentResponse:
    request = segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id="d", text=text)])
    return segmenter_pb2_grpc.SegmenterStub(channel).Segment(request, metadata=metadata, timeout=30)


def handled(lines: Lines, count: int, tools) -> list[dict]:
    """The calls' lines, once there are `count`: a status may reach its caller before the call's line is written."""

    def calls() -> list[dict]:
        found = [entry for entry in lines.lines if entry["message"] == "handled"]
        return found if len(found) >= count else []

    return tools.wait_for(calls, f"{count} handled lines")


def test_every_call_ends_with_a_line_of_its_method_code_and_ids(segmenter, tools) -> None:
    with captured("fenlei.rpc") as lines:
        segment(segmenter.channel, "北京大学", (("traceparent", TRACEPARENT), ("x-request-id", "req-1")))
        with pytest.raises(grpc.RpcError):
            segment(segmenter.channel, "长" * 3_000, (("x-request-id", "req-2"),))  # past max_document_chars
        calls = handled(lines, 2, tools)
    assert [(e["method"], e["code"], e["request_id"]) for e in calls] == [
        ("/fenlei.v1.Segmenter/Segment", "OK", "req-1"),
        ("/fenlei.v1.Segmenter/Segment", "RESOURCE_EXHAUSTED", "req-2"),
    ]
    first, second = calls
    # the server's span when tracing is on (a child of the caller's), else the caller's own
    assert first["trace_id"] == TRACE_ID and len(first["span_id"]) == 16
    assert first["duration_ms"] >= 0
    assert second["trace_id"] != TRACE_ID  # nothing of the call before leaks into this one


def test_health_calls_are_not_logged(segmenter, tools) -> None:
    with captured("fenlei.rpc") as lines:
        health_pb2_grpc.HealthStub(segmenter.channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        segment(segmenter.channel, "北京")  # logged after the health call's line, if it had one
        calls = handled(lines, 1, tools)
    assert [entry["method"] for entry in calls] == ["/fenlei.v1.Segmenter/Segment"]
