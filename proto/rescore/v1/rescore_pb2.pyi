from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORE_MODE_UNSPECIFIED: _ClassVar[ScoreMode]
    SCORE_MODE_NORMALIZED: _ClassVar[ScoreMode]
    SCORE_MODE_RAW: _ClassVar[ScoreMode]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CROSS_ENCODER: _ClassVar[ModelKind]
    MODEL_KIND_BI_ENCODER: _ClassVar[ModelKind]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    INVALID_REQUEST: _ClassVar[ErrorReason]
    MODEL_NOT_FOUND: _ClassVar[ErrorReason]
    REQUEST_TOO_LARGE: _ClassVar[ErrorReason]
    OVERLOADED: _ClassVar[ErrorReason]
    DEADLINE_TOO_SHORT: _ClassVar[ErrorReason]
    DEADLINE_EXCEEDED: _ClassVar[ErrorReason]
    NOT_READY: _ClassVar[ErrorReason]
    OUT_OF_DEVICE_MEMORY: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]
SCORE_MODE_UNSPECIFIED: ScoreMode
SCORE_MODE_NORMALIZED: ScoreMode
SCORE_MODE_RAW: ScoreMode
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CROSS_ENCODER: ModelKind
MODEL_KIND_BI_ENCODER: ModelKind
ERROR_REASON_UNSPECIFIED: ErrorReason
INVALID_REQUEST: ErrorReason
MODEL_NOT_FOUND: ErrorReason
REQUEST_TOO_LARGE: ErrorReason
OVERLOADED: ErrorReason
DEADLINE_TOO_SHORT: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
NOT_READY: ErrorReason
OUT_OF_DEVICE_MEMORY: ErrorReason
INTERNAL: ErrorReason
ERROR_DOMAIN_FIELD_NUMBER: _ClassVar[int]
error_domain: _descriptor.FieldDescriptor
ERROR_DETAILS_KEY_FIELD_NUMBER: _ClassVar[int]
error_details_key: _descriptor.FieldDescriptor

class Document(_message.Message):
    __slots__ = ("id", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("query", "documents", "model", "top_n", "score_mode", "max_query_tokens", "request_id", "bypass_cache", "max_document_tokens")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    SCORE_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    MAX_DOCUMENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    query: str
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    model: str
    top_n: int
    score_mode: ScoreMode
    max_query_tokens: int
    request_id: str
    bypass_cache: bool
    max_document_tokens: int
    def __init__(self, query: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., model: _Optional[str] = ..., top_n: _Optional[int] = ..., score_mode: _Optional[_Union[ScoreMode, str]] = ..., max_query_tokens: _Optional[int] = ..., request_id: _Optional[str] = ..., bypass_cache: _Optional[bool] = ..., max_document_tokens: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("index", "id", "score", "truncated")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    score: float
    truncated: bool
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., score: _Optional[float] = ..., truncated: _Optional[bool] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("queue_ms", "tokenize_ms", "compute_ms", "total_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    tokenize_ms: float
    compute_ms: float
    total_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., tokenize_ms: _Optional[float] = ..., compute_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("results", "model", "truncated_documents", "timings", "query_truncated", "request_id", "input_tokens")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    model: str
    truncated_documents: int
    timings: Timings
    query_truncated: bool
    request_id: str
    input_tokens: int
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., model: _Optional[str] = ..., truncated_documents: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., query_truncated: _Optional[bool] = ..., request_id: _Optional[str] = ..., input_tokens: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "source", "kind", "max_length", "max_query_tokens", "dtype", "device", "is_default", "num_labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    NUM_LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    kind: ModelKind
    max_length: int
    max_query_tokens: int
    dtype: str
    device: str
    is_default: bool
    num_labels: int
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., max_length: _Optional[int] = ..., max_query_tokens: _Optional[int] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., is_default: _Optional[bool] = ..., num_labels: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "max_documents", "max_request_bytes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    max_documents: int
    max_request_bytes: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., max_documents: _Optional[int] = ..., max_request_bytes: _Optional[int] = ...) -> None: ...
