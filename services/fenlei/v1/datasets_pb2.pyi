import datetime

from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_TSV: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CSV: _ClassVar[DatasetFormat]
    DATASET_FORMAT_JSONL: _ClassVar[DatasetFormat]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_TSV: DatasetFormat
DATASET_FORMAT_CSV: DatasetFormat
DATASET_FORMAT_JSONL: DatasetFormat

class UploadDatasetRequest(_message.Message):
    __slots__ = ("chunk", "name", "file_name", "format", "text_column", "label_column", "label_names", "size_bytes")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    name: str
    file_name: str
    format: DatasetFormat
    text_column: str
    label_column: str
    label_names: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    def __init__(self, chunk: _Optional[bytes] = ..., name: _Optional[str] = ..., file_name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., text_column: _Optional[str] = ..., label_column: _Optional[str] = ..., label_names: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class DatasetExample(_message.Message):
    __slots__ = ("text", "label")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    label: str
    def __init__(self, text: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "name", "sha256", "file_name", "format", "documents", "characters", "bytes", "label_counts", "examples", "created", "created_by")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    sha256: str
    file_name: str
    format: DatasetFormat
    documents: int
    characters: int
    bytes: int
    label_counts: _containers.ScalarMap[str, int]
    examples: _containers.RepeatedCompositeFieldContainer[DatasetExample]
    created: _timestamp_pb2.Timestamp
    created_by: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., file_name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., documents: _Optional[int] = ..., characters: _Optional[int] = ..., bytes: _Optional[int] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., examples: _Optional[_Iterable[_Union[DatasetExample, _Mapping]]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ...) -> None: ...

class UploadDatasetResponse(_message.Message):
    __slots__ = ("dataset", "existed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    existed: bool
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., existed: _Optional[bool] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ReadDatasetRequest(_message.Message):
    __slots__ = ("id", "batch_documents", "offset")
    ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    id: str
    batch_documents: int
    offset: int
    def __init__(self, id: _Optional[str] = ..., batch_documents: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class DatasetRecord(_message.Message):
    __slots__ = ("index", "text", "label")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    text: str
    label: str
    def __init__(self, index: _Optional[int] = ..., text: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class ReadDatasetResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[DatasetRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[DatasetRecord, _Mapping]]] = ...) -> None: ...

class DatasetPin(_message.Message):
    __slots__ = ("job", "dataset")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    job: str
    dataset: str
    def __init__(self, job: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class SetPinsRequest(_message.Message):
    __slots__ = ("pins",)
    PINS_FIELD_NUMBER: _ClassVar[int]
    pins: _containers.RepeatedCompositeFieldContainer[DatasetPin]
    def __init__(self, pins: _Optional[_Iterable[_Union[DatasetPin, _Mapping]]] = ...) -> None: ...

class SetPinsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
