"""The HTTP error mapping: one status per internal error class, never a 500 for the user's input."""
from __future__ import annotations

import asyncio

import pytest

from rescore_sidecar.sidecar.core import errors
from rescore_sidecar.sidecar.core.errors import RequestTooLarge
from rescore_sidecar.sidecar.transport.errors import to_http, to_status
from rescore_sidecar.sidecar.transport.http_errors import FieldError


@pytest.mark.parametrize("exc, status, kind", [
    (errors.InvalidRequest("query is empty"), 400, "invalid_request"),
    (FieldError("documents[2]", "must be a string"), 400, "invalid_request"),
    (errors.ModelNotFound("model 'x' is not served here"), 404, "model_not_found"),
    (errors.LimitExceeded("1001 documents in one request; the limit is 1000"), 413, "request_too_large"),
    (RequestTooLarge("request is 9000000 bytes"), 413, "request_too_large"),
    (errors.NotReady("draining"), 503, "not_ready"),
    (errors.DeadlineTooShort("1 ms left"), 504, "deadline_exceeded"),
    (asyncio.TimeoutError(), 504, "deadline_exceeded"),
    (TimeoutError(), 504, "deadline_exceeded"),
    (ValueError("bug"), 500, "internal"),
])
def test_status_per_error_class(exc, status, kind):
    error = to_http(exc)
    assert (error.status, error.type) == (status, kind)
    body = error.body()
    # Every client family finds the message where it looks: ours, Cohere/TEI (`message`), Jina (`detail`).
    assert body["error"]["message"] == body["message"] == body["detail"]
    assert body["error_type"] == kind


def test_field_is_named():
    error = to_http(FieldError("documents[2].text", "must be a string"))
    assert error.field == "documents[2].text" and error.body()["error"]["field"] == "documents[2].text"
    assert "documents[2].text" in error.message


def test_retry_after_on_retryable_errors_only():
    assert to_http(errors.NotReady("loading")).headers() == {"Retry-After": "1"}
    assert to_http(errors.InvalidRequest("x")).headers() == {}
    assert to_http(RequestTooLarge("x")).headers() == {}


def test_queue_full_is_429():
    error = to_http(errors.Overloaded("model 'ce' has 20000 sequences queued"))
    assert (error.status, error.type, error.headers()) == (429, "overloaded", {"Retry-After": "1"})
    assert to_http(errors.RequestTooLarge("the limit is 1000")).status == 413


def test_out_of_device_memory_is_not_blamed_on_the_request():
    error = to_http(MemoryError())
    assert error.status == 503 and error.retry_after == 1


def test_internal_error_message_hides_details(caplog):
    error = to_http(KeyError("secret document text"))
    assert error.status == 500 and "secret document text" not in error.message


def test_grpc_and_http_agree_on_the_error_class():
    """The gRPC code name used as the metrics label is the one to_status gives."""
    for exc in (errors.InvalidRequest("x"), errors.ModelNotFound("x"), errors.NotReady("x"),
                errors.DeadlineTooShort("x"), asyncio.TimeoutError()):
        assert to_http(exc).grpc_code == to_status(exc)[0].name
