from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_SELECTION_UNSPECIFIED: _ClassVar[FeatureSelection]
    FEATURE_SELECTION_NONE: _ClassVar[FeatureSelection]
    FEATURE_SELECTION_CHI2: _ClassVar[FeatureSelection]
    FEATURE_SELECTION_MUTUAL_INFO: _ClassVar[FeatureSelection]
    FEATURE_SELECTION_ANOVA_F: _ClassVar[FeatureSelection]
FEATURE_SELECTION_UNSPECIFIED: FeatureSelection
FEATURE_SELECTION_NONE: FeatureSelection
FEATURE_SELECTION_CHI2: FeatureSelection
FEATURE_SELECTION_MUTUAL_INFO: FeatureSelection
FEATURE_SELECTION_ANOVA_F: FeatureSelection

class FeatureOptions(_message.Message):
    __slots__ = ("sublinear_tf", "min_df", "selection", "top_k")
    SUBLINEAR_TF_FIELD_NUMBER: _ClassVar[int]
    MIN_DF_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    sublinear_tf: bool
    min_df: int
    selection: FeatureSelection
    top_k: int
    def __init__(self, sublinear_tf: _Optional[bool] = ..., min_df: _Optional[int] = ..., selection: _Optional[_Union[FeatureSelection, str]] = ..., top_k: _Optional[int] = ...) -> None: ...

class FitRequest(_message.Message):
    __slots__ = ("documents", "model", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelledDocument]
    model: _common_pb2.ModelRef
    options: FeatureOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.LabelledDocument, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[FeatureOptions, _Mapping]] = ...) -> None: ...

class FitResponse(_message.Message):
    __slots__ = ("model", "documents", "vocabulary_size", "dimension")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    documents: int
    vocabulary_size: int
    dimension: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., documents: _Optional[int] = ..., vocabulary_size: _Optional[int] = ..., dimension: _Optional[int] = ...) -> None: ...

class TransformRequest(_message.Message):
    __slots__ = ("documents", "model")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    model: _common_pb2.ModelRef
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class TransformResponse(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureVector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.FeatureVector, _Mapping]]] = ...) -> None: ...

class TransformStreamRequest(_message.Message):
    __slots__ = ("documents", "trace", "model")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    trace: _common_pb2.TraceContext
    model: _common_pb2.ModelRef
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class TransformStreamResponse(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureVector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.FeatureVector, _Mapping]]] = ...) -> None: ...

class DescribeFeaturesRequest(_message.Message):
    __slots__ = ("indices", "model")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    model: _common_pb2.ModelRef
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class DescribeFeaturesResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...
