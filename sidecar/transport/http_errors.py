"""The shape of the HTTP port's error answers; transport/errors.py `to_http` decides which one.

Every error answer of the HTTP surface is
`{"error": {"type", "message", "field"?}, "message", "detail", "error_type"}`: our typed `error`, and
the same message where each client family reads it: `message` (Cohere's SDK, infinity), `detail`
(Jina-API clients raise `RuntimeError(resp["detail"])`), `error_type` (TEI's name for the type).
"""
from __future__ import annotations

from dataclasses import dataclass

from rescore_sidecar.sidecar.core.errors import InvalidRequest


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
        return {"error": error, "message": self.message, "detail": self.message, "error_type": self.type}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
