"""The mesh as a dashboard sees it: every process with its state, each service's load over
the last seconds (the RED method, as `fenlei top` computes it, from every app's /metrics),
who calls whom, and the slowest recent traces from the collector's file.

What it reads is the local mesh's (<home>/run/mesh.json, <home>/telemetry/spans.jsonl); on
Kubernetes, Prometheus and the OpenTelemetry Collector hold the same figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fenlei.local import top
from fenlei.local.mesh import LocalMesh
from fenlei.sidecar.control import CALLS
from fenlei.telemetry import spans
from fenlei.telemetry.index import SpanIndex

SLOWEST = 20


@dataclass(frozen=True)
class Snapshot:
    processes: list[dict[str, Any]]
    load: list[top.Row]
    edges: list[tuple[str, str]]
    sidecars: bool
    window_seconds: float


class MeshWatch:
    """Scrapes every app of the mesh when asked (scrape(), every few seconds); the load is the
    difference of the last two scrapes. Traces come from an index of the collector's files."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.mesh = LocalMesh(home)
        self.previous: dict[str, top.Sample] = {}
        self.last: dict[str, top.Sample] = {}
        self.kept = SpanIndex(spans.directory(self.home))

    def scrape(self) -> None:
        self.previous, self.last = self.last, top.scrape(self.mesh.processes().values())

    def snapshot(self) -> Snapshot:
        state = self.mesh.state()
        records = state.processes if state else {}
        processes = [
            {
                "name": record.name,
                "service": record.service or record.name,
                "kind": record.kind,
                "address": record.address,
                "state": record.state,
                "restarts": record.restarts,
                "last_exit": record.last_exit,
                "metrics_up": record.name in self.last,
            }
            for record in sorted(records.values(), key=lambda r: r.name)
        ]
        service_of = {name: record.service for name, record in records.items()}
        load = top.rows(self.previous, {k: v for k, v in self.last.items() if k in service_of}, service_of)
        window = max((self.last[n].at - self.previous[n].at for n in self.last if n in self.previous), default=0.0)
        edges = [(caller, callee) for caller, callees in CALLS.items() for callee in callees]
        return Snapshot(processes, load, edges, bool(state and state.sidecars), window)

    def slowest(self, count: int, streams: bool, streaming_methods: set[str]) -> list[dict[str, Any]]:
        return [
            {
                "trace_id": trace.trace_id,
                "duration_ms": trace.duration_ms,
                "service": trace.service,
                "what": trace.what,
                "start_seconds": trace.start_ns / 1e9,
                "error": trace.error,
            }
            for trace in self.kept.slowest(count or SLOWEST, skipped=() if streams else streaming_methods)
        ]

    def trace(self, trace_id: str) -> dict[str, Any]:
        found = self.kept.trace(trace_id)
        start = min(span.start_ns for span in found)
        rows = [
            {
                **{key: value for key, value in asdict(span).items() if key in ("span_id", "parent_span_id", "service", "name", "message")},
                "depth": depth,
                "offset_ms": (span.start_ns - start) / 1e6,
                "duration_ms": span.duration_ms,
                "error": span.status == "error",
                "attributes": {
                    **({"method": str(span.attributes["grpc.path"])} if "grpc.path" in span.attributes else {}),
                    **spans.shown_attributes(span.attributes),
                },
            }
            for depth, span in spans.tree(found)
        ]
        return {"trace_id": found[0].trace_id, "duration_ms": (max(s.end_ns for s in found) - start) / 1e6, "spans": rows}
