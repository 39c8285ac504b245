import datetime

from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessStatus(_message.Message):
    __slots__ = ("name", "service", "kind", "address", "state", "restarts", "last_exit", "metrics_up")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    METRICS_UP_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    kind: str
    address: str
    state: str
    restarts: int
    last_exit: str
    metrics_up: bool
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., kind: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., restarts: _Optional[int] = ..., last_exit: _Optional[str] = ..., metrics_up: _Optional[bool] = ...) -> None: ...

class ServiceLoad(_message.Message):
    __slots__ = ("service", "instances", "requests_per_second", "errors_per_second", "p50_ms", "p99_ms", "cpu_percent", "resident_bytes")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ERRORS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    service: str
    instances: int
    requests_per_second: float
    errors_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_percent: float
    resident_bytes: int
    def __init__(self, service: _Optional[str] = ..., instances: _Optional[int] = ..., requests_per_second: _Optional[float] = ..., errors_per_second: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., cpu_percent: _Optional[float] = ..., resident_bytes: _Optional[int] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("caller", "callee")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALLEE_FIELD_NUMBER: _ClassVar[int]
    caller: str
    callee: str
    def __init__(self, caller: _Optional[str] = ..., callee: _Optional[str] = ...) -> None: ...

class GetMeshStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMeshStatusResponse(_message.Message):
    __slots__ = ("processes", "load", "edges", "sidecars", "window_seconds")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    SIDECARS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessStatus]
    load: _containers.RepeatedCompositeFieldContainer[ServiceLoad]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    sidecars: bool
    window_seconds: float
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessStatus, _Mapping]]] = ..., load: _Optional[_Iterable[_Union[ServiceLoad, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., sidecars: _Optional[bool] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class TraceSummary(_message.Message):
    __slots__ = ("trace_id", "duration_ms", "service", "what", "start", "error")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    duration_ms: float
    service: str
    what: str
    start: _timestamp_pb2.Timestamp
    error: bool
    def __init__(self, trace_id: _Optional[str] = ..., duration_ms: _Optional[float] = ..., service: _Optional[str] = ..., what: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[bool] = ...) -> None: ...

class ListSlowTracesRequest(_message.Message):
    __slots__ = ("count", "streams")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    count: int
    streams: bool
    def __init__(self, count: _Optional[int] = ..., streams: _Optional[bool] = ...) -> None: ...

class ListSlowTracesResponse(_message.Message):
    __slots__ = ("traces",)
    TRACES_FIELD_NUMBER: _ClassVar[int]
    traces: _containers.RepeatedCompositeFieldContainer[TraceSummary]
    def __init__(self, traces: _Optional[_Iterable[_Union[TraceSummary, _Mapping]]] = ...) -> None: ...

class SpanRecord(_message.Message):
    __slots__ = ("span_id", "parent_span_id", "service", "name", "depth", "offset_ms", "duration_ms", "error", "message", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    span_id: str
    parent_span_id: str
    service: str
    name: str
    depth: int
    offset_ms: float
    duration_ms: float
    error: bool
    message: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, span_id: _Optional[str] = ..., parent_span_id: _Optional[str] = ..., service: _Optional[str] = ..., name: _Optional[str] = ..., depth: _Optional[int] = ..., offset_ms: _Optional[float] = ..., duration_ms: _Optional[float] = ..., error: _Optional[bool] = ..., message: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetTraceRequest(_message.Message):
    __slots__ = ("trace_id",)
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    def __init__(self, trace_id: _Optional[str] = ...) -> None: ...

class GetTraceResponse(_message.Message):
    __slots__ = ("trace_id", "duration_ms", "spans")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    duration_ms: float
    spans: _containers.RepeatedCompositeFieldContainer[SpanRecord]
    def __init__(self, trace_id: _Optional[str] = ..., duration_ms: _Optional[float] = ..., spans: _Optional[_Iterable[_Union[SpanRecord, _Mapping]]] = ...) -> None: ...
