"""Request bookkeeping both transports share: the in-flight gauge, the request counter, the
latency histogram and the error counter, all labelled the same way whichever port a request
came in on (an HTTP error is labelled with the gRPC status name the same error gets); only the
latency histogram also says which transport, for the dashboard's p50/p99 per transport."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Mapping, Protocol

from rescore_sidecar.connectors import logs, tracing
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
    transport: str = "grpc"
    documents: int = 0  # for the request's log line
    timings: Any = None  # the answer's rescore.v1.Timings, once scored
    seconds: float = 0.0  # set by finish

    def finish(self, code: str) -> None:
        """Counts the request, its latency and (unless OK) an error under the model and `code`; once."""
        if self.code is not None:
            return
        self.code = code
        self.seconds = time.perf_counter() - self.started
        metrics.REQUESTS.labels(self.model, code).inc()
        metrics.REQUEST_LATENCY.labels(self.model, code, self.transport).observe(self.seconds)
        if code != OK:
            metrics.ERRORS.labels(code).inc()


@contextlib.contextmanager
def accounted_request(transport: str = "grpc",
                      carrier: Callable[[], Mapping[str, Any]] | None = None) -> Iterator[RequestRecord]:
    """One Rerank request in the in-flight gauge while inside, in its `rescore.rerank` server span
    (continuing the trace context `carrier()` holds: gRPC metadata or HTTP headers, read only when
    tracing), and its one log line on leaving. A request the transport did not finish is counted on
    leaving: CANCELLED when the client went away, else UNKNOWN (an exception escaped the transport)."""
    record = RequestRecord(transport=transport)
    metrics.IN_FLIGHT.inc()
    with tracing.server_span(tracing.RERANK, carrier() if carrier and tracing.active() else None,
                             {"rescore.transport": transport}) as span:
        try:
            yield record
        except asyncio.CancelledError:
            record.finish("CANCELLED")
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            record.finish("UNKNOWN")
            _close(span, record)


def _close(span: Any, record: RequestRecord) -> None:
    """The request's outcome on its span, and its log line (inside the span: it carries the ids)."""
    if span.is_recording():
        span.set_attributes({"rescore.model": record.model, "rpc.grpc.status_code_name": record.code or ""})
        if record.code != OK:
            tracing.failed(span, record.code or "")
    t = record.timings
    logs.request_line("rerank", {
        "transport": record.transport, "model": record.model, "code": record.code, "documents": record.documents,
        "took_ms": round(record.seconds * 1000, 3),
        **({"queue_ms": round(t.queue_ms, 3), "tokenize_ms": round(t.tokenize_ms, 3),
            "compute_ms": round(t.compute_ms, 3)} if t is not None else {})})
