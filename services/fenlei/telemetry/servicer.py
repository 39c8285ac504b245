"""gRPC adapter of the mesh's status and traces (fenlei.v1.Telemetry), and its server.

It scrapes every app's metrics every few seconds in the background, so an answer is the
load of the last window at once, however often a dashboard asks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import grpc

from fenlei import services
from fenlei.gateway.config import public_methods
from fenlei.runtime import rpc
from fenlei.runtime.messages import timestamp
from fenlei.runtime.server import Service, serve
from fenlei.runtime.settings import ServiceSettings, load_settings
from fenlei.telemetry.status import MeshWatch
from fenlei.v1 import telemetry_pb2, telemetry_pb2_grpc

SERVICE = "telemetry"
log = logging.getLogger("fenlei.telemetry")


@dataclasses.dataclass(frozen=True)
class TelemetrySettings(ServiceSettings):
    scrape_seconds: float = 2.0


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServicer):
    def __init__(self, watch: MeshWatch) -> None:
        self.watch = watch
        self.streaming = {m.path for m in public_methods() if m.streaming}

    @rpc.unary
    async def GetMeshStatus(self, request: telemetry_pb2.GetMeshStatusRequest, context: grpc.aio.ServicerContext) -> Any:
        snapshot = await asyncio.to_thread(self.watch.snapshot)
        load = []
        for row in snapshot.load:
            entry = telemetry_pb2.ServiceLoad(
                service=row.service,
                instances=row.instances,
                requests_per_second=row.requests_per_second,
                errors_per_second=row.errors_per_second,
                cpu_percent=row.cpu_percent,
                resident_bytes=int(row.resident_bytes),
            )
            if row.p50_seconds is not None:
                entry.p50_ms = 1000 * row.p50_seconds
            if row.p99_seconds is not None:
                entry.p99_ms = 1000 * row.p99_seconds
            load.append(entry)
        return telemetry_pb2.GetMeshStatusResponse(
            processes=[telemetry_pb2.ProcessStatus(**process) for process in snapshot.processes],
            load=load,
            edges=[telemetry_pb2.Edge(caller=caller, callee=callee) for caller, callee in snapshot.edges],
            sidecars=snapshot.sidecars,
            window_seconds=snapshot.window_seconds,
        )

    @rpc.unary
    async def ListSlowTraces(self, request: telemetry_pb2.ListSlowTracesRequest, context: grpc.aio.ServicerContext) -> Any:
        found = await asyncio.to_thread(self.watch.slowest, request.count, request.streams, self.streaming)
        return telemetry_pb2.ListSlowTracesResponse(
            traces=[
                telemetry_pb2.TraceSummary(
                    trace_id=t["trace_id"], duration_ms=t["duration_ms"], service=t["service"], what=t["what"],
                    start=timestamp(t["start_seconds"]), error=t["error"],
                )
                for t in found
            ]
        )  # fmt: skip

    @rpc.unary
    async def GetTrace(self, request: telemetry_pb2.GetTraceRequest, context: grpc.aio.ServicerContext) -> Any:
        found = await asyncio.to_thread(self.watch.trace, request.trace_id)
        return telemetry_pb2.GetTraceResponse(
            trace_id=found["trace_id"], duration_ms=found["duration_ms"], spans=[telemetry_pb2.SpanRecord(**row) for row in found["spans"]]
        )


async def scraping(watch: MeshWatch, every: float) -> None:
    while True:
        try:
            await asyncio.to_thread(watch.scrape)
        except Exception:  # noqa: BLE001 - a failed scrape must not end the scraping
            log.exception("scraping the mesh's metrics failed")
        await asyncio.sleep(every)


def register(server: grpc.aio.Server, settings: TelemetrySettings) -> Service:
    watch = MeshWatch(settings.home)
    telemetry_pb2_grpc.add_TelemetryServicer_to_server(TelemetryServicer(watch), server)
    tasks: set[asyncio.Task[None]] = set()

    async def load() -> None:
        tasks.add(asyncio.get_running_loop().create_task(scraping(watch, settings.scrape_seconds)))

    return Service([service.full_name for service in services.BY_NAME[SERVICE].contract], load)


def main() -> None:
    serve(SERVICE, load_settings(TelemetrySettings, SERVICE), register)


if __name__ == "__main__":
    main()
