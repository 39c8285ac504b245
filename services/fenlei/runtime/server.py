"""Server bootstrap shared by every service: one asyncio gRPC server with health,
reflection, message-size limits, JSON logs and a graceful drain on SIGTERM.

A service hands `serve` its name, its settings and a `start` coroutine that loads what
the service needs (dictionaries, models) and registers its servicers; health says
SERVING only once that has returned.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from fenlei.runtime import logging as jsonlog
from fenlei.runtime.settings import ServiceSettings

log = logging.getLogger("fenlei.server")

# start(server, settings) registers servicers and returns their full service names.
Start = Callable[[grpc.aio.Server, ServiceSettings], Awaitable[list[str]]]


def channel_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: HealthServicer
    port: int
    grace_seconds: float

    async def drain(self) -> None:
        """NOT_SERVING for every service at once, then let in-flight RPCs finish."""
        log.info("draining", extra={"fields": {"grace_seconds": self.grace_seconds}})
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace_seconds)


async def start_server(service: str, settings: ServiceSettings, start: Start) -> RunningServer:
    server = grpc.aio.server(options=channel_options(settings))
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"{service}: cannot listen on {settings.host}:{settings.port}")
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("listening", extra={"fields": {"address": f"{settings.host}:{port}"}})

    names = await start(server, settings)
    # Dictionaries and models loaded by start() live as long as the process; freezing them
    # keeps full collections from walking them again and again while serving.
    gc.collect()
    gc.freeze()
    reflection.enable_server_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    for name in ["", *names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"fields": {"services": names}})
    if settings.address_file:
        _write_address_file(Path(settings.address_file), settings.host, port)
    return RunningServer(server, health, port, settings.grace_seconds)


def _write_address_file(path: Path, host: str, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"address": f"{host}:{port}", "pid": os.getpid()}))
    os.replace(tmp, path)


def serve(service: str, settings: ServiceSettings, start: Start) -> None:
    """Runs a service until SIGTERM or SIGINT, then drains it."""
    jsonlog.configure(service, settings.log_level)

    async def main() -> None:
        # Servicers register after the port is bound, so reflection and health answer
        # while models load; the servicers' own RPCs become reachable with them.
        running = await start_server(service, settings, start)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await running.drain()
        log.info("stopped")

    asyncio.run(main())
