"""The one function that maps any exception to an HTTP status (beside errors.to_status for gRPC).

Every error answer of the HTTP surface is `{"error": {"type", "message", "field"?}, "message"}`
(`message` at the top level too, as Cohere's and TEI's clients read it there).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from rescore_sidecar.sidecar.core.errors import (DeadlineTooShort, InvalidRequest, LimitExceeded, ModelNotFound,
                                            NotReady, Overloaded, RescoreError)

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class FieldError(InvalidRequest):
    """Bad input found by the HTTP layer itself: names the JSON field (`documents[3].text`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class HttpError:
    status: int
    type: str          # stable, machine-readable: clients decide on it, never on the message
    message: str
    field: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After
    grpc_code: str = "INTERNAL"      # the gRPC status name the same error gets: one metrics label set

    def body(self) -> dict:
        error = {"type": self.type, "message": self.message}
        if self.field:
            error["field"] = self.field
        return {"error": error, "message": self.message}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def to_http(exc: BaseException) -> HttpError:
    """HTTP status, error type and client-facing message for any exception raised while serving."""
    if isinstance(exc, InvalidRequest):
        return HttpError(400, "invalid_request", str(exc), getattr(exc, "field", None), grpc_code="INVALID_ARGUMENT")
    if isinstance(exc, ModelNotFound):
        return HttpError(404, "model_not_found", str(exc), "model", grpc_code="NOT_FOUND")
    if isinstance(exc, LimitExceeded):
        # The queue being full is the server's load (retry later, or elsewhere); any other limit is
        # the request's size and fails the same way every time.
        if isinstance(exc, Overloaded):
            return HttpError(429, "overloaded", str(exc), retry_after=RETRY_AFTER_SECONDS,
                             grpc_code="RESOURCE_EXHAUSTED")
        return HttpError(413, "request_too_large", str(exc), grpc_code="RESOURCE_EXHAUSTED")
    if isinstance(exc, NotReady):
        return HttpError(503, "not_ready", str(exc), retry_after=RETRY_AFTER_SECONDS, grpc_code="UNAVAILABLE")
    if isinstance(exc, DeadlineTooShort):
        return HttpError(504, "deadline_exceeded", str(exc), grpc_code="DEADLINE_EXCEEDED")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return HttpError(504, "deadline_exceeded", "deadline exceeded before the documents were scored",
                         grpc_code="DEADLINE_EXCEEDED")
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch here
        log.error("out of device memory while scoring: %s", exc)
        return HttpError(503, "out_of_device_memory",
                         "the model ran out of device memory; retry with fewer or shorter documents",
                         retry_after=RETRY_AFTER_SECONDS, grpc_code="RESOURCE_EXHAUSTED")
    if isinstance(exc, RescoreError):
        return HttpError(500, "internal", str(exc))
    log.exception("internal error while serving an HTTP request", exc_info=exc)
    return HttpError(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
