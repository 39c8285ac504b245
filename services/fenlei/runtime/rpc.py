"""The one place where domain errors become gRPC statuses, and the shape every stage
RPC shares: a function from one batch request to one batch response, served both as a
unary RPC and as a bidirectional stream (one response per request, in order)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from fenlei import errors
from fenlei.runtime import logging as jsonlog

log = logging.getLogger("fenlei.rpc")
T = TypeVar("T")
Response = TypeVar("Response", bound=Message)

STATUS_OF: dict[type[errors.FenleiError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
}
# A status message travels in a header, percent-encoded (up to 3 bytes per byte): past
# gRPC's 8 KiB metadata limit the caller would get "metadata size exceeds limit" instead.
MAX_MESSAGE_BYTES = 2048


_ERROR_OF = {code: kind for kind, code in STATUS_OF.items()}
_STREAM_POSITION = re.compile(r"^stream message \d+: ")
# One key=value pair of x-forwarded-client-cert: values may be quoted (a Subject holds commas);
# ';' separates the pairs of one certificate, ',' the certificates of successive hops.
_CLIENT_CERT_PAIR = re.compile(r'([A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,]*)')
SUBJECT_HEADER = "x-fenlei-subject"
CLIENT_CERT_HEADER = "x-forwarded-client-cert"
# The mesh account of the gateway, the one workload whose subject header comes from a verified token.
GATEWAY_ACCOUNT = "gateway"


def caller(context: grpc.aio.ServicerContext) -> str:
    """Who called, as the registry records it: the subject of the caller's token (the gateway
    sets x-fenlei-subject and overwrites any a client sent), else the SPIFFE id of the calling
    workload (its sidecar's x-forwarded-client-cert, the nearest hop's), else "anonymous".
    A subject that another workload than the gateway vouches for (the jobs service names a
    job's creator) is recorded with that workload: "alice via spiffe://.../sa/jobs"."""
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    workload = ""
    for key, value in _CLIENT_CERT_PAIR.findall(metadata.get(CLIENT_CERT_HEADER, "")):
        if key.upper() == "URI" and value.strip('"').startswith("spiffe://"):
            workload = value.strip('"')  # the last one is the nearest hop's
    subject = errors.shorten(metadata.get(SUBJECT_HEADER, "").strip(), 256)  # it is recorded in the registry's history
    if subject and workload and not workload.endswith(f"/sa/{GATEWAY_ACCOUNT}"):
        return f"{subject} via {workload}"
    return subject or workload or "anonymous"


def status_of(error: errors.FenleiError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return grpc.StatusCode.UNKNOWN


def in_stream(error: errors.FenleiError, index: int) -> errors.FenleiError:
    """The same error, naming the stream message it came from."""
    return type(error)(f"stream message {index}: {error}")


def upstream_error(error: grpc.aio.AioRpcError) -> Exception:
    """A stage's status as the domain error it reported, without its position in the
    caller's private stream to the stage, so the caller can name its own position."""
    kind = _ERROR_OF.get(error.code())
    if kind is None:
        return error
    return kind(_STREAM_POSITION.sub("", error.details() or ""))


# What a service's sidecar answers when the mesh's policy refuses its call.
REFUSED_BY_THE_MESH = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, grpc.aio.AioRpcError):
        if error.code() in REFUSED_BY_THE_MESH:
            # The mesh refused this service, not the caller (whose rights the gateway checked):
            # passed on as it is, the status would send them to look at their token.
            message = (
                f"a service this one calls refused it ({error.code().name}: {error.details()}): the mesh's authorization "
                "policy does not allow the call; an operator must allow it (mesh/istio/authorization-policies.yaml)"
            )
            log.error("the mesh refused a call of this service", extra={"fields": {"code": error.code().name, "error": error.details()}})
            await context.abort(grpc.StatusCode.INTERNAL, errors.shorten_utf8(message, MAX_MESSAGE_BYTES))
        # An upstream stage's status passes through unchanged, so the caller sees the real cause.
        await context.abort(error.code(), errors.shorten_utf8(error.details() or "", MAX_MESSAGE_BYTES))
    if isinstance(error, errors.FenleiError):
        code = status_of(error)
        log.info("rpc failed", extra={"fields": {"code": code.name, "error": str(error)}})
        await context.abort(code, errors.shorten_utf8(str(error), MAX_MESSAGE_BYTES))
    log.exception("unexpected error")
    message = f"internal error: {type(error).__name__}: {error}"
    await context.abort(grpc.StatusCode.INTERNAL, errors.shorten_utf8(message, MAX_MESSAGE_BYTES))


async def in_worker(work: Callable[[Callable[[], bool]], T]) -> T:
    """Runs CPU-bound work in a worker thread, so the server goes on serving meanwhile.

    `work` is handed a function that tells it to stop. When the caller goes away, gRPC
    cancels the RPC's task: the await ends at once, so nothing after it (saving what was
    fitted) runs, and the work is told to stop at its next check; its result is dropped.
    """
    stop = threading.Event()
    try:
        return await asyncio.to_thread(work, stop.is_set)
    except asyncio.CancelledError:
        stop.set()
        raise


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """function(*args) in a worker thread. A caller cancelled meanwhile waits until it has
    returned, so that nothing after it (closing what it works on) runs while it still does."""
    step = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(step)
    except asyncio.CancelledError:
        await asyncio.wait({step})
        raise


Handler = Callable[..., Awaitable[Any]]


def unary(method: Handler) -> Handler:
    """Wraps an async unary-response servicer method with error mapping and a log line at its end."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        with jsonlog.handled(context):
            try:
                return await method(self, request, context)
            except Exception as error:
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await _abort(context, error)

    return wrapper


def streaming(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """The same for async-generator (server- or bidi-streaming) methods."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with jsonlog.handled(context):
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as error:
                if isinstance(error, grpc.aio.AbortError):
                    raise
                await _abort(context, error)

    return wrapper


# handle(servicer, request, items): appends one answer per input to `items`, the
# repeated field 1 of the response (built in place, no copies).
BatchFn = Callable[[Any, Any, Any], None]


def batch_unary(handle: BatchFn, response_type: type[Message]) -> Handler:
    """Serves a batch function as a unary RPC."""

    @unary
    async def method(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Message:
        response = response_type()
        handle(self, request, _items(response))
        return response

    return method


def batch_stream(handle: BatchFn, response_type: type[Response]) -> Callable[..., AsyncIterator[Response]]:
    """Serves the same function as a bidirectional stream. An error names the batch."""

    @streaming
    async def method(self: Any, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Response]:
        index = 0
        async for request in requests:
            response = response_type()
            try:
                handle(self, request, _items(response))
            except errors.FenleiError as error:
                raise in_stream(error, index) from error
            yield response
            index += 1

    return method


def _items(response: Message) -> Any:
    return getattr(response, response.DESCRIPTOR.fields_by_number[1].name)
