"""fenlei.client: a thin, typed client for the fenlei gRPC services, sync and asyncio.

    from fenlei.client import Client

    with Client("127.0.0.1:8080", token=jwt) as client:
        answer = client.classify("国足客场击败对手", model="news", top_k=3)
        print(answer.labels[0].label, answer.labels[0].score)
        for prediction in client.classify_stream(open("titles.txt", encoding="utf-8"), model="news"):
            ...

    async with AsyncClient("127.0.0.1:8080", token=jwt) as client:
        answer = await client.classify("国足客场击败对手")
        async for prediction in client.classify_stream(texts):
            ...

What it does, and what it deliberately does not:

* Answers are the generated protobuf messages (``fenlei.v1.pipeline_pb2.ClassifyResponse``,
  ``ClassifyBatchResponse``, ``fenlei.v1.common_pb2.Prediction``); there is no second schema.
* Every RPC of the contract is reachable: ``client.pipeline``, ``client.segmenter``,
  ``client.preprocessor``, ``client.features``, ``client.classifier``,
  ``client.model_registry``, ``client.experiments``, ``client.datasets``, ``client.jobs``
  (or ``client.stub(name)``) are the generated stubs, on the same channel, so they get the
  same token, deadline, retries and message size limits as the convenience methods.
* Every call carries a deadline: ``timeout=`` of the call, else the client's ``timeout``.
  For a streaming call the deadline bounds the whole stream, not one message; and it
  bounds all the attempts of a retried call together.
* With a ``token`` every call carries ``authorization: Bearer <token>`` metadata (the
  gateway's JWT). ``token`` may be a callable returning the token, called at every call
  (for tokens that are renewed). Extra metadata: ``metadata=`` of the client (every call)
  and of each call; a key given to a call replaces the client's value for that key,
  ``authorization`` included.
* Retries: only for UNAVAILABLE, and only of calls a retry cannot repeat a change of
  (every call of the stages and the pipeline; of the registry, datasets and jobs only the reads
  and what the contract marks idempotent, RETRIED),
  done by gRPC itself from the channel's service config (a retryPolicy with
  ``maxAttempts = retries + 1`` and exponential backoff with jitter), not by a loop here.
  gRPC caps maxAttempts at 5, so ``retries`` is 0 to 4. Other codes (INVALID_ARGUMENT,
  NOT_FOUND, DEADLINE_EXCEEDED, ...) are never retried. gRPC retries a call only until
  it is committed: a streaming call (``classify_stream``, the ``*Stream`` and ``Fit``
  stubs) is retried only while no response message and no response headers
  have been received, and only while what was sent still fits the retry buffer (set
  here to the message size limit per call); after that an UNAVAILABLE ends the stream
  and you resend what was not answered.
* Retries are throttled (gRPC's retry throttling, the service config's ``retryThrottling``),
  so that retries never multiply the load on a service that is failing or overloaded (an
  overloaded mesh answers UNAVAILABLE: Envoy's circuit breakers, its rate limit). Each
  client keeps a bucket of ``retry_max_tokens`` tokens (10), full at the start: every
  attempt that fails with UNAVAILABLE takes one, every call that succeeds gives back
  ``retry_token_ratio`` (0.1), and while the bucket holds half of the maximum or less a
  failed call is not retried. So, with the defaults, a fresh client's first call gets all
  its retries, and a client makes at most ``retry_max_tokens / 2 + retry_token_ratio *
  successful calls`` retries in all: a service that fails every call soon gets one
  attempt per call.
* Errors are ``grpc.RpcError`` as gRPC raises them (``grpc.aio.AioRpcError`` in the
  asyncio client, a subclass): ``error.code()`` is the ``grpc.StatusCode``,
  ``error.details()`` the message. Nothing is wrapped. Bad arguments to these methods
  (a str where a list of texts is expected, retries out of range, ...) raise TypeError or
  ValueError before any call. A call on a closed client raises ValueError (gRPC's, or
  ``grpc.aio.UsageError`` from an asyncio stub obtained before the close).
* Messages up to 16 MiB each way, the services' limit (``max_message_bytes``).
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import (
    Any,
    TypeAlias,
)

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2

from fenlei.services import public_services, stub_class
from fenlei.v1 import (
    classifier_pb2_grpc,
    common_pb2,
    config_pb2_grpc,
    datasets_pb2,
    datasets_pb2_grpc,
    features_pb2_grpc,
    jobs_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    preprocessor_pb2_grpc,
    registry_pb2_grpc,
    segmenter_pb2_grpc,
    telemetry_pb2_grpc,
)

__all__ = [
    "AsyncClient",
    "Client",
    "DEFAULT_TARGET",
    "MAX_MESSAGE_BYTES",
    "SERVICES",
    "Document",
    "Prediction",
    "ClassifyResponse",
    "ClassifyBatchResponse",
    "ClassifyStreamResponse",
    "channel_options",
    "service_config",
]

DEFAULT_TARGET = "127.0.0.1:8080"
# The services' own limit (fenlei.runtime.settings.ServiceSettings.max_message_bytes).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# gRPC core clamps a retryPolicy's maxAttempts to 5.
MAX_RETRIES = 4
# gRPC's retry throttling (gRFC A6): maxTokens an integer up to 1000, tokenRatio to three decimals.
MAX_RETRY_TOKENS = 1000
DEFAULT_BATCH_SIZE = 64
# Of dataset uploads: well under a message's limit (the gateway passes stream messages as they come).
UPLOAD_CHUNK_BYTES = 1024 * 1024

Document = common_pb2.Document
Prediction = common_pb2.Prediction
ClassifyResponse = pipeline_pb2.ClassifyResponse
ClassifyBatchResponse = pipeline_pb2.ClassifyBatchResponse
ClassifyStreamResponse = pipeline_pb2.ClassifyStreamResponse

# name -> (full service name, sync/aio stub class), for every public service of fenlei.services:
# "pipeline" for fenlei.v1.Pipeline, "model_registry" for fenlei.v1.ModelRegistry.
SERVICES: dict[str, tuple[str, type]] = {
    re.sub(r"(?<!^)(?=[A-Z])", "_", service.name).lower(): (service.full_name, stub_class(service)) for _, service in public_services()
}


def _retried() -> list[dict[str, str]]:
    """What gRPC may retry: every method of a service that keeps no state of its own (the
    stages and the pipeline answer alike however often they are asked), and of a service
    that does (the registry) only the methods the contract marks idempotent: UNAVAILABLE
    may come after the change was made, and a retried RollbackAlias would move an alias twice."""
    names = []
    for workload, service in public_services():
        if not workload.single_writer:
            names.append({"service": service.full_name})
            continue
        for method in service.methods:
            if method.GetOptions().idempotency_level != descriptor_pb2.MethodOptions.IdempotencyLevel.IDEMPOTENCY_UNKNOWN:
                names.append({"service": service.full_name, "method": method.name})
    return names


RETRIED = _retried()

Token = str | Callable[[], str] | None
Metadata = Sequence[tuple[str, str | bytes]]
Tls: TypeAlias = bool | grpc.ChannelCredentials | None
Text = str | common_pb2.Document


# ---------------------------------------------------------------- channel configuration


def service_config(
    retries: int = 3,
    *,
    initial_backoff: float = 0.1,
    max_backoff: float = 5.0,
    backoff_multiplier: float = 2.0,
    retry_max_tokens: int = 10,
    retry_token_ratio: float = 0.1,
) -> str:
    """The channel's service config (JSON): retry UNAVAILABLE only, on what a retry cannot
    repeat a change of (RETRIED), throttled (see the module doc)."""
    _check_retries(retries)
    config: dict[str, Any] = {"name": RETRIED}
    if not retries:
        return json.dumps({"methodConfig": [config]})
    config["retryPolicy"] = {
        "maxAttempts": retries + 1,
        "initialBackoff": _duration(initial_backoff),
        "maxBackoff": _duration(max_backoff),
        "backoffMultiplier": float(backoff_multiplier),
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    throttling = {"maxTokens": _retry_max_tokens(retry_max_tokens), "tokenRatio": _retry_token_ratio(retry_token_ratio)}
    return json.dumps({"methodConfig": [config], "retryThrottling": throttling})


def channel_options(retries: int = 3, **retry: Any) -> list[tuple[str, Any]]:
    """The channel options both clients use (a client's ``options=`` override them);
    ``retry`` are service_config's keyword arguments."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 1 if retries else 0),
        ("grpc.service_config", service_config(retries, **retry)),
        # Ours, not one a DNS TXT record might carry.
        ("grpc.service_config_disable_resolution", 1),
        # A call is retried only while what it sent fits this buffer (default 256 KiB):
        # make that any request up to the message limit.
        ("grpc.per_rpc_retry_buffer_size", MAX_MESSAGE_BYTES + (1 << 20)),
    ]


def _check_retries(retries: int) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries must be an int from 0 to {MAX_RETRIES} (gRPC allows 5 attempts), not {retries!r}")


def _retry_max_tokens(tokens: int) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 < tokens <= MAX_RETRY_TOKENS:
        raise ValueError(f"retry_max_tokens must be an int from 1 to {MAX_RETRY_TOKENS}, not {tokens!r}")
    return tokens


def _retry_token_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not round(ratio, 3) > 0:
        raise ValueError(f"retry_token_ratio must be a number of at least 0.001 (gRPC keeps three decimals), not {ratio!r}")
    return round(float(ratio), 3)


def _duration(seconds: float) -> str:
    if not seconds > 0:
        raise ValueError(f"backoff must be positive, not {seconds!r}")
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _check_timeout(timeout: float | None, what: str = "timeout") -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise ValueError(f"{what} must be a positive number of seconds, not {timeout!r}")


# ---------------------------------------------------------------- interceptors: token, metadata, deadline


class _Defaults:
    """What every call gets: the client's deadline when the call has none; the token and
    the client's metadata unless the call gives those keys itself."""

    def __init__(self, timeout: float, token: Token, metadata: Metadata) -> None:
        _check_timeout(timeout)
        if timeout is None:
            raise ValueError("the client needs a default timeout: every call gets a deadline")
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise TypeError(f"token must be a str or a callable returning one, not {type(token).__name__}")
        self.timeout = float(timeout)
        self.token = token
        self.metadata = tuple((key.lower(), value) for key, value in metadata)

    def timeout_for(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def metadata_for(self, metadata: Iterable[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
        pairs = [(key, value) for key, value in (metadata or ())]
        given = {key.lower() for key, _ in pairs}
        pairs.extend((key, value) for key, value in self.metadata if key not in given)
        if self.token is not None and "authorization" not in given:
            token = self.token() if callable(self.token) else self.token
            if token:
                pairs.append(("authorization", f"Bearer {token}"))
        return pairs


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _SyncInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            self.defaults.timeout_for(details.timeout),
            self.defaults.metadata_for(details.metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def _aio_details(defaults: _Defaults, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        details.method,
        defaults.timeout_for(details.timeout),
        grpc.aio.Metadata(*defaults.metadata_for(details.metadata)),
        details.credentials,
        details.wait_for_ready,
    )


# One class per kind of call: grpc.aio files an interceptor under the first kind it is,
# so a single class deriving from all four would see only unary-unary calls.
class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_aio_details(self.defaults, client_call_details), request)


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_aio_details(self.defaults, client_call_details), request)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(self.defaults, client_call_details), request_iterator)


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, defaults: _Defaults) -> None:
        self.defaults = defaults

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(self.defaults, client_call_details), request_iterator)


# ---------------------------------------------------------------- requests


def _options(model: str, top_k: int, version: str, explain: int, labels: Iterable[str], routing_key: str) -> dict[str, Any]:
    if isinstance(labels, (str, bytes)):
        raise TypeError("labels is a list of labels, not one string: use labels=[...]")
    return {"model": model, "top_k": top_k, "version": version, "explain": explain, "labels": list(labels), "routing_key": routing_key}


def _document(item: Text, index: int) -> common_pb2.Document:
    """A Document as given; a text becomes Document(id=str(index), text=text)."""
    if isinstance(item, common_pb2.Document):
        return item
    if isinstance(item, str):
        return common_pb2.Document(id=str(index), text=item)
    raise TypeError(f"expected a str or a fenlei.v1.Document, not {type(item).__name__}")


def _documents(items: Iterable[Text]) -> list[common_pb2.Document]:
    if isinstance(items, (str, bytes, common_pb2.Document)):
        raise TypeError("expected a list of texts or Documents, not a single one (use classify for one text)")
    return [_document(item, index) for index, item in enumerate(items)]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")


def _stream_requests(items: Iterable[Text], batch_size: int, options: Mapping[str, Any]) -> Iterator[pipeline_pb2.ClassifyStreamRequest]:
    batch: list[common_pb2.Document] = []
    for index, item in enumerate(items):
        batch.append(_document(item, index))
        if len(batch) == batch_size:
            yield pipeline_pb2.ClassifyStreamRequest(documents=batch, **options)
            batch = []
    if batch:
        yield pipeline_pb2.ClassifyStreamRequest(documents=batch, **options)


async def _async_stream_requests(
    items: Iterable[Text] | AsyncIterable[Text], batch_size: int, options: Mapping[str, Any]
) -> AsyncIterator[pipeline_pb2.ClassifyStreamRequest]:
    if not hasattr(items, "__aiter__"):
        for request in _stream_requests(items, batch_size, options):
            yield request
        return
    batch: list[common_pb2.Document] = []
    index = 0
    async for item in items:
        batch.append(_document(item, index))
        index += 1
        if len(batch) == batch_size:
            yield pipeline_pb2.ClassifyStreamRequest(documents=batch, **options)
            batch = []
    if batch:
        yield pipeline_pb2.ClassifyStreamRequest(documents=batch, **options)


def _check_stream_items(items: Any) -> None:
    if isinstance(items, (str, bytes, common_pb2.Document)):
        raise TypeError("expected an iterable of texts or Documents, not a single one (use classify for one text)")


# ---------------------------------------------------------------- the clients


class _Base:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: Token = None,
        timeout: float = 10.0,
        retries: int = 3,
        tls: Tls = None,
        metadata: Metadata = (),
        options: Sequence[tuple[str, Any]] = (),
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        backoff_multiplier: float = 2.0,
        retry_max_tokens: int = 10,
        retry_token_ratio: float = 0.1,
    ) -> None:
        self.target = target
        self.retries = retries
        self._defaults = _Defaults(timeout, token, metadata)
        # gRPC takes the first value of a repeated key: the caller's options go first to win.
        self._options = list(options) + channel_options(
            retries,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            backoff_multiplier=backoff_multiplier,
            retry_max_tokens=retry_max_tokens,
            retry_token_ratio=retry_token_ratio,
        )
        if tls is None or tls is False:
            self._credentials: grpc.ChannelCredentials | None = None
        elif tls is True:
            self._credentials = grpc.ssl_channel_credentials()
        elif isinstance(tls, grpc.ChannelCredentials):
            self._credentials = tls
        else:
            raise TypeError(f"tls must be None, a bool or grpc.ChannelCredentials, not {type(tls).__name__}")
        self._stubs: dict[str, Any] = {}
        self._open()

    def _open(self) -> None:  # overridden: make (or prepare) the channel
        raise NotImplementedError

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds."""
        return self._defaults.timeout

    def stub(self, service: str) -> Any:
        """The generated stub of a service ("pipeline", "segmenter", "preprocessor",
        "features", "classifier", "model_registry", "experiments", "datasets", "jobs", "live_config", "telemetry"), on this client's channel: its calls get the client's
        token, deadline (when the call passes no ``timeout=``), retries and limits."""
        if service not in SERVICES:
            raise KeyError(f"no service {service!r}; the services are {', '.join(SERVICES)}")
        channel = self.channel  # the asyncio client's raises once closed
        if service not in self._stubs:
            self._stubs[service] = SERVICES[service][1](channel)
        return self._stubs[service]

    @property
    def channel(self) -> Any:  # overridden
        raise NotImplementedError

    @property
    def pipeline(self) -> pipeline_pb2_grpc.PipelineStub:
        return self.stub("pipeline")

    @property
    def segmenter(self) -> segmenter_pb2_grpc.SegmenterStub:
        return self.stub("segmenter")

    @property
    def preprocessor(self) -> preprocessor_pb2_grpc.PreprocessorStub:
        return self.stub("preprocessor")

    @property
    def features(self) -> features_pb2_grpc.FeaturesStub:
        return self.stub("features")

    @property
    def classifier(self) -> classifier_pb2_grpc.ClassifierStub:
        return self.stub("classifier")

    @property
    def model_registry(self) -> registry_pb2_grpc.ModelRegistryStub:
        return self.stub("model_registry")

    @property
    def experiments(self) -> registry_pb2_grpc.ExperimentsStub:
        return self.stub("experiments")

    @property
    def datasets(self) -> datasets_pb2_grpc.DatasetsStub:
        return self.stub("datasets")

    @property
    def jobs(self) -> jobs_pb2_grpc.JobsStub:
        return self.stub("jobs")

    @property
    def live_config(self) -> config_pb2_grpc.LiveConfigStub:
        return self.stub("live_config")

    @property
    def telemetry(self) -> telemetry_pb2_grpc.TelemetryStub:
        return self.stub("telemetry")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, timeout={self.timeout}, retries={self.retries})"


class Client(_Base):
    """A blocking client. One channel; thread-safe; close it (or use ``with``).

    Args:
        target: host:port of the gateway (default) or of a service.
        token: the JWT sent as ``authorization: Bearer <token>``, or a callable returning
            it (called at every call); None sends no authorization.
        timeout: the default deadline of every call, seconds (a call's ``timeout=``
            overrides it). For streams it bounds the whole stream.
        retries: how many times gRPC retries a call that failed with UNAVAILABLE (0-4).
            Streams are retried only before any response arrived (see the module doc).
        tls: None/False for plaintext, True for TLS with the system roots, or
            ``grpc.ChannelCredentials`` (e.g. ``grpc.ssl_channel_credentials(ca)``).
        metadata: extra (key, value) pairs sent with every call.
        options: extra gRPC channel options; they override the client's own.
        initial_backoff, max_backoff, backoff_multiplier: the retry backoff (seconds).
        retry_max_tokens, retry_token_ratio: the retry throttling: no retries while half
            of retry_max_tokens or less are left; a failed attempt takes a token, a
            successful call gives back retry_token_ratio (see the module doc).

    Failed calls raise ``grpc.RpcError`` unchanged.
    """

    def _open(self) -> None:
        if self._credentials is None:
            self._raw_channel = grpc.insecure_channel(self.target, options=self._options)
        else:
            self._raw_channel = grpc.secure_channel(self.target, self._credentials, options=self._options)
        self._channel = grpc.intercept_channel(self._raw_channel, _SyncInterceptor(self._defaults))

    @property
    def channel(self) -> grpc.Channel:
        """The channel (with the token/deadline interceptor), for stubs of your own."""
        return self._channel

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def classify(
        self,
        text: str,
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> pipeline_pb2.ClassifyResponse:
        """Classifies one text: Pipeline.Classify. Labels best first.

        model "" is the pipeline's default model; version "" its "production" alias, else its
        newest version, unless an experiment routes the model's traffic (a version may
        also be an alias); top_k 0 returns every label; explain N returns the N features
        that contributed most; labels restricts the answer to those labels; routing_key
        keeps a caller (a user id, a session) on one arm of an experiment. The answer says
        which version (and arm) answered, and carries the request id feedback takes.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        _check_timeout(timeout)
        request = pipeline_pb2.ClassifyRequest(text=text, **_options(model, top_k, version, explain, labels, routing_key))
        return self.pipeline.Classify(request, timeout=timeout, metadata=metadata)

    def classify_batch(
        self,
        texts: Iterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> pipeline_pb2.ClassifyBatchResponse:
        """Classifies texts in one call: Pipeline.ClassifyBatch. ``predictions`` are in
        input order; a plain text gets the id of its position ("0", "1", ...), a
        ``Document`` keeps its own. The whole batch must fit one message (16 MiB) and the
        service's max_batch_documents; use classify_stream for more."""
        _check_timeout(timeout)
        request = pipeline_pb2.ClassifyBatchRequest(
            documents=_documents(texts), **_options(model, top_k, version, explain, labels, routing_key)
        )
        return self.pipeline.ClassifyBatch(request, timeout=timeout, metadata=metadata)

    def classify_stream(
        self,
        texts: Iterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Iterator[common_pb2.Prediction]:
        """Classifies any number of texts over one Pipeline.ClassifyStream call, yielding
        one Prediction per text, in input order.

        ``texts`` is read lazily (a file or a generator is fine), ``batch_size`` documents
        per request message. A plain text gets the id of its position ("0", "1", ...), a
        ``Document`` keeps its own. The call starts at the first ``next()``; closing the
        iterator early (``break``) cancels it.

        The deadline (``timeout=``, else the client's) bounds the whole stream: give a
        long stream a long one. gRPC retries the stream on UNAVAILABLE only before any
        response has been received; an UNAVAILABLE after that raises ``grpc.RpcError``,
        and the predictions yielded so far tell where to resume.
        """
        _check_stream_items(texts)
        _check_batch_size(batch_size)
        _check_timeout(timeout)
        options = _options(model, top_k, version, explain, labels, routing_key)
        return self._predictions(self._responses(_stream_requests(texts, batch_size, options), timeout, metadata))

    def classify_stream_responses(
        self,
        texts: Iterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> Iterator[pipeline_pb2.ClassifyStreamResponse]:
        """As ``classify_stream``, yielding the answers themselves: each holds the
        predictions of one request message, in order, with the version (and experiment
        arm) that answered and its request id (what feedback on a prediction names)."""
        _check_stream_items(texts)
        _check_batch_size(batch_size)
        _check_timeout(timeout)
        options = _options(model, top_k, version, explain, labels, routing_key)
        return self._responses(_stream_requests(texts, batch_size, options), timeout, metadata)

    def upload_dataset(
        self, path: str | os.PathLike[str], *, timeout: float | None = None, metadata: Metadata | None = None, **fields: Any
    ) -> datasets_pb2.UploadDatasetResponse:
        """Uploads a corpus file over one Datasets.UploadDataset call, in chunks of
        UPLOAD_CHUNK_BYTES. ``fields`` are the first message's (``name``, default the
        file's name; ``format``, ``text_column``, ``label_column``, ``label_names``,
        ``file_name``). Nothing is stored unless all of the file is valid; the answer says
        whether the same content was stored already."""
        _check_timeout(timeout)
        fields.setdefault("name", os.path.basename(path))

        def requests() -> Iterator[datasets_pb2.UploadDatasetRequest]:
            with open(path, "rb") as handle:
                yield datasets_pb2.UploadDatasetRequest(chunk=handle.read(UPLOAD_CHUNK_BYTES), **fields)
                while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                    yield datasets_pb2.UploadDatasetRequest(chunk=chunk)

        return self.datasets.UploadDataset(requests(), timeout=timeout, metadata=metadata)

    @staticmethod
    def _predictions(responses: Iterator[pipeline_pb2.ClassifyStreamResponse]) -> Iterator[common_pb2.Prediction]:
        for response in responses:
            yield from response.predictions

    def _responses(
        self, requests: Iterator[Any], timeout: float | None, metadata: Metadata | None
    ) -> Iterator[pipeline_pb2.ClassifyStreamResponse]:
        call = self.pipeline.ClassifyStream(requests, timeout=timeout, metadata=metadata)
        try:
            yield from call
        finally:
            call.cancel()  # no-op once the call has finished


class AsyncClient(_Base):
    """The asyncio client: the same surface as ``Client`` with coroutines, and
    ``classify_stream`` an async iterator. Its channel is made at first use and belongs to
    that event loop: use a client in one loop only. Close it with ``await client.close()``
    or ``async with``. Failed calls raise
    ``grpc.aio.AioRpcError`` (a ``grpc.RpcError``) unchanged.

    The generated stubs (``client.pipeline``, ``client.stub(name)``, ...) are asyncio
    stubs: ``await client.segmenter.Segment(request)``.
    """

    def _open(self) -> None:
        self._channel: grpc.aio.Channel | None = None  # made at first use, in the caller's loop
        self._closed = False

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel (with the token/deadline interceptors), for stubs of your own.

        Made at first use: an asyncio channel belongs to the event loop it was made in,
        so the client may be constructed anywhere but must be used in one loop."""
        if self._closed:
            raise ValueError("the client is closed")
        if self._channel is None:
            interceptors = [
                _AioUnaryUnary(self._defaults),
                _AioUnaryStream(self._defaults),
                _AioStreamUnary(self._defaults),
                _AioStreamStream(self._defaults),
            ]
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._options, interceptors=interceptors)
            else:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=self._options, interceptors=interceptors)
        return self._channel

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel; calls still in flight after ``grace`` seconds are cancelled."""
        self._closed = True
        if self._channel is not None:
            await self._channel.close(grace)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def classify(
        self,
        text: str,
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> pipeline_pb2.ClassifyResponse:
        """Classifies one text: Pipeline.Classify (see ``Client.classify``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        _check_timeout(timeout)
        request = pipeline_pb2.ClassifyRequest(text=text, **_options(model, top_k, version, explain, labels, routing_key))
        return await self.pipeline.Classify(request, timeout=timeout, metadata=metadata)

    async def classify_batch(
        self,
        texts: Iterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> pipeline_pb2.ClassifyBatchResponse:
        """Classifies texts in one call: Pipeline.ClassifyBatch (see ``Client.classify_batch``)."""
        _check_timeout(timeout)
        request = pipeline_pb2.ClassifyBatchRequest(
            documents=_documents(texts), **_options(model, top_k, version, explain, labels, routing_key)
        )
        return await self.pipeline.ClassifyBatch(request, timeout=timeout, metadata=metadata)

    def classify_stream(
        self,
        texts: Iterable[Text] | AsyncIterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[common_pb2.Prediction]:
        """Classifies texts over one Pipeline.ClassifyStream call: ``async for prediction
        in client.classify_stream(texts)``, one Prediction per text, in input order.

        ``texts`` may be an iterable or an async iterable (use an async one for a slow
        source: a plain iterable is read on the event loop). Otherwise as
        ``Client.classify_stream``: the deadline bounds the whole stream, and gRPC
        retries the stream on UNAVAILABLE only before any response was received.
        """
        _check_stream_items(texts)
        _check_batch_size(batch_size)
        _check_timeout(timeout)
        options = _options(model, top_k, version, explain, labels, routing_key)
        return self._predictions(self._responses(_async_stream_requests(texts, batch_size, options), timeout, metadata))

    def classify_stream_responses(
        self,
        texts: Iterable[Text] | AsyncIterable[Text],
        *,
        model: str = "",
        top_k: int = 0,
        version: str = "",
        explain: int = 0,
        labels: Iterable[str] = (),
        routing_key: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> AsyncIterator[pipeline_pb2.ClassifyStreamResponse]:
        """As ``classify_stream``, yielding the answers themselves (see
        ``Client.classify_stream_responses``)."""
        _check_stream_items(texts)
        _check_batch_size(batch_size)
        _check_timeout(timeout)
        options = _options(model, top_k, version, explain, labels, routing_key)
        return self._responses(_async_stream_requests(texts, batch_size, options), timeout, metadata)

    @staticmethod
    async def _predictions(responses: AsyncIterator[pipeline_pb2.ClassifyStreamResponse]) -> AsyncIterator[common_pb2.Prediction]:
        async for response in responses:
            for prediction in response.predictions:
                yield prediction

    async def _responses(
        self, requests: AsyncIterator[Any], timeout: float | None, metadata: Metadata | None
    ) -> AsyncIterator[pipeline_pb2.ClassifyStreamResponse]:
        call = self.pipeline.ClassifyStream(requests, timeout=timeout, metadata=metadata)
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()
