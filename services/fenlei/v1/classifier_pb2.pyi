from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGORITHM_UNSPECIFIED: _ClassVar[Algorithm]
    ALGORITHM_COMPLEMENT_NB: _ClassVar[Algorithm]
    ALGORITHM_MULTINOMIAL_NB: _ClassVar[Algorithm]
    ALGORITHM_LOGISTIC_REGRESSION: _ClassVar[Algorithm]
    ALGORITHM_LINEAR_SVM: _ClassVar[Algorithm]
    ALGORITHM_SGD: _ClassVar[Algorithm]
    ALGORITHM_ENSEMBLE: _ClassVar[Algorithm]
ALGORITHM_UNSPECIFIED: Algorithm
ALGORITHM_COMPLEMENT_NB: Algorithm
ALGORITHM_MULTINOMIAL_NB: Algorithm
ALGORITHM_LOGISTIC_REGRESSION: Algorithm
ALGORITHM_LINEAR_SVM: Algorithm
ALGORITHM_SGD: Algorithm
ALGORITHM_ENSEMBLE: Algorithm

class ClassifierOptions(_message.Message):
    __slots__ = ("algorithm", "regularization", "epochs", "seed")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    algorithm: Algorithm
    regularization: float
    epochs: int
    seed: int
    def __init__(self, algorithm: _Optional[_Union[Algorithm, str]] = ..., regularization: _Optional[float] = ..., epochs: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ClassifierFitRequest(_message.Message):
    __slots__ = ("examples", "labels", "dimension", "model", "options")
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    examples: _containers.RepeatedCompositeFieldContainer[_common_pb2.LabelledVector]
    labels: _containers.RepeatedScalarFieldContainer[str]
    dimension: int
    model: _common_pb2.ModelRef
    options: ClassifierOptions
    def __init__(self, examples: _Optional[_Iterable[_Union[_common_pb2.LabelledVector, _Mapping]]] = ..., labels: _Optional[_Iterable[str]] = ..., dimension: _Optional[int] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[ClassifierOptions, _Mapping]] = ...) -> None: ...

class ClassifierFitResponse(_message.Message):
    __slots__ = ("model", "examples", "labels")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    examples: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., examples: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictOptions(_message.Message):
    __slots__ = ("top_k", "explain", "labels")
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    top_k: int
    explain: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, top_k: _Optional[int] = ..., explain: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("vectors", "model", "options")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureVector]
    model: _common_pb2.ModelRef
    options: PredictOptions
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.FeatureVector, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[PredictOptions, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ...) -> None: ...

class PredictStreamRequest(_message.Message):
    __slots__ = ("vectors", "trace", "model", "options")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureVector]
    trace: _common_pb2.TraceContext
    model: _common_pb2.ModelRef
    options: PredictOptions
    def __init__(self, vectors: _Optional[_Iterable[_Union[_common_pb2.FeatureVector, _Mapping]]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[PredictOptions, _Mapping]] = ...) -> None: ...

class PredictStreamResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ...) -> None: ...
