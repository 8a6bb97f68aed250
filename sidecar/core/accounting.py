"""Request bookkeeping both transports share: the in-flight gauge, the request counter, the
latency histogram and the error counter, all labelled the same way whichever port a request
came in on (an HTTP error is labelled with the gRPC status name the same error gets)."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Iterator, Protocol

from rescore_sidecar.sidecar import metrics

UNKNOWN_MODEL = "unknown"
OK = "OK"


class ServesModels(Protocol):
    backends: dict
    default_model: str


def model_label(service: ServesModels | None, requested: str) -> str:
    """The `model` label for a request naming `requested` ("" = the default): only served names,
    so a client cannot grow the label set with made-up model names."""
    if service is None:
        return UNKNOWN_MODEL
    name = requested or service.default_model
    return name if name in service.backends else UNKNOWN_MODEL


@dataclasses.dataclass
class RequestRecord:
    """What the transport learns while serving one request: set `model` once known and `code`
    (a gRPC status name) before answering."""

    model: str = UNKNOWN_MODEL
    code: str = "UNKNOWN"  # left as is only when an exception escapes the transport
    started: float = dataclasses.field(default_factory=time.perf_counter)


@contextlib.contextmanager
def accounted_request() -> Iterator[RequestRecord]:
    """Counts one Rerank request: in flight while inside; on leaving, the request, its latency and
    (unless OK) an error, under the record's model and code. A cancelled request (the client went
    away) is counted as CANCELLED."""
    record = RequestRecord()
    metrics.IN_FLIGHT.inc()
    try:
        yield record
    except asyncio.CancelledError:
        record.code = "CANCELLED"
        raise
    finally:
        metrics.IN_FLIGHT.dec()
        metrics.REQUESTS.labels(record.model, record.code).inc()
        metrics.REQUEST_LATENCY.labels(record.model, record.code).observe(time.perf_counter() - record.started)
        if record.code != OK:
            metrics.ERRORS.labels(record.code).inc()
