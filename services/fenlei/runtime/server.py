"""Server bootstrap shared by every service: one asyncio gRPC server with health,
reflection, message-size limits, JSON logs and a graceful drain on SIGTERM.

A service hands `serve` its name, its settings and a `register` function that adds its
servicers to the server and returns a `Service`: the names it serves and a `load`
coroutine for what takes time (dictionaries). Servicers are registered before the
server starts (grpc only takes registered methods then); the server starts, health says
NOT_SERVING and fenlei RPCs get UNAVAILABLE until `load` has returned.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fenlei.runtime import live, metrics, tracing
from fenlei.runtime import logging as jsonlog
from fenlei.runtime.health import Health
from fenlei.runtime.settings import ServiceSettings

log = logging.getLogger("fenlei.server")


async def _nothing_to_load() -> None:
    return None


@dataclass
class Service:
    names: list[str]  # full names of the gRPC services registered
    load: Callable[[], Awaitable[None]] = _nothing_to_load
    # Services that reflection describes although another process serves them.
    described: list[str] = field(default_factory=list)


# A service's settings class: register receives the settings serve was given.
Settings = TypeVar("Settings", bound=ServiceSettings)
Register = Callable[[grpc.aio.Server, Settings], Service]


class _Admission(grpc.aio.ServerInterceptor):
    """What every fenlei RPC passes before its servicer sees a request: the service has
    loaded (else UNAVAILABLE), and the request parses (else INVALID_ARGUMENT naming the
    problem, where grpc itself would answer UNKNOWN, e.g. for a string that is not UTF-8).
    Parsing therefore moves from grpc into the handler. Wrapped handlers are cached."""

    def __init__(self) -> None:
        self.ready = False
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = await continuation(details)
            if handler is None or not method.startswith("/fenlei."):
                return handler  # unknown methods stay UNIMPLEMENTED; health and reflection pass
            handler = self._handlers[method] = self._parsing_in_handler(handler, method)
        return handler

    def _parsing_in_handler(self, handler: Any, method: str) -> Any:
        parse = handler.request_deserializer

        async def parsed(data: bytes, context: grpc.aio.ServicerContext, where: str = "") -> Any:
            if not self.ready:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"{method}: the service is still loading; retry when its health check says SERVING"
                )
            try:
                return parse(data)
            except DecodeError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}{method}: the request is not a valid message: {error}")

        async def parsed_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            index = 0
            async for data in requests:
                yield await parsed(data, context, f"stream message {index}: ")
                index += 1

        # grpc picks how to drive a handler from its function type (coroutine, async
        # generator or plain function), so each wrapper keeps its kind.
        if handler.request_streaming and handler.response_streaming:
            kind, behavior = "stream_stream", handler.stream_stream

            async def wrapped(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:
                async for response in behavior(parsed_stream(requests, context), context):
                    yield response

        elif handler.request_streaming:
            kind, behavior = "stream_unary", handler.stream_unary

            async def wrapped(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> Any:  # type: ignore[misc]
                return await behavior(parsed_stream(requests, context), context)

        elif handler.response_streaming:
            kind, behavior = "unary_stream", handler.unary_stream

            async def wrapped(data: bytes, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[misc]
                async for response in behavior(await parsed(data, context), context):
                    yield response

        else:
            kind, behavior = "unary_unary", handler.unary_unary

            async def wrapped(data: bytes, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[misc]
                return await behavior(await parsed(data, context), context)

        return handler._replace(request_deserializer=None, **{kind: wrapped})


class _MethodAwarePool:
    """The default descriptor pool, plus what protobuf's upb pool does not find: the file
    of a method's full name (Service.Method), which `grpcurl describe` asks reflection for."""

    def __init__(self) -> None:
        self._pool = descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            if service and method in self._pool.FindServiceByName(service).methods_by_name:
                return self._pool.FindFileContainingSymbol(service)
            raise


def channel_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: Health
    port: int
    grace_seconds: float

    async def drain(self) -> None:
        """NOT_SERVING for every service at once, then let in-flight RPCs finish."""
        log.info("draining", extra={"fields": {"grace_seconds": self.grace_seconds}})
        await self.health.drain()
        await self.server.stop(self.grace_seconds)


async def start_server(service: str, settings: Settings, register: Register[Settings], metrics_address: str = "") -> RunningServer:
    """metrics_address: the process's Prometheus endpoint, for the address file."""
    admission = _Admission()
    # The logs' first: the metrics and admission interceptors cache handlers and so skip the
    # rest of the chain after a method's first call.
    interceptors = [*jsonlog.server_interceptors(), *tracing.server_interceptors(), *metrics.server_interceptors(), admission]
    server = grpc.aio.server(options=channel_options(settings), interceptors=interceptors)
    health = Health()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    served = register(server, settings)
    names = served.names
    reflected = [*names, *served.described, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(reflected, server, pool=_MethodAwarePool())
    wanted = settings.listen or f"{settings.host}:{settings.port}"
    port = server.add_insecure_port(wanted)
    if port == 0 and not settings.listen:
        raise OSError(f"{service}: cannot listen on {wanted}")
    address = settings.listen or f"{settings.host}:{port}"
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info("listening", extra={"fields": {"address": address}})

    await served.load()
    # What load() built lives as long as the process; freezing it keeps full collections
    # from walking it again and again while serving.
    gc.collect()
    gc.freeze()
    admission.ready = True
    for name in ["", *names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"fields": {"services": names}})
    if settings.address_file:
        _write_address_file(Path(settings.address_file), address, metrics_address)
    return RunningServer(server, health, port, settings.grace_seconds)


def _write_address_file(path: Path, address: str, metrics_address: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"address": address, "pid": os.getpid(), **({"metrics": metrics_address} if metrics_address else {})}))
    os.replace(tmp, path)


def serve(service: str, settings: Settings, register: Register[Settings]) -> None:
    """Runs a service until SIGTERM or SIGINT, then drains it."""
    jsonlog.configure(service, settings.log_level)
    tracing.configure(service)
    metrics_address = metrics.start(service, settings)

    async def main() -> None:
        running = await start_server(service, settings, register, metrics_address)
        following = asyncio.create_task(live.follow(service, settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        following.cancel()
        await running.drain()
        log.info("stopped")

    asyncio.run(main())
