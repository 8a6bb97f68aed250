"""Internal errors and the one function that maps any exception to a gRPC status.

Every status the sidecar sends carries a `google.rpc.ErrorInfo` (domain `rescore.sidecar`) in the
standard rich-status trailer `grpc-status-details-bin`: clients decide on its `reason`, never on
the message's wording (which may change). Reasons: see `REASONS`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

log = logging.getLogger(__name__)

DOMAIN = "rescore.sidecar"
DETAILS_KEY = "grpc-status-details-bin"


class RescoreError(Exception):
    """An error whose message is safe to show the client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"


class InvalidRequest(RescoreError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"


class ModelNotFound(RescoreError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "MODEL_NOT_FOUND"


class LimitExceeded(RescoreError):
    """RESOURCE_EXHAUSTED: raise one of the two subclasses, which say whose fault it is."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "OVERLOADED"


class RequestTooLarge(LimitExceeded):
    """The request is over a per-request limit and never fits, whatever the load: the request's fault."""

    reason = "REQUEST_TOO_LARGE"


class Overloaded(LimitExceeded):
    """The queue is full right now: the sidecar's load, worth another replica or a later retry."""

    reason = "OVERLOADED"


class DeadlineTooShort(RescoreError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_TOO_SHORT"


class NotReady(RescoreError):
    """Loading models or draining: another replica should take the request."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "NOT_READY"


# Every ErrorInfo.reason the sidecar sends (a test keeps this in step with the classes).
REASONS = ("INVALID_REQUEST", "MODEL_NOT_FOUND", "REQUEST_TOO_LARGE", "OVERLOADED", "DEADLINE_TOO_SHORT",
           "DEADLINE_EXCEEDED", "NOT_READY", "OUT_OF_DEVICE_MEMORY", "INTERNAL")


class Status(NamedTuple):
    code: grpc.StatusCode
    message: str
    reason: str  # ErrorInfo.reason, one of REASONS

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The rich status (google.rpc.Status with one ErrorInfo) as the standard binary trailer."""
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN))
        return ((DETAILS_KEY, status.SerializeToString()),)


assert code_pb2.RESOURCE_EXHAUSTED == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]  # same numbering


def to_status(exc: BaseException) -> Status:
    """Status code, client-facing message and typed reason for any exception raised while serving."""
    if isinstance(exc, RescoreError):
        return Status(exc.code, str(exc), exc.reason)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return Status(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the documents were scored",
                      "DEADLINE_EXCEEDED")
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
        log.error("out of device memory while scoring: %s", exc)
        return Status(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      "the model ran out of device memory; retry with fewer or shorter documents", "OUT_OF_DEVICE_MEMORY")
    log.exception("internal error while serving a request", exc_info=exc)
    return Status(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log", "INTERNAL")
