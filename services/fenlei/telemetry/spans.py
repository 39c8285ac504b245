"""Spans as the local collector keeps them, one JSON object per line of
<home>/telemetry/spans.jsonl (the previous file, rotated, is spans.jsonl.1), and traces
read back from them: a tree with timings (`fenlei trace ID`), the slowest recent requests
(`fenlei trace --slowest N`).

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex or empty>",
     "service": "pipeline", "name": "/fenlei.v1.Pipeline/Classify", "kind": "server",
     "start_ns": 1764590000000000000, "end_ns": ..., "status": "ok|error|unset", "message": "...",
     "attributes": {"fenlei.model": "reviews", ...}}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from fenlei.errors import InvalidInput, NotFound

FILE_NAME = "spans.jsonl"
KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
STATUSES = {trace_pb2.Status.STATUS_CODE_UNSET: "unset", trace_pb2.Status.STATUS_CODE_OK: "ok", trace_pb2.Status.STATUS_CODE_ERROR: "error"}


def directory(home: Path) -> Path:
    return home / "telemetry"


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str = "unset"
    message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def of_otlp(cls, span: trace_pb2.Span, service: str) -> Span:
        return cls(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            service=service,
            name=span.name,
            kind=KINDS.get(span.kind, "unspecified"),
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            status=STATUSES.get(span.status.code, "unset"),
            message=span.status.message,
            attributes={attribute.key: _value(attribute.value) for attribute in span.attributes},
        )


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def service_of(resource_spans: trace_pb2.ResourceSpans) -> str:
    return next((str(_value(a.value)) for a in resource_spans.resource.attributes if a.key == "service.name"), "unknown")


def read(home: Path) -> list[Span]:
    """Every span kept, oldest file first; a line cut short (the collector stopped while
    writing it) is skipped."""
    spans = []
    folder = directory(home)
    for path in (folder / f"{FILE_NAME}.1", folder / FILE_NAME):
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    spans.append(Span(**json.loads(line)))
                except (ValueError, TypeError):
                    continue
    return spans


def _by_trace(spans: Iterable[Span]) -> dict[str, list[Span]]:
    traces: dict[str, list[Span]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def roots(spans: list[Span]) -> list[Span]:
    """The spans of one trace whose parent is not among them: the trace's start, and any
    span whose parent is elsewhere (a client's own span, one not sampled or not yet written)."""
    ids = {span.span_id for span in spans}
    return sorted((span for span in spans if span.parent_span_id not in ids), key=lambda span: span.start_ns)


def parse_trace_id(trace_id: str) -> str:
    """A trace id as spans keep it: 32 lowercase hexadecimal digits."""
    wanted = trace_id.strip().lower()
    if len(wanted) != 32 or any(c not in "0123456789abcdef" for c in wanted):
        raise InvalidInput(f"a trace id is 32 hexadecimal digits (as in a traceparent or x-trace-id), not {trace_id!r}")
    return wanted


def one_trace(spans: Iterable[Span], trace_id: str) -> list[Span]:
    wanted = parse_trace_id(trace_id)
    found = [span for span in spans if span.trace_id == wanted]
    if not found:
        raise NotFound(f"no span of trace {wanted} has been collected (its spans reach the collector within seconds; try again)")
    return found


def tree(spans: list[Span]) -> Iterator[tuple[int, Span]]:
    """(depth, span) in the order a tree prints: each span before its children, children by start."""
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)

    def walk(span: Span, depth: int) -> Iterator[tuple[int, Span]]:
        yield depth, span
        for child in sorted(children.get(span.span_id, []), key=lambda s: s.start_ns):
            yield from walk(child, depth + 1)

    for root in roots(spans):
        yield from walk(root, 0)


def shown_attributes(attributes: dict[str, Any]) -> dict[str, str]:
    """fenlei's own attributes that have a value, without their prefix."""
    return {key.removeprefix("fenlei."): str(value) for key, value in attributes.items() if key.startswith("fenlei.") and value != ""}


def _shown(attributes: dict[str, Any]) -> str:
    """The gRPC method a proxy's span carried, and fenlei's own attributes."""
    shown = [f"{key}={value}" for key, value in shown_attributes(attributes).items()]
    return "  ".join([attributes["grpc.path"], *shown] if "grpc.path" in attributes else shown)


def format_trace(spans: list[Span]) -> list[str]:
    """A trace as an indented tree: offset from the trace's start, duration, service, name."""
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    lines = [f"trace {spans[0].trace_id}: {len(spans)} spans, {(end - start) / 1e6:.3f} ms", "    offset    duration  span"]
    for depth, span in tree(spans):
        error = f"  ERROR {span.message}".rstrip() if span.status == "error" else ""
        what = f"{'  ' * depth}{span.service}  {span.name}"
        details = _shown(span.attributes)
        lines.append(
            f"{(span.start_ns - start) / 1e6:7.3f} ms  {span.duration_ms:7.3f} ms  {what}{'  ' + details if details else ''}{error}"
        )
    return lines


def slowest(spans: Iterable[Span], count: int, skipped: Collection[str] = ()) -> list[Span]:
    """The `count` slowest root spans of the traces kept: what took longest from its start.
    skipped: method paths whose traces are left out (streams, open for as long as their callers like)."""
    starts = [
        trace_roots[0]
        for trace in _by_trace(spans).values()
        if (trace_roots := roots(trace)) and not any(span.name in skipped or what(span) in skipped for span in trace)
    ]
    return sorted(starts, key=lambda span: span.end_ns - span.start_ns, reverse=True)[:count]


def what(span: Span) -> str:
    """What a span did: the method an Envoy span carried, else the span's own name."""
    return str(span.attributes.get("grpc.path") or span.name)
