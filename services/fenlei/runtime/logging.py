"""JSON logs: one object per line with time, service, level, trace_id, span_id and request_id,
so that the lines of one request join up across processes (`fenlei logs --trace ID`).

The trace and span ids are those of the current OpenTelemetry span (the call's server span,
a stage's span of the batch it handles), else those of the caller's W3C traceparent. Every
fenlei call ends with one line ("handled": method, code, duration); health and reflection
calls are not logged. Envoy's access logs (fenlei.envoy.config.access_log) write the same
keys in the same time format.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import grpc
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

REQUEST_ID_HEADER = "x-request-id"
# Envoy's strftime for the same format (START_TIME in UTC, milliseconds).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%3fZ"

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# The call being handled (/fenlei.v1.Service/Method) and its caller's span, from its metadata.
method: contextvars.ContextVar[str] = contextvars.ContextVar("method", default="")
caller: contextvars.ContextVar[trace.SpanContext] = contextvars.ContextVar("caller", default=trace.INVALID_SPAN_CONTEXT)
_TRACEPARENT = TraceContextTextMapPropagator()  # W3C, whatever propagators the SDK is configured with

log = logging.getLogger("fenlei.rpc")


def format_time(seconds: float) -> str:
    """A log line's time: UTC with milliseconds, so that lines sort by it as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def current_ids() -> tuple[str, str]:
    """(trace_id, span_id) in hex: the current span's, else the caller's, else empty."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        context = caller.get()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = current_ids()
        entry = {
            "time": format_time(record.created),
            "service": self.service,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": trace_id,
            "span_id": span_id,
            "request_id": request_id.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def bind_request(metadata: tuple[tuple[str, str | bytes], ...] | None, called: str = "") -> None:
    """What the lines of a call carry: its method, its x-request-id and its caller's span (traceparent)."""
    headers = {key: value for key, value in metadata or () if isinstance(value, str)}
    method.set(called)
    request_id.set(headers.get(REQUEST_ID_HEADER, ""))
    caller.set(trace.get_current_span(_TRACEPARENT.extract(headers)).get_span_context())


class _BindRequest(grpc.aio.ServerInterceptor):
    """Binds each fenlei call before its handler runs. grpc runs the method lookup (this)
    and the handler in one task, the call's own, so what is set here is the handler's."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if details.method.startswith("/fenlei."):  # health and reflection are not logged
            bind_request(details.invocation_metadata, details.method)
        return await continuation(details)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [_BindRequest()]


@contextlib.contextmanager
def handled(context: grpc.aio.ServicerContext) -> Iterator[None]:
    """One line when the call ends: its method, the status it ends with, its duration."""
    began = time.perf_counter()
    error: BaseException | None = None
    try:
        yield
    except BaseException as raised:
        error = raised
        raise
    finally:
        code = context.code()
        if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
            status = code.name  # what abort or set_code put there
        elif error is None or isinstance(error, GeneratorExit):
            status = "OK"
        else:
            status = "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
        duration_ms = round((time.perf_counter() - began) * 1000, 3)
        log.info("handled", extra={"fields": {"method": method.get(), "code": status, "duration_ms": duration_ms}})
