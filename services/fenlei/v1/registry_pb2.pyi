import datetime

from fenlei.v1 import common_pb2 as _common_pb2
from fenlei.v1 import training_pb2 as _training_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Allocation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALLOCATION_UNSPECIFIED: _ClassVar[Allocation]
    ALLOCATION_FIXED: _ClassVar[Allocation]
    ALLOCATION_THOMPSON: _ClassVar[Allocation]
ALLOCATION_UNSPECIFIED: Allocation
ALLOCATION_FIXED: Allocation
ALLOCATION_THOMPSON: Allocation

class Lineage(_message.Message):
    __slots__ = ("dataset_sha256", "dataset_documents", "dataset_source", "test_dataset_sha256", "config", "dictionary_sha256", "stopwords_sha256", "code_version", "job")
    DATASET_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DATASET_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEST_DATASET_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DICTIONARY_SHA256_FIELD_NUMBER: _ClassVar[int]
    STOPWORDS_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    dataset_sha256: str
    dataset_documents: int
    dataset_source: str
    test_dataset_sha256: str
    config: _struct_pb2.Struct
    dictionary_sha256: str
    stopwords_sha256: str
    code_version: str
    job: str
    def __init__(self, dataset_sha256: _Optional[str] = ..., dataset_documents: _Optional[int] = ..., dataset_source: _Optional[str] = ..., test_dataset_sha256: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dictionary_sha256: _Optional[str] = ..., stopwords_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., job: _Optional[str] = ...) -> None: ...

class ClassMetrics(_message.Message):
    __slots__ = ("precision", "recall", "f1", "support")
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    precision: float
    recall: float
    f1: float
    support: int
    def __init__(self, precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., support: _Optional[int] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("accuracy", "macro_f1", "per_class", "train_documents", "test_documents", "dimension", "train_seconds")
    class PerClassEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ClassMetrics
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ClassMetrics, _Mapping]] = ...) -> None: ...
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TEST_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    macro_f1: float
    per_class: _containers.MessageMap[str, ClassMetrics]
    train_documents: int
    test_documents: int
    dimension: int
    train_seconds: float
    def __init__(self, accuracy: _Optional[float] = ..., macro_f1: _Optional[float] = ..., per_class: _Optional[_Mapping[str, ClassMetrics]] = ..., train_documents: _Optional[int] = ..., test_documents: _Optional[int] = ..., dimension: _Optional[int] = ..., train_seconds: _Optional[float] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "created", "created_by", "lineage", "metrics", "tags", "aliases", "labels", "digest", "size_bytes", "report")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    created: _timestamp_pb2.Timestamp
    created_by: str
    lineage: Lineage
    metrics: Metrics
    tags: _containers.ScalarMap[str, str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    digest: str
    size_bytes: int
    report: _training_pb2.TrainingReport
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., aliases: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., digest: _Optional[str] = ..., size_bytes: _Optional[int] = ..., report: _Optional[_Union[_training_pb2.TrainingReport, _Mapping]] = ...) -> None: ...

class RegisterVersionRequest(_message.Message):
    __slots__ = ("name", "draft", "lineage", "metrics", "tags", "labels", "report")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    draft: str
    lineage: Lineage
    metrics: Metrics
    tags: _containers.ScalarMap[str, str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    report: _training_pb2.TrainingReport
    def __init__(self, name: _Optional[str] = ..., draft: _Optional[str] = ..., lineage: _Optional[_Union[Lineage, _Mapping]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Iterable[str]] = ..., report: _Optional[_Union[_training_pb2.TrainingReport, _Mapping]] = ...) -> None: ...

class RegisterVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "versions", "newest_version", "aliases", "experiment")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: int
    newest_version: str
    aliases: _containers.ScalarMap[str, str]
    experiment: str
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[int] = ..., newest_version: _Optional[str] = ..., aliases: _Optional[_Mapping[str, str]] = ..., experiment: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...

class SearchVersionsRequest(_message.Message):
    __slots__ = ("name", "tags", "metric", "min_value", "order_by_metric", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    metric: str
    min_value: float
    order_by_metric: bool
    limit: int
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., metric: _Optional[str] = ..., min_value: _Optional[float] = ..., order_by_metric: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class SearchVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class TagVersionRequest(_message.Message):
    __slots__ = ("name", "version", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class TagVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: ModelVersion
    def __init__(self, version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class DeleteVersionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteVersionResponse(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class AliasMove(_message.Message):
    __slots__ = ("name", "alias", "from_version", "to_version", "moved_by", "moved", "reason", "sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    MOVED_BY_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    from_version: str
    to_version: str
    moved_by: str
    moved: _timestamp_pb2.Timestamp
    reason: str
    sequence: int
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., from_version: _Optional[str] = ..., to_version: _Optional[str] = ..., moved_by: _Optional[str] = ..., moved: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class SetAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "version", "reason", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    version: str
    reason: str
    expected_version: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ..., expected_version: _Optional[str] = ...) -> None: ...

class SetAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class RollbackAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("name", "alias", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ("move",)
    MOVE_FIELD_NUMBER: _ClassVar[int]
    move: AliasMove
    def __init__(self, move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("name", "alias")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("moves",)
    MOVES_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[AliasMove]
    def __init__(self, moves: _Optional[_Iterable[_Union[AliasMove, _Mapping]]] = ...) -> None: ...

class ExportRegistryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportRegistryResponse(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class ImportRegistryRequest(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class ImportRegistryResponse(_message.Message):
    __slots__ = ("added", "unchanged", "aliases", "experiments")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    added: _containers.RepeatedScalarFieldContainer[str]
    unchanged: _containers.RepeatedScalarFieldContainer[str]
    aliases: int
    experiments: int
    def __init__(self, added: _Optional[_Iterable[str]] = ..., unchanged: _Optional[_Iterable[str]] = ..., aliases: _Optional[int] = ..., experiments: _Optional[int] = ...) -> None: ...

class Arm(_message.Message):
    __slots__ = ("name", "target", "weight", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    weight: float
    version: str
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ..., weight: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...

class ArmScore(_message.Message):
    __slots__ = ("arm", "predictions", "feedback", "correct", "accuracy", "confusion")
    class ConfusionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: LabelCounts
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[LabelCounts, _Mapping]] = ...) -> None: ...
    ARM_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    arm: str
    predictions: int
    feedback: int
    correct: int
    accuracy: float
    confusion: _containers.MessageMap[str, LabelCounts]
    def __init__(self, arm: _Optional[str] = ..., predictions: _Optional[int] = ..., feedback: _Optional[int] = ..., correct: _Optional[int] = ..., accuracy: _Optional[float] = ..., confusion: _Optional[_Mapping[str, LabelCounts]] = ...) -> None: ...

class LabelCounts(_message.Message):
    __slots__ = ("counts",)
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.ScalarMap[str, int]
    def __init__(self, counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("name", "model", "arms", "allocation", "running", "created", "created_by", "ended", "leader", "scores", "description", "events")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    allocation: Allocation
    running: bool
    created: _timestamp_pb2.Timestamp
    created_by: str
    ended: _timestamp_pb2.Timestamp
    leader: str
    scores: _containers.RepeatedCompositeFieldContainer[ArmScore]
    description: str
    events: _containers.RepeatedCompositeFieldContainer[ExperimentEvent]
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ..., allocation: _Optional[_Union[Allocation, str]] = ..., running: _Optional[bool] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., ended: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leader: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[ArmScore, _Mapping]]] = ..., description: _Optional[str] = ..., events: _Optional[_Iterable[_Union[ExperimentEvent, _Mapping]]] = ...) -> None: ...

class ExperimentEvent(_message.Message):
    __slots__ = ("sequence", "at", "by", "kind", "detail")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    at: _timestamp_pb2.Timestamp
    by: str
    kind: str
    detail: _struct_pb2.Struct
    def __init__(self, sequence: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., by: _Optional[str] = ..., kind: _Optional[str] = ..., detail: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("name", "model", "arms", "allocation", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    allocation: Allocation
    description: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ..., allocation: _Optional[_Union[Allocation, str]] = ..., description: _Optional[str] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ...) -> None: ...

class SetWeightsRequest(_message.Message):
    __slots__ = ("name", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    weights: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SetWeightsResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class EndExperimentRequest(_message.Message):
    __slots__ = ("name", "promote_alias", "winner", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_ALIAS_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    promote_alias: str
    winner: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., promote_alias: _Optional[str] = ..., winner: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EndExperimentResponse(_message.Message):
    __slots__ = ("experiment", "move")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    move: AliasMove
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., move: _Optional[_Union[AliasMove, _Mapping]] = ...) -> None: ...

class SendFeedbackRequest(_message.Message):
    __slots__ = ("request_id", "document_id", "label")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    document_id: str
    label: str
    def __init__(self, request_id: _Optional[str] = ..., document_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class SendFeedbackResponse(_message.Message):
    __slots__ = ("experiment", "arm", "correct")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: str
    correct: bool
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[str] = ..., correct: _Optional[bool] = ...) -> None: ...

class AssignArmRequest(_message.Message):
    __slots__ = ("experiment", "key")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    key: str
    def __init__(self, experiment: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class AssignArmResponse(_message.Message):
    __slots__ = ("arm", "revision")
    ARM_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    arm: str
    revision: int
    def __init__(self, arm: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ServedPrediction(_message.Message):
    __slots__ = ("request_id", "document_id", "experiment", "arm", "version", "label")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    document_id: str
    experiment: str
    arm: str
    version: str
    label: str
    def __init__(self, request_id: _Optional[str] = ..., document_id: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., version: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class RecordPredictionsRequest(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[ServedPrediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[ServedPrediction, _Mapping]]] = ...) -> None: ...

class RecordPredictionsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...
