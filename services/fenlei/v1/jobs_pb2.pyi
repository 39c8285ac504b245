import datetime

from fenlei.v1 import classifier_pb2 as _classifier_pb2
from fenlei.v1 import common_pb2 as _common_pb2
from fenlei.v1 import features_pb2 as _features_pb2
from fenlei.v1 import preprocessor_pb2 as _preprocessor_pb2
from fenlei.v1 import training_pb2 as _training_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class Evaluation(_message.Message):
    __slots__ = ("test_fraction", "test_dataset", "folds", "seed")
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEST_DATASET_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    test_fraction: float
    test_dataset: str
    folds: int
    seed: int
    def __init__(self, test_fraction: _Optional[float] = ..., test_dataset: _Optional[str] = ..., folds: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class TuningSpace(_message.Message):
    __slots__ = ("selections", "top_k", "word_ngrams", "char_ngrams", "algorithms", "regularization", "folds", "max_trials")
    SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    WORD_NGRAMS_FIELD_NUMBER: _ClassVar[int]
    CHAR_NGRAMS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    selections: _containers.RepeatedScalarFieldContainer[_features_pb2.FeatureSelection]
    top_k: _containers.RepeatedScalarFieldContainer[int]
    word_ngrams: _containers.RepeatedCompositeFieldContainer[_preprocessor_pb2.NgramRange]
    char_ngrams: _containers.RepeatedCompositeFieldContainer[_preprocessor_pb2.NgramRange]
    algorithms: _containers.RepeatedScalarFieldContainer[_classifier_pb2.Algorithm]
    regularization: _containers.RepeatedScalarFieldContainer[float]
    folds: int
    max_trials: int
    def __init__(self, selections: _Optional[_Iterable[_Union[_features_pb2.FeatureSelection, str]]] = ..., top_k: _Optional[_Iterable[int]] = ..., word_ngrams: _Optional[_Iterable[_Union[_preprocessor_pb2.NgramRange, _Mapping]]] = ..., char_ngrams: _Optional[_Iterable[_Union[_preprocessor_pb2.NgramRange, _Mapping]]] = ..., algorithms: _Optional[_Iterable[_Union[_classifier_pb2.Algorithm, str]]] = ..., regularization: _Optional[_Iterable[float]] = ..., folds: _Optional[int] = ..., max_trials: _Optional[int] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("model", "dataset", "config", "evaluation", "tune", "space", "tags", "description")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    TUNE_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    config: _training_pb2.PipelineConfig
    evaluation: Evaluation
    tune: bool
    space: TuningSpace
    tags: _containers.ScalarMap[str, str]
    description: str
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., config: _Optional[_Union[_training_pb2.PipelineConfig, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., tune: _Optional[bool] = ..., space: _Optional[_Union[TuningSpace, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("phase", "documents_done", "documents_total", "elapsed_seconds", "remaining_seconds", "trial", "trials")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_DONE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    documents_done: int
    documents_total: int
    elapsed_seconds: float
    remaining_seconds: float
    trial: int
    trials: int
    def __init__(self, phase: _Optional[str] = ..., documents_done: _Optional[int] = ..., documents_total: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., remaining_seconds: _Optional[float] = ..., trial: _Optional[int] = ..., trials: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "model", "dataset", "state", "reason", "config", "evaluation", "tune", "space", "tags", "description", "created", "started", "finished", "created_by", "progress", "version")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    TUNE_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    dataset: str
    state: JobState
    reason: str
    config: _training_pb2.PipelineConfig
    evaluation: Evaluation
    tune: bool
    space: TuningSpace
    tags: _containers.ScalarMap[str, str]
    description: str
    created: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    created_by: str
    progress: Progress
    version: str
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., dataset: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., config: _Optional[_Union[_training_pb2.PipelineConfig, _Mapping]] = ..., evaluation: _Optional[_Union[Evaluation, _Mapping]] = ..., tune: _Optional[bool] = ..., space: _Optional[_Union[TuningSpace, _Mapping]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "model", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    model: str
    limit: int
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., model: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("sequence", "at", "state", "progress", "message")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    at: _timestamp_pb2.Timestamp
    state: JobState
    progress: Progress
    message: str
    def __init__(self, sequence: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "after_sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_sequence: int
    def __init__(self, id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("event", "jobs_ahead")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    JOBS_AHEAD_FIELD_NUMBER: _ClassVar[int]
    event: JobEvent
    jobs_ahead: int
    def __init__(self, event: _Optional[_Union[JobEvent, _Mapping]] = ..., jobs_ahead: _Optional[int] = ...) -> None: ...

class GetJobReportRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _training_pb2.TrainingReport
    def __init__(self, report: _Optional[_Union[_training_pb2.TrainingReport, _Mapping]] = ...) -> None: ...
