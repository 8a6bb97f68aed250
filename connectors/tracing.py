"""OpenTelemetry tracing, optional (the `otel` extra): the one module that touches `opentelemetry`.

Without the extra nothing here imports it and every helper is a no-op on a shared null object, so
an install without it pays one failed import per process and nothing per request. With it:

- the connectors (an application's library) use the OpenTelemetry API only: their spans go to the
  application's TracerProvider, if it set one (none set: the API's non-recording spans);
  `RESCORE_TRACING=0` turns them off even so;
- the proxy and the sidecar (processes) own one: `setup()` installs the SDK's TracerProvider with a
  batching OTLP exporter, configured the OpenTelemetry way (`OTEL_EXPORTER_OTLP_ENDPOINT`,
  `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_EXPORTER_OTLP_PROTOCOL`).

W3C trace context (`traceparent`) goes out with `inject` / `grpc_metadata` and comes in with
`server_span`. Span names and attributes: docs/tracing.md. No query or document text is ever set
as an attribute here.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator, Mapping

ENV_SWITCH = "RESCORE_TRACING"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
INSTRUMENTATION = "rescore_sidecar"

# Span names (a contract: docs/tracing.md and the live test read them).
SEARCH, ENGINE, SIDECAR, PROXY = "rescore.search", "rescore.engine", "rescore.sidecar", "rescore.proxy"
RERANK, QUEUE, TOKENIZE, FORWARD = "rescore.rerank", "rescore.queue", "rescore.tokenize", "rescore.forward"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the `otel` extra is not installed."""


class _NullSpan:
    """What every helper gives when tracing is off: accepts everything, records nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


NULL_SPAN = _NullSpan()
_otel: Any = None  # the loaded API: a namespace of the modules used, or False when not installed
_provider: Any = None  # the SDK TracerProvider this process installed (setup), for shutdown


def _load() -> Any:
    """The OpenTelemetry API modules, or False when the extra is not installed (tried once)."""
    global _otel
    if _otel is None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            _otel = False
        else:
            _otel = type("otel", (), {"trace": trace, "propagate": propagate, "context": context})
    return _otel


def switch(environ: Mapping[str, str] | None = None) -> bool | None:
    """`RESCORE_TRACING`: True (on), False (off) or None (unset / not a boolean)."""
    value = (os.environ if environ is None else environ).get(ENV_SWITCH, "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


_active: bool | None = None
_tracer_obj: Any = None  # cached: the API's proxy tracer follows a provider set later


def active() -> bool:
    """Whether spans are made at all: the API is installed and `RESCORE_TRACING` is not off."""
    global _active
    if _active is None:
        _active = switch() is not False and bool(_load())
    return _active


def reset() -> None:
    """Forgets the cached state (tests change the environment and the provider)."""
    global _active, _otel, _tracer_obj
    _active, _otel, _tracer_obj = None, None, None


def install(provider: Any) -> None:
    """Sends the spans of this process to `provider` rather than the global one (tests, benchmarks:
    the global provider can be set only once per process)."""
    global _active, _tracer_obj
    _load()
    _active, _tracer_obj = True, provider.get_tracer(INSTRUMENTATION)


def setup(service_name: str, enabled: bool) -> bool:
    """For a process (sidecar, proxy): when `enabled` (its merged settings: the sidecar's `tracing` is
    `RESCORE_TRACING`; the proxy adds `RESCORE_TRACING` to its own), installs an SDK TracerProvider
    that batches spans to OTLP as the global one; else turns this process's spans off. Returns
    whether tracing is on; TracingUnavailable (naming the extra) when asked for without the extra."""
    global _provider, _active
    if not enabled:
        _active = False
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable("tracing needs the otel extra: pip install 'rescore-sidecar[otel]'") from None
    otel = _load()
    # OTEL_SERVICE_NAME wins; the resource detectors read it and OTEL_RESOURCE_ATTRIBUTES.
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER / _ARG
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    otel.trace.set_tracer_provider(provider)
    _provider = provider
    install(provider)
    return True


def _exporter() -> Any:
    """The exporter named by OTEL_TRACES_EXPORTER (otlp, console, none) and OTEL_EXPORTER_OTLP_PROTOCOL."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc").strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[no-redef]
    except ImportError:
        raise TracingUnavailable(f"no OTLP exporter for protocol {protocol!r}: install opentelemetry-exporter-otlp-proto-"
                                 f"{'grpc' if protocol == 'grpc' else 'http'}") from None
    return OTLPSpanExporter()


def endpoint() -> str:
    """Where spans go, for the start-up log line."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind != "otlp":
        return kind
    return (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or "the OTLP default (localhost:4317)")


def shutdown() -> None:
    """Flushes and stops this process's provider (end of the sidecar / proxy)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def _tracer() -> Any:
    global _tracer_obj
    if _tracer_obj is None:
        _tracer_obj = _load().trace.get_tracer(INSTRUMENTATION)
    return _tracer_obj


def _unsampled() -> bool:
    """Whether the current span is a real one that records nothing (sampled out): its children would
    record nothing either, so none is made (the cost of sampling 0), and what is propagated is that
    span's context, flagged not sampled. Without a current span a new root is made: the sampler decides."""
    current_ = _load().trace.get_current_span()
    return not current_.is_recording() and current_.get_span_context().is_valid


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child span of the current one, current while inside (`with tracing.span(...) as s:`)."""
    if not active() or _unsampled():
        return NULL_SPAN
    return _tracer().start_as_current_span(name, attributes=attributes)


def client_span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """As `span`, of kind CLIENT (a call to another process)."""
    if not active() or _unsampled():
        return NULL_SPAN
    return _tracer().start_as_current_span(name, kind=_load().trace.SpanKind.CLIENT, attributes=attributes)


def server_span(name: str, carrier: Mapping[str, Any] | None,
                attributes: Mapping[str, Any] | None = None) -> Any:
    """A SERVER span continuing the trace whose `traceparent` is in `carrier` (HTTP headers, or gRPC
    metadata as a mapping); a new trace when it has none."""
    if not active():
        return NULL_SPAN
    otel = _load()
    parent = otel.propagate.extract(carrier) if carrier else None
    return _tracer().start_as_current_span(name, context=parent, kind=otel.trace.SpanKind.SERVER,
                                           attributes=attributes)


def current() -> Any:
    """The current span (NULL_SPAN when off), to set attributes on."""
    return _load().trace.get_current_span() if active() else NULL_SPAN


def failed(span_: Any, description: str) -> None:
    """Marks `span_` as failed (status ERROR) with `description` (a status name, not user text)."""
    if active() and span_.is_recording():
        trace = _load().trace
        span_.set_status(trace.Status(trace.StatusCode.ERROR, description))


def inject(carrier: Any) -> Any:
    """Adds `traceparent` (and `tracestate`) of the current span to `carrier` (a mutable mapping of
    headers); returns it. No-op when off or when there is no current span."""
    if active():
        _load().propagate.inject(carrier)
    return carrier


def headers() -> dict[str, str]:
    """The current trace context as headers ({} when off)."""
    return inject({}) if active() else {}


def merged(base: Mapping[str, str] | None) -> Any:
    """`base` headers plus the current trace context, as a new dict (`base` itself when off): for
    engine clients that take extra headers (opensearch-py's `headers=`)."""
    if not active():
        return base
    extra = headers()
    return {**(base or {}), **extra} if extra else base


def grpc_metadata(base: tuple | None) -> tuple | None:
    """`base` gRPC metadata (None: none) plus the current trace context (`base` itself when off)."""
    if not active():
        return base
    extra = headers()
    return (base or ()) + tuple(extra.items()) if extra else base


def ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, or None (off, or no valid span): for logs."""
    if not active():
        return None
    ctx = _load().trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def wall_ns(monotonic: float) -> int:
    """A `time.monotonic()` instant as epoch nanoseconds (what span timestamps are)."""
    return time.time_ns() - int((time.monotonic() - monotonic) * 1e9)


def record(name: str, start: float, end: float, attributes: Mapping[str, Any] | None = None) -> None:
    """A finished child span of the current one, from `time.monotonic()` instants measured elsewhere
    (queue wait, a forward pass on another thread)."""
    if not active():
        return
    span_ = _tracer().start_span(name, start_time=wall_ns(start), attributes=attributes)
    span_.end(end_time=wall_ns(end))


@contextlib.contextmanager
def use(span_: Any) -> Iterator[Any]:
    """Makes `span_` current while inside (for work that continues a span started elsewhere)."""
    if not active() or span_ is NULL_SPAN:
        yield span_
        return
    with _load().trace.use_span(span_, end_on_exit=False):
        yield span_
