from fenlei.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NgramRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class PreprocessOptions(_message.Message):
    __slots__ = ("normalize_width", "lowercase", "remove_punctuation", "remove_digits", "remove_urls", "remove_emails", "remove_stopwords", "extra_stopwords", "min_token_length", "word_ngrams", "char_ngrams", "tag_terms")
    NORMALIZE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_PUNCTUATION_FIELD_NUMBER: _ClassVar[int]
    REMOVE_DIGITS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_URLS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_EMAILS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_STOPWORDS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_STOPWORDS_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKEN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    WORD_NGRAMS_FIELD_NUMBER: _ClassVar[int]
    CHAR_NGRAMS_FIELD_NUMBER: _ClassVar[int]
    TAG_TERMS_FIELD_NUMBER: _ClassVar[int]
    normalize_width: bool
    lowercase: bool
    remove_punctuation: bool
    remove_digits: bool
    remove_urls: bool
    remove_emails: bool
    remove_stopwords: bool
    extra_stopwords: _containers.RepeatedScalarFieldContainer[str]
    min_token_length: int
    word_ngrams: NgramRange
    char_ngrams: NgramRange
    tag_terms: bool
    def __init__(self, normalize_width: _Optional[bool] = ..., lowercase: _Optional[bool] = ..., remove_punctuation: _Optional[bool] = ..., remove_digits: _Optional[bool] = ..., remove_urls: _Optional[bool] = ..., remove_emails: _Optional[bool] = ..., remove_stopwords: _Optional[bool] = ..., extra_stopwords: _Optional[_Iterable[str]] = ..., min_token_length: _Optional[int] = ..., word_ngrams: _Optional[_Union[NgramRange, _Mapping]] = ..., char_ngrams: _Optional[_Union[NgramRange, _Mapping]] = ..., tag_terms: _Optional[bool] = ...) -> None: ...

class PreprocessRequest(_message.Message):
    __slots__ = ("documents", "model", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    model: _common_pb2.ModelRef
    options: PreprocessOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[PreprocessOptions, _Mapping]] = ...) -> None: ...

class PreprocessResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ...) -> None: ...

class PreprocessStreamRequest(_message.Message):
    __slots__ = ("documents", "trace", "model", "options")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    trace: _common_pb2.TraceContext
    model: _common_pb2.ModelRef
    options: PreprocessOptions
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ..., trace: _Optional[_Union[_common_pb2.TraceContext, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., options: _Optional[_Union[PreprocessOptions, _Mapping]] = ...) -> None: ...

class PreprocessStreamResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.TokenizedDocument]
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.TokenizedDocument, _Mapping]]] = ...) -> None: ...
