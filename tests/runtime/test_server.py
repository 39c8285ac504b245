"""The shared server bootstrap (fenlei.runtime.server) around a real servicer, in-process:
health, reflection, the address file, NOT_SERVING while loading, graceful drain."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from fenlei.runtime.health import Health
from fenlei.runtime.server import start_server
from fenlei.segmenter import servicer
from fenlei.v1 import common_pb2, segmenter_pb2, segmenter_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def segment(channel: grpc.Channel, *texts: str, timeout: float = 30) -> list[list[str]]:
    request = segmenter_pb2.SegmentRequest(documents=[common_pb2.Document(id=str(i), text=t) for i, t in enumerate(texts)])
    return [list(d.tokens) for d in segmenter_pb2_grpc.SegmenterStub(channel).Segment(request, timeout=timeout).documents]


def test_health_reflection_and_address_file(servers, helpers, tmp_path) -> None:
    address_file = tmp_path / "run" / "segmenter.json"
    served = servers.start("segmenter", servicer.register, helpers.settings_for(tmp_path, address_file=str(address_file)))
    assert check(served.channel) == SERVING
    assert check(served.channel, "fenlei.v1.Segmenter") == SERVING
    with pytest.raises(grpc.RpcError) as failure:
        check(served.channel, "fenlei.v1.Pipeline")
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND

    reflection = ProtoReflectionDescriptorDatabase(served.channel)
    assert sorted(reflection.get_services()) == ["fenlei.v1.Segmenter", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    described = reflection.FindFileContainingSymbol("fenlei.v1.Segmenter")
    assert described.name == "fenlei/v1/segmenter.proto" and "fenlei/v1/common.proto" in described.dependency
    assert reflection.FindFileByName("fenlei/v1/common.proto").package == "fenlei.v1"

    assert json.loads(address_file.read_text()) == {"address": served.address, "pid": os.getpid()}
    assert segment(served.channel, "我来到北京清华大学") == [["我", "来到", "北京", "清华大学"]]


def test_not_serving_until_loaded(loop_thread, helpers, tmp_path, tools) -> None:
    """While the service's load() runs, health answers NOT_SERVING and its RPCs UNAVAILABLE;
    the address file appears only once it serves."""
    addresses: list[str] = []

    class Listening(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "listening":
                addresses.append(record.fields["address"])

    handler = Listening()
    logger = logging.getLogger("fenlei.server")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    gate = asyncio.Event()

    def slow_register(server, settings):
        service = servicer.register(server, settings)

        async def load() -> None:
            await gate.wait()  # as if loading a large dictionary
            await service.load()

        return dataclasses.replace(service, load=load)

    address_file = tmp_path / "segmenter.json"
    settings = helpers.settings_for(tmp_path, address_file=str(address_file))
    future = loop_thread.submit(start_server("segmenter", settings, slow_register))
    running = None
    try:
        address = tools.wait_for(lambda: addresses[-1] if addresses else None, "the server to listen")
        with grpc.insecure_channel(address) as channel:
            assert check(channel) == NOT_SERVING
            with pytest.raises(grpc.RpcError) as loading:
                segment(channel, "北京")
            assert loading.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "still loading" in loading.value.details()
            assert not address_file.exists()
            loop_thread.loop.call_soon_threadsafe(gate.set)
            running = future.result(60)
            assert check(channel) == SERVING
            assert json.loads(address_file.read_text())["address"] == address
            assert segment(channel, "北京") == [["北京"]]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        loop_thread.loop.call_soon_threadsafe(gate.set)
        running = running or future.result(60)
        loop_thread.run(running.server.stop(None))


def test_drain_finishes_in_flight_streams_and_refuses_new_calls(servers, helpers, tmp_path, tools) -> None:
    served = servers.start("segmenter", servicer.register, helpers.settings_for(tmp_path, grace_seconds=60.0))
    watch_channel = grpc.insecure_channel(served.address)
    requests = tools.RequestQueue()
    try:
        watch = health_pb2_grpc.HealthStub(watch_channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == SERVING
        stream = segmenter_pb2_grpc.SegmenterStub(served.channel).SegmentStream(iter(requests), timeout=60)
        requests.put(segmenter_pb2.SegmentStreamRequest(documents=[common_pb2.Document(id="before", text="北京")]))
        assert [d.id for d in next(stream).documents] == ["before"]

        drain = servers.loop.submit(served.running.drain())  # what SIGTERM does
        assert next(watch).status == NOT_SERVING
        with pytest.raises(StopIteration):  # the watch ends with the drain instead of holding it
            next(watch)
        assert watch.code() == grpc.StatusCode.OK

        def refused() -> bool:
            try:
                with grpc.insecure_channel(served.address) as fresh:
                    segment(fresh, "上海", timeout=5)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                return True
            return False

        tools.wait_for(refused, "new calls to be refused")
        assert not drain.done()  # the stream is still in flight, so the drain waits for it

        requests.put(segmenter_pb2.SegmentStreamRequest(documents=[common_pb2.Document(id="after", text="上海")]))
        assert [d.id for d in next(stream).documents] == ["after"]
        requests.close()
        assert list(stream) == [] and stream.code() == grpc.StatusCode.OK
        drain.result(60)
    finally:
        requests.close()
        watch_channel.close()


def test_health_watch_follows_changes_and_unknown_services(loop_thread) -> None:
    """Watch sends the current status at once, then each change; an unknown service is
    SERVICE_UNKNOWN and the stream stays open; Check on it is NOT_FOUND."""

    async def scenario() -> list:
        health = Health()
        await health.set("", SERVING)

        class Context:
            async def abort(self, code, details):
                raise RuntimeError(code, details)

        seen: list = []

        async def watch(service: str) -> None:
            async for answer in health.Watch(health_pb2.HealthCheckRequest(service=service), Context()):
                seen.append((service, answer.status))

        watchers = [asyncio.ensure_future(watch("")), asyncio.ensure_future(watch("nope"))]
        await asyncio.sleep(0.05)
        await health.set("", NOT_SERVING)
        await asyncio.sleep(0.05)
        await health.set("", SERVING)
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError):
            await health.Check(health_pb2.HealthCheckRequest(service="nope"), Context())
        await health.drain()
        await asyncio.wait_for(asyncio.gather(*watchers), 5)  # both end with the drain
        return seen

    seen = loop_thread.run(scenario())
    assert [s for name, s in seen if name == ""] == [SERVING, NOT_SERVING, SERVING, NOT_SERVING]
    assert [s for name, s in seen if name == "nope"] == [health_pb2.HealthCheckResponse.SERVICE_UNKNOWN]
