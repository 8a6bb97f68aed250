"""An in-test OTLP/gRPC trace receiver on the official `opentelemetry-proto` service definitions, and
one span shape for what it receives and what Jaeger's query API returns, so a test reads either
backend the same way.

    with OtlpReceiver() as receiver:          # OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint
        ...export...
        spans = receiver.wait_for_spans(lambda spans: len(spans) >= 3, timeout=10)

Needs the `otel` extra (opentelemetry-proto); tests import it behind `pytest.importorskip`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from typing import Callable, Iterable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from rescore_sidecar.tools.waiting import WaitTimeout, wait_until


@dataclasses.dataclass(frozen=True)
class Span:
    """One span, backend-neutral: ids in lower-case hex (trace 32 digits, span 16), parent "" for a root."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    attributes: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)


def _value(v: common_pb2.AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def spans_from_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(Span(span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name,
                                  service, {kv.key: _value(kv.value) for kv in span.attributes}))
    return spans


def spans_from_jaeger(trace: dict) -> list[Span]:
    """A trace as Jaeger's `/api/traces` answers it (spans with references, processes by id)."""
    services = {pid: proc.get("serviceName", "") for pid, proc in trace.get("processes", {}).items()}
    spans = []
    for span in trace.get("spans", []):
        parents = [ref["spanID"] for ref in span.get("references", []) if ref.get("refType") == "CHILD_OF"]
        spans.append(Span(span["traceID"].rjust(32, "0"), span["spanID"].rjust(16, "0"),
                          parents[0].rjust(16, "0") if parents else "", span["operationName"],
                          services.get(span.get("processID"), ""),
                          {tag["key"]: tag.get("value") for tag in span.get("tags", [])}))
    return spans


def ancestors(span: Span, spans: Iterable[Span]) -> list[Span]:
    """`span`'s parent, grandparent, ... as far as `spans` holds them (nearest first)."""
    by_id = {s.span_id: s for s in spans}
    chain, seen = [], {span.span_id}
    while span.parent_id in by_id and span.parent_id not in seen:
        span = by_id[span.parent_id]
        seen.add(span.span_id)
        chain.append(span)
    return chain


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[trace_service_pb2.ExportTraceServiceRequest], None]) -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 (the proto's method name)
        self._sink(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """`opentelemetry.proto.collector.trace.v1.TraceService` on a free loopback port, keeping every
    ExportTraceServiceRequest it is sent (`requests`) and their spans (`spans()`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self._keep), self._server)
        self.port = self._server.add_insecure_port(f"{host}:0")
        self.host = host

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT (gRPC) takes."""
        return f"http://{self.host}:{self.port}"

    def _keep(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def spans(self) -> list[Span]:
        with self._lock:
            requests = list(self.requests)
        return [span for request in requests for span in spans_from_request(request)]

    def wait_for_spans(self, enough: Callable[[list[Span]], bool], *, timeout: float = 10.0) -> list[Span]:
        """The spans received, once `enough(spans)`; WaitTimeout (naming what did arrive) otherwise."""
        try:
            wait_until(lambda: enough(self.spans()), timeout=timeout, what="OTLP spans")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}; received: {[(s.service, s.name) for s in self.spans()]}") from None
        return self.spans()

    def start(self) -> "OtlpReceiver":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=1).wait()

    def __enter__(self) -> "OtlpReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
