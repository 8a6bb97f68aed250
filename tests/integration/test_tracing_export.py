"""The OTLP wire, end to end: the OpenTelemetry SDK exports spans over OTLP/gRPC to a real Jaeger
(whose query API must return them as one trace) and to the in-test receiver built on the official
opentelemetry-proto service (tests/support/otlp.py), which covers the wire where Jaeger cannot be built."""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc", reason="needs the otel extra")

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402

from rescore_sidecar.tools.waiting import wait_until  # noqa: E402
from tests.support.otlp import OtlpReceiver, Span, spans_from_jaeger  # noqa: E402

# A cold machine builds Jaeger inside the first test's fixture (several minutes on 2 cores, once).
pytestmark = pytest.mark.timeout(1800)


def _export_two_spans(endpoint: str, service: str) -> tuple[str, str, str]:
    """A parent and a child span, exported over OTLP/gRPC; returns (trace id, parent id, child id) in hex."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)))
    tracer = provider.get_tracer("rescore-sidecar.tests")
    try:
        with tracer.start_as_current_span("outer") as outer:
            with tracer.start_as_current_span("inner", attributes={"rescore.window": 20}) as inner:
                pass
    finally:
        provider.shutdown()  # flushes; the exporter closes its channel
    ctx = outer.get_span_context()
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{inner.get_span_context().span_id:016x}"


def _assert_parent_and_child(spans: list[Span], ids: tuple[str, str, str], service: str) -> None:
    trace_id, outer_id, inner_id = ids
    by_name = {s.name: s for s in spans if s.trace_id == trace_id}
    assert set(by_name) == {"outer", "inner"}, spans
    assert (by_name["outer"].span_id, by_name["outer"].parent_id) == (outer_id, "")
    assert (by_name["inner"].span_id, by_name["inner"].parent_id) == (inner_id, outer_id)
    assert {s.service for s in by_name.values()} == {service}
    assert by_name["inner"].attributes["rescore.window"] == 20


def test_sdk_span_reaches_jaeger_query_api(jaeger):
    service = f"export-{uuid.uuid4().hex[:8]}"
    ids = _export_two_spans(jaeger.otlp_grpc_endpoint, service)
    # Jaeger batches (100 ms in tools/jaeger.py) before the store answers.
    wait_until(lambda: jaeger.traces(service), timeout=15, what=f"jaeger traces of {service}")
    traces = jaeger.traces(service)
    assert len(traces) == 1 and traces[0]["traceID"].rjust(32, "0") == ids[0]
    assert service in jaeger.services()
    _assert_parent_and_child(spans_from_jaeger(jaeger.trace(ids[0])), ids, service)


def test_sdk_span_reaches_the_in_test_otlp_receiver():
    service = f"export-{uuid.uuid4().hex[:8]}"
    with OtlpReceiver() as receiver:
        ids = _export_two_spans(receiver.endpoint, service)
        spans = receiver.wait_for_spans(lambda got: len(got) >= 2, timeout=10)
    assert len(receiver.requests) == 2  # SimpleSpanProcessor: one ExportTraceServiceRequest per span
    _assert_parent_and_child(spans, ids, service)


def test_w3c_context_joins_two_services_into_one_jaeger_trace(jaeger):
    """What the live test relies on: a span started in another process from a `traceparent` header
    lands in the same Jaeger trace, under the span that sent it, with its own service name."""
    from opentelemetry import propagate

    from tests.support.otlp import ancestors

    tag = uuid.uuid4().hex[:8]
    providers = {}
    for service in (f"caller-{tag}", f"callee-{tag}"):
        providers[service] = TracerProvider(resource=Resource.create({"service.name": service}))
        providers[service].add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True, timeout=10)))
    caller, callee = (providers[s].get_tracer("t") for s in providers)
    try:
        with caller.start_as_current_span("request") as request:
            headers: dict[str, str] = {}
            propagate.inject(headers)  # as an HTTP client (or the connector's gRPC metadata) sends it
        assert headers["traceparent"].split("-")[1] == f"{request.get_span_context().trace_id:032x}"
        with callee.start_as_current_span("handle", context=propagate.extract(headers)):
            with callee.start_as_current_span("work"):
                pass
    finally:
        for provider in providers.values():
            provider.shutdown()
    trace_id = f"{request.get_span_context().trace_id:032x}"
    wait_until(lambda: len(jaeger.traces(f"callee-{tag}")) == 1 and len(spans_from_jaeger(jaeger.trace(trace_id))) == 3,
               timeout=15, what="the joined trace")
    assert [t["traceID"].rjust(32, "0") for t in jaeger.traces(f"caller-{tag}")] == [trace_id]
    spans = {s.name: s for s in spans_from_jaeger(jaeger.trace(trace_id))}
    assert [a.name for a in ancestors(spans["work"], spans.values())] == ["handle", "request"]
    assert (spans["request"].service, spans["handle"].service) == (f"caller-{tag}", f"callee-{tag}")
