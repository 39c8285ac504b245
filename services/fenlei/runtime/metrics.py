"""Prometheus metrics of a service process, served over HTTP by `start`.

gRPC, with go-grpc-prometheus's names and labels, so the dashboards and alerts people
already have apply: grpc_server_started_total, grpc_server_handled_total (with the call's
real status code), grpc_server_handling_seconds, grpc_server_msg_received_total and
grpc_server_msg_sent_total, each by grpc_type, grpc_service and grpc_method. Health and
reflection calls count too.

The process (prometheus_client's collectors): process_cpu_seconds_total,
process_resident_memory_bytes, ...

The domain, fenlei_*: documents per stage, the model versions a stage has loaded, the jobs
queue, and the features stage's tokens and unknown tokens per model version (their ratio
is the share of served words the model never saw in training: a drift signal). Servicers
count; the domain cores know nothing of metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fenlei.runtime.settings import ServiceSettings

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# Finer than Prometheus's default at the low end: a stage call takes about a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

STARTED = prometheus_client.Counter("grpc_server_started_total", "RPCs started on the server.", GRPC_LABELS)
HANDLED = prometheus_client.Counter(
    "grpc_server_handled_total", "RPCs completed on the server, whatever their status.", (*GRPC_LABELS, "grpc_code")
)
HANDLING = prometheus_client.Histogram(
    "grpc_server_handling_seconds", "Time from the start of an RPC to its end on the server.", GRPC_LABELS, buckets=LATENCY_BUCKETS
)
RECEIVED = prometheus_client.Counter("grpc_server_msg_received_total", "Messages received by the server, per RPC method.", GRPC_LABELS)
SENT = prometheus_client.Counter("grpc_server_msg_sent_total", "Messages sent by the server, per RPC method.", GRPC_LABELS)

STAGE_DOCUMENTS = prometheus_client.Counter("fenlei_stage_documents_total", "Documents a stage has served.", ["stage"])
FEATURES_TOKENS = prometheus_client.Counter(
    "fenlei_features_tokens_total", "Tokens the features stage turned into vectors, per model version.", ["model", "version"]
)
FEATURES_UNKNOWN_TOKENS = prometheus_client.Counter(
    "fenlei_features_unknown_tokens_total",
    "Tokens the features stage served that the model's vocabulary lacks (out of vocabulary), per model version.",
    ["model", "version"],
)
JOBS_QUEUED = prometheus_client.Gauge("fenlei_jobs_queued", "Jobs waiting in the queue.")
JOBS_RUNNING = prometheus_client.Gauge("fenlei_jobs_running", "Jobs running now.")
_SCRAPE_READS = ThreadPoolExecutor(1, thread_name_prefix="metrics-reads")

# The handler's attribute grpc calls, by grpc_type.
BEHAVIOR_OF = {"unary": "unary_unary", "client_stream": "stream_unary", "server_stream": "unary_stream", "bidi_stream": "stream_stream"}
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


# A client's deadline lapses a little before the server's (which counts from the call's arrival):
# the client's cancel, when its deadline passes, reaches a busy server while it still has some time.
DEADLINE_SLACK_SECONDS = 0.1


def _code_at_end(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the call ends with, as grpc sends it: what abort or set_code put there;
    CANCELLED or DEADLINE_EXCEEDED for a call whose task was cancelled; UNKNOWN for any
    other exception (grpc answers so)."""
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        return code.name
    if error is None or isinstance(error, GeneratorExit):
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= DEADLINE_SLACK_SECONDS else "CANCELLED"
    return "UNKNOWN"


class _ServerMetrics(grpc.aio.ServerInterceptor):
    """Counts every call it lets through, with the code it really ends with. It sits
    outside the admission interceptor, so its UNAVAILABLE while loading and its
    INVALID_ARGUMENT for a message that does not parse are counted as such."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._handlers.get(details.method)
        if handler is None:
            handler = await continuation(details)
            if handler is None:
                return None  # UNIMPLEMENTED, as go-grpc-prometheus: no method, no series
            handler = self._handlers[details.method] = _observed(handler, details.method)
        return handler


def _observed(handler: Any, method: str) -> Any:
    service, _, name = method.lstrip("/").rpartition("/")
    labels = (grpc_type(handler), service, name)
    started, received, sent = (counter.labels(*labels) for counter in (STARTED, RECEIVED, SENT))
    handling = HANDLING.labels(*labels)

    def begin() -> float:
        started.inc()
        return time.perf_counter()

    handled: dict[str, Any] = {}  # code → its counter: labels() costs more than the count

    def end(context: grpc.aio.ServicerContext, began: float, error: BaseException | None) -> None:
        handling.observe(time.perf_counter() - began)
        code = _code_at_end(context, error)
        counter = handled.get(code) or handled.setdefault(code, HANDLED.labels(*labels, code))
        counter.inc()

    async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            received.inc()
            yield request

    def arriving(request: Any) -> Any:
        if handler.request_streaming:
            return counted(request)
        received.inc()
        return request

    kind = BEHAVIOR_OF[labels[0]]
    behavior = getattr(handler, kind)

    # grpc picks how to drive a handler from its function type, so the wrapper keeps it.
    if inspect.isasyncgenfunction(behavior):

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            began, error = begin(), None
            try:
                async for response in behavior(arriving(request), context):
                    sent.inc()
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                end(context, began, error)

        return handler._replace(**{kind: streamed})

    async def answered(request: Any, context: grpc.aio.ServicerContext) -> Any:
        began, error = begin(), None
        try:
            response = await behavior(arriving(request), context)
            if not handler.response_streaming:  # a streaming handler that writes with context.write sends uncounted
                sent.inc()
            return response
        except BaseException as raised:
            error = raised
            raise
        finally:
            end(context, began, error)

    return handler._replace(**{kind: answered})


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The interceptors of a service's server (the process is named by its scrape target, not by a label of its own)."""
    return [_ServerMetrics()]


def start(service: str, settings: ServiceSettings) -> str:
    """Serves /metrics on settings.metrics_host:metrics_port (0: a free port) from a thread;
    returns host:port, or "" when metrics_port is -1 (no endpoint)."""
    if settings.metrics_port < 0:
        return ""
    server, _ = prometheus_client.start_http_server(settings.metrics_port, settings.metrics_host)
    return f"{settings.metrics_host}:{server.server_address[1]}"


# ---------------------------------------------------------------- the domain


def count_documents(stage: str, documents: int) -> None:
    STAGE_DOCUMENTS.labels(stage).inc(documents)


def count_tokens(model: str, version: str, term_lists: Iterable[Iterable[str]], vocabulary: Collection[str]) -> tuple[int, int]:
    """Counts the features stage's tokens of a batch and those its model's vocabulary lacks; answers both."""
    tokens = list(itertools.chain.from_iterable(term_lists))
    unknown = len(tokens) - sum(map(vocabulary.__contains__, tokens))
    FEATURES_TOKENS.labels(model, version).inc(len(tokens))
    FEATURES_UNKNOWN_TOKENS.labels(model, version).inc(unknown)
    return len(tokens), unknown


class _LoadedVersions(Collector):
    """fenlei_model_versions_loaded{stage,model,version} = 1 for each version a stage holds,
    read when scraped. Its stages are held weakly (servers come and go in tests)."""

    def __init__(self) -> None:
        self.stages: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "fenlei_model_versions_loaded",
            "Model versions (or drafts) a stage holds in memory, 1 each.",
            labels=["stage", "model", "version"],
        )
        for models, stage in list(self.stages.items()):
            for model, version in models.loaded():
                family.add_metric([stage, model, version], 1)
        yield family


_LOADED_VERSIONS = _LoadedVersions()
prometheus_client.REGISTRY.register(_LOADED_VERSIONS)


def watch_models(stage: str, models: Any) -> None:
    """models: a fenlei.runtime.models.LoadedModels, reported while it lives."""
    _LOADED_VERSIONS.stages[models] = stage


def watch_jobs(queued: Callable[[], int], running: Callable[[], int]) -> None:
    """The jobs service's queue length and running jobs, asked for when scraped. queued may
    read the database: it runs in one thread of its own (a database opens a connection per
    thread that reads, and the HTTP server serves each scrape from a new thread)."""
    JOBS_QUEUED.set_function(lambda: _SCRAPE_READS.submit(queued).result())
    JOBS_RUNNING.set_function(running)
