from fenlei.v1 import classifier_pb2 as _classifier_pb2
from fenlei.v1 import features_pb2 as _features_pb2
from fenlei.v1 import preprocessor_pb2 as _preprocessor_pb2
from fenlei.v1 import segmenter_pb2 as _segmenter_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipelineConfig(_message.Message):
    __slots__ = ("segmenter", "preprocessor", "features", "classifier")
    SEGMENTER_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSOR_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    segmenter: _segmenter_pb2.SegmentOptions
    preprocessor: _preprocessor_pb2.PreprocessOptions
    features: _features_pb2.FeatureOptions
    classifier: _classifier_pb2.ClassifierOptions
    def __init__(self, segmenter: _Optional[_Union[_segmenter_pb2.SegmentOptions, _Mapping]] = ..., preprocessor: _Optional[_Union[_preprocessor_pb2.PreprocessOptions, _Mapping]] = ..., features: _Optional[_Union[_features_pb2.FeatureOptions, _Mapping]] = ..., classifier: _Optional[_Union[_classifier_pb2.ClassifierOptions, _Mapping]] = ...) -> None: ...

class ClassReport(_message.Message):
    __slots__ = ("label", "precision", "recall", "f1", "support")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    label: str
    precision: float
    recall: float
    f1: float
    support: int
    def __init__(self, label: _Optional[str] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., support: _Optional[int] = ...) -> None: ...

class ConfusionRow(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, counts: _Optional[_Iterable[int]] = ...) -> None: ...

class FeatureWeight(_message.Message):
    __slots__ = ("feature", "weight")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    feature: str
    weight: float
    def __init__(self, feature: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class InformativeFeatures(_message.Message):
    __slots__ = ("label", "features")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    label: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureWeight]
    def __init__(self, label: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureWeight, _Mapping]]] = ...) -> None: ...

class Misclassified(_message.Message):
    __slots__ = ("text", "label", "predicted", "score")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    label: str
    predicted: str
    score: float
    def __init__(self, text: _Optional[str] = ..., label: _Optional[str] = ..., predicted: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class DatasetStatistics(_message.Message):
    __slots__ = ("documents", "characters", "tokens", "vocabulary", "train_documents", "test_documents", "test_oov_share")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TEST_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TEST_OOV_SHARE_FIELD_NUMBER: _ClassVar[int]
    documents: int
    characters: int
    tokens: int
    vocabulary: int
    train_documents: int
    test_documents: int
    test_oov_share: float
    def __init__(self, documents: _Optional[int] = ..., characters: _Optional[int] = ..., tokens: _Optional[int] = ..., vocabulary: _Optional[int] = ..., train_documents: _Optional[int] = ..., test_documents: _Optional[int] = ..., test_oov_share: _Optional[float] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("number", "changes", "score", "score_std", "seconds", "best")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_STD_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    number: int
    changes: _struct_pb2.Struct
    score: float
    score_std: float
    seconds: float
    best: bool
    def __init__(self, number: _Optional[int] = ..., changes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., score: _Optional[float] = ..., score_std: _Optional[float] = ..., seconds: _Optional[float] = ..., best: _Optional[bool] = ...) -> None: ...

class TrainingReport(_message.Message):
    __slots__ = ("accuracy", "macro_f1", "weighted_f1", "classes", "labels", "confusion", "informative_features", "misclassified", "phase_seconds", "statistics", "config", "evaluation", "trials")
    class PhaseSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_F1_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    INFORMATIVE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MISCLASSIFIED_FIELD_NUMBER: _ClassVar[int]
    PHASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    macro_f1: float
    weighted_f1: float
    classes: _containers.RepeatedCompositeFieldContainer[ClassReport]
    labels: _containers.RepeatedScalarFieldContainer[str]
    confusion: _containers.RepeatedCompositeFieldContainer[ConfusionRow]
    informative_features: _containers.RepeatedCompositeFieldContainer[InformativeFeatures]
    misclassified: _containers.RepeatedCompositeFieldContainer[Misclassified]
    phase_seconds: _containers.ScalarMap[str, float]
    statistics: DatasetStatistics
    config: PipelineConfig
    evaluation: str
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, accuracy: _Optional[float] = ..., macro_f1: _Optional[float] = ..., weighted_f1: _Optional[float] = ..., classes: _Optional[_Iterable[_Union[ClassReport, _Mapping]]] = ..., labels: _Optional[_Iterable[str]] = ..., confusion: _Optional[_Iterable[_Union[ConfusionRow, _Mapping]]] = ..., informative_features: _Optional[_Iterable[_Union[InformativeFeatures, _Mapping]]] = ..., misclassified: _Optional[_Iterable[_Union[Misclassified, _Mapping]]] = ..., phase_seconds: _Optional[_Mapping[str, float]] = ..., statistics: _Optional[_Union[DatasetStatistics, _Mapping]] = ..., config: _Optional[_Union[PipelineConfig, _Mapping]] = ..., evaluation: _Optional[str] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...
