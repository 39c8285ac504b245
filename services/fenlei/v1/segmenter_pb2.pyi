from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_MODE_UNSPECIFIED: _ClassVar[SegmentMode]
    SEGMENT_MODE_ACCURATE: _ClassVar[SegmentMode]
    SEGMENT_MODE_FULL: _ClassVar[SegmentMode]
    SEGMENT_MODE_SEARCH: _ClassVar[SegmentMode]
SEGMENT_MODE_UNSPECIFIED: SegmentMode
SEGMENT_MODE_ACCURATE: SegmentMode
SEGMENT_MODE_FULL: SegmentMode
SEGMENT_MODE_SEARCH: SegmentMode

class SegmentOptions(_message.Message):
    __slots__ = ("mode", "hmm", "pos_tags", "user_words", "feature_tags")
    MODE_FIELD_NUMBER: _ClassVar[int]
    HMM_FIELD_NUMBER: _ClassVar[int]
    POS_TAGS_FIELD_NUMBER: _ClassVar[int]
    USER_WORDS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TAGS_FIELD_NUMBER: _ClassVar[int]
    mode: SegmentMode
    hmm: bool
    pos_tags: bool
    user_words: _containers.RepeatedScalarFieldContainer[str]
    feature_tags: bool
    def __init__(self, mode: _Optional[_Union[SegmentMode, str]] = ..., hmm: _Optional[bool] = ..., pos_tags: _Optional[bool] = ..., user_words: _Optional[_Iterable[str]] = ..., feature_tags: _Optional[bool] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("documents", "model", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    model: _common_pb2.ModelRef
    options: SegmentOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[SegmentOptions, _Mapping]] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ...) -> None: ...

class SegmentStreamRequest(_message.Message):
    __slots__ = ("documents", "trace", "model", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    trace: _common_pb2.TraceContext
    model: _common_pb2.ModelRef
    options: SegmentOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[SegmentOptions, _Mapping]] = ...) -> None: ...

class SegmentStreamResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ...) -> None: ...
