"""The one map from any exception raised while serving to what each transport answers.

An exception is classified once into its `ErrorReason` (the wire contract in proto/): a core error
carries its own, a timeout is DEADLINE_EXCEEDED, out-of-memory (by exception type) is
OUT_OF_DEVICE_MEMORY, anything else INTERNAL. One table then gives, per reason, the gRPC status
code and the HTTP status, error type and Retry-After, so the two ports cannot disagree.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.core.errors import DETAILS_KEY, DOMAIN, RescoreError, reason_name
from rescore_sidecar.sidecar.transport.http_errors import HttpError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
TIMEOUT_MESSAGE = "deadline exceeded before the documents were scored"
OUT_OF_MEMORY_MESSAGE = "the model ran out of device memory; retry with fewer or shorter documents"


@dataclasses.dataclass(frozen=True)
class Answer:
    """How both transports answer one error reason."""

    grpc_code: grpc.StatusCode
    http_status: int
    http_type: str  # stable, machine-readable: HTTP clients decide on it, never on the message
    retry_after: int | None = None  # seconds, sent as HTTP Retry-After (the error is worth a retry)
    field: str | None = None  # the request field to blame, when always the same one


ANSWERS: dict[str, Answer] = {reason_name(value): answer for value, answer in (
    (pb.INVALID_REQUEST, Answer(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request")),
    (pb.MODEL_NOT_FOUND, Answer(grpc.StatusCode.NOT_FOUND, 404, "model_not_found", field="model")),
    # Over a per-request limit fails the same way every time; a full queue is the server's load.
    (pb.REQUEST_TOO_LARGE, Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "request_too_large")),
    (pb.OVERLOADED, Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "overloaded", RETRY_AFTER_SECONDS)),
    (pb.DEADLINE_TOO_SHORT, Answer(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "deadline_exceeded")),
    (pb.DEADLINE_EXCEEDED, Answer(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "deadline_exceeded")),
    (pb.NOT_READY, Answer(grpc.StatusCode.UNAVAILABLE, 503, "not_ready", RETRY_AFTER_SECONDS)),
    (pb.OUT_OF_DEVICE_MEMORY, Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, 503, "out_of_device_memory",
                                     RETRY_AFTER_SECONDS)),
    (pb.INTERNAL, Answer(grpc.StatusCode.INTERNAL, 500, "internal")),
)}


def out_of_memory_types() -> tuple[type[BaseException], ...]:
    """MemoryError (host memory; also what pybind11 makes of a std::bad_alloc that reaches Python)
    and torch's OutOfMemoryError when torch is loaded: an exception from torch cannot exist without
    it, so torch is never imported here. OpenVINO has no out-of-memory type (openvino.exceptions:
    OVError, OVTypeError, UserInputError): an allocation failure it wraps in a RuntimeError stays
    INTERNAL, as no type says what it is."""
    torch = sys.modules.get("torch")
    if torch is None:
        return (MemoryError,)
    return (MemoryError, torch.cuda.OutOfMemoryError)


class Classified(NamedTuple):
    reason: str
    message: str  # safe to show the client


def classify(exc: BaseException) -> Classified:
    """The reason and client-facing message of any exception raised while serving (logs the
    server-side ones)."""
    if isinstance(exc, RescoreError):
        return Classified(exc.reason, str(exc))
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Classified(reason_name(pb.DEADLINE_EXCEEDED), TIMEOUT_MESSAGE)
    if isinstance(exc, out_of_memory_types()):
        log.error("out of device memory while scoring: %s", exc)
        return Classified(reason_name(pb.OUT_OF_DEVICE_MEMORY), OUT_OF_MEMORY_MESSAGE)
    log.exception("internal error while serving a request", exc_info=exc)
    return Classified(reason_name(pb.INTERNAL), f"internal error ({type(exc).__name__}); see the server log")


class Status(NamedTuple):
    """A gRPC error answer."""

    code: grpc.StatusCode
    message: str
    reason: str  # ErrorInfo.reason, one of core.errors.REASONS

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The rich status (google.rpc.Status with one ErrorInfo) as the standard binary trailer."""
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN))
        return ((DETAILS_KEY, status.SerializeToString()),)


def to_status(exc: BaseException) -> Status:
    """The gRPC status, message and typed reason for any exception raised while serving."""
    reason, message = classify(exc)
    return Status(ANSWERS[reason].grpc_code, message, reason)


def to_http(exc: BaseException) -> HttpError:
    """The HTTP status, error type and message for any exception raised while serving."""
    reason, message = classify(exc)
    answer = ANSWERS[reason]
    return HttpError(answer.http_status, answer.http_type, message, getattr(exc, "field", None) or answer.field,
                     retry_after=answer.retry_after, grpc_code=answer.grpc_code.name)
