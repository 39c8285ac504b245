"""The local mesh's trace collector: OTLP over gRPC in, one JSON line per span out.

    python -m fenlei.telemetry.collector      (the supervisor starts it before every other process)

It serves opentelemetry.proto.collector.trace.v1.TraceService/Export, the protocol every
service's exporter and Envoy's tracer speak, on 127.0.0.1, and appends each span it
receives to <home>/telemetry/spans.jsonl (fenlei.telemetry.spans), which it alone writes.
Past `spans_file_bytes` the file becomes spans.jsonl.1 (replacing the one before) and a new
one starts. On Kubernetes an OpenTelemetry Collector plays its part.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.telemetry import spans

PART = "collector"


@dataclasses.dataclass(frozen=True)
class CollectorSettings(ServiceSettings):
    # The size at which spans.jsonl is rotated: it and the one before it are kept.
    spans_file_bytes: int = 64 * 1024 * 1024


class SpanFile:
    """Appends lines to a file, rotated once past a size."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, lines: list[str]) -> None:
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()  # readers (`fenlei trace`) see whole exports
        if self._file.tell() >= self.max_bytes:
            self._file.close()
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._file = self.path.open("a", encoding="utf-8")


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, file: SpanFile) -> None:
        self.file = file

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        lines = []
        for resource_spans in request.resource_spans:
            service = spans.service_of(resource_spans)
            for scope_spans in resource_spans.scope_spans:
                lines += [spans.Span.of_otlp(span, service).to_json() for span in scope_spans.spans]
        self.file.write(lines)
        return trace_service_pb2.ExportTraceServiceResponse()


def register(server: grpc.aio.Server, settings: CollectorSettings) -> Service:
    file = SpanFile(spans.directory(settings.home) / spans.FILE_NAME, settings.spans_file_bytes)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(file), server)
    return Service([trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name])


def main() -> None:
    serve(PART, load_settings(CollectorSettings, PART), register)


if __name__ == "__main__":
    main()
