"""fenlei.runtime.rpc around a servicer of its own, in-process: a domain error reaches the
caller as its status with a message that fits in a header, cut between whole characters."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from fenlei.errors import InvalidInput
from fenlei.runtime import rpc

MESSAGES = {"long": "标" * 20_000, "joined": "👨\u200d👩\u200d👧" * 1_000, "surrogate": "坏\ud800字"}


class Failing:
    @rpc.unary
    async def Fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise InvalidInput(MESSAGES[request.decode()])


@pytest.fixture(scope="module")
def channel(loop_thread) -> Iterator[grpc.Channel]:
    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(Failing().Fail)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Failing", {"Fail": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop_thread.run(start())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        loop_thread.run(server.stop(None))


def details(channel: grpc.Channel, helpers, message: str) -> str:
    error = helpers.rpc_error(channel.unary_unary("/test.Failing/Fail"), message.encode())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    return error.details()


@pytest.mark.parametrize("message", ["long", "joined"])
def test_a_long_message_arrives_cut_to_the_limit_between_whole_characters(channel, helpers, message) -> None:
    # uncut, 60,000 bytes of UTF-8 overflow gRPC's metadata limit: the caller got RESOURCE_EXHAUSTED instead
    received = details(channel, helpers, message)
    assert len(received.encode("utf-8")) <= rpc.MAX_MESSAGE_BYTES and received.endswith("…")
    kept = received.removesuffix("…")
    assert MESSAGES[message].startswith(kept) and not kept.endswith("\u200d")
    assert len(kept) % (1 if message == "long" else 5) == 0  # whole families only


def test_what_utf8_cannot_hold_arrives_escaped(channel, helpers) -> None:
    assert details(channel, helpers, "surrogate") == "坏\\ud800字"
