"""fenlei.runtime.rpc around a servicer of its own, in-process: a domain error reaches the
caller as its status with a message that fits in a header, cut between whole characters; a
service's status passes through a service that called it, unless the mesh refused the call."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from servicekit import generic_server

from fenlei.errors import InvalidInput
from fenlei.runtime import rpc

MESSAGES = {"long": "标" * 20_000, "joined": "👨\u200d👩\u200d👧" * 1_000, "surrogate": "坏\ud800字"}


class Failing:
    def __init__(self) -> None:
        self.callee: grpc.aio.Channel | None = None  # this server itself, as a service it calls

    @rpc.unary
    async def Fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise InvalidInput(MESSAGES[request.decode()])

    async def Refuse(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Answers the status named by the request, as a sidecar or a service would."""
        await context.abort(grpc.StatusCode[request.decode()], "RBAC: access denied")
        raise AssertionError("abort raises")

    @rpc.unary
    async def Relay(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        assert self.callee is not None
        return await self.callee.unary_unary("/test.Failing/Refuse")(request)


@pytest.fixture(scope="module")
def channel(loop_thread) -> Iterator[grpc.Channel]:
    failing = Failing()
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(failing, name)) for name in ("Fail", "Refuse", "Relay")}
    with generic_server(loop_thread, "test.Failing", handlers) as (channel, address):
        failing.callee = loop_thread.run(_aio_channel(address))
        try:
            yield channel
        finally:
            loop_thread.run(failing.callee.close())


async def _aio_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address)  # made on the server's loop, where Relay uses it


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


def test_a_called_services_status_reaches_the_caller_unchanged(channel, helpers) -> None:
    error = helpers.rpc_error(channel.unary_unary("/test.Failing/Relay"), b"NOT_FOUND")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "RBAC: access denied")


@pytest.mark.parametrize("refusal", ["PERMISSION_DENIED", "UNAUTHENTICATED"])
def test_a_call_the_mesh_refused_is_an_internal_error_that_names_the_policy(channel, helpers, refusal) -> None:
    # Passed on as it is, PERMISSION_DENIED would tell the caller that their token lacks a role.
    error = helpers.rpc_error(channel.unary_unary("/test.Failing/Relay"), refusal.encode())
    assert error.code() == grpc.StatusCode.INTERNAL
    assert f"a service this one calls refused it ({refusal}: RBAC: access denied)" in error.details()
    assert "authorization policy" in error.details()
