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
    aliases: dict  # other names -> served name (model_aliases)


def model_label(service: ServesModels | None, requested: str) -> str:
    """The `model` label for a request naming `requested` ("" = the default): only served names,
    so a client cannot grow the label set with made-up model names."""
    if service is None:
        return UNKNOWN_MODEL
    name = requested or service.default_model
    name = getattr(service, "aliases", {}).get(name, name)  # an alias counts as the model it serves
    return name if name in service.backends else UNKNOWN_MODEL


@dataclasses.dataclass
class RequestRecord:
    """One request being served: set `model` once known, and call `finish` with the gRPC status name
    of the answer before it leaves (a client reading the metrics right after must see it counted)."""

    model: str = UNKNOWN_MODEL
    code: str | None = None  # set by finish
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def finish(self, code: str) -> None:
        """Counts the request, its latency and (unless OK) an error under the model and `code`; once."""
        if self.code is not None:
            return
        self.code = code
        metrics.REQUESTS.labels(self.model, code).inc()
        metrics.REQUEST_LATENCY.labels(self.model, code).observe(time.perf_counter() - self.started)
        if code != OK:
            metrics.ERRORS.labels(code).inc()


@contextlib.contextmanager
def accounted_request() -> Iterator[RequestRecord]:
    """One Rerank request in the in-flight gauge while inside. A request the transport did not
    finish is counted on leaving: CANCELLED when the client went away, else UNKNOWN (an
    exception escaped the transport)."""
    record = RequestRecord()
    metrics.IN_FLIGHT.inc()
    try:
        yield record
    except asyncio.CancelledError:
        record.finish("CANCELLED")
        raise
    finally:
        metrics.IN_FLIGHT.dec()
        record.finish("UNKNOWN")
