"""Internal errors and the one function that maps any exception to a gRPC status."""
from __future__ import annotations

import asyncio
import logging

import grpc

log = logging.getLogger(__name__)


class RescoreError(Exception):
    """An error whose message is safe to show the client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(RescoreError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(RescoreError):
    code = grpc.StatusCode.NOT_FOUND


class LimitExceeded(RescoreError):
    """Too many documents or bytes in one request, or the queue is full."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineTooShort(RescoreError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotReady(RescoreError):
    """Loading models or draining: another replica should take the request."""

    code = grpc.StatusCode.UNAVAILABLE


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and client-facing message for any exception raised while serving."""
    if isinstance(exc, RescoreError):
        return exc.code, str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the documents were scored"
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
        log.error("out of device memory while scoring: %s", exc)
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "the model ran out of device memory; retry with fewer or shorter documents"
    log.exception("internal error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"
