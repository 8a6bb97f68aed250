"""One trace from the application to the forward pass (issue #22): an application span (service `app`)
searches through the real proxy, which asks a real OpenSearch node and reranks with a real sidecar,
all three exporting OTLP to a real Jaeger. Jaeger's query API must return ONE trace holding the
application's, the proxy's and the sidecar's spans, nested proxy -> search -> sidecar -> rerank -> forward,
and no query or document text in any attribute (off unless the operator turns it on).

The span names and the switches (RESCORE_TRACING=1 plus the standard OTEL_* variables) are the
tracing code's contract; the test skips until that code (rescore_sidecar.connectors.tracing) exists.
"""
from __future__ import annotations

import importlib.util
import json

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra")
pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc", reason="needs the otel extra")

from opentelemetry import propagate  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402

from rescore_sidecar.tools.jaeger import JaegerError  # noqa: E402
from rescore_sidecar.tools.proxy_process import proxy_process  # noqa: E402
from rescore_sidecar.tools.sidecar_process import sidecar_process  # noqa: E402
from rescore_sidecar.tools.waiting import wait_until  # noqa: E402
from tests.support.otlp import Span, ancestors, spans_from_jaeger  # noqa: E402

try:
    _TRACING = importlib.util.find_spec("rescore_sidecar.connectors.tracing") is not None
except ModuleNotFoundError:
    _TRACING = False

pytestmark = [
    pytest.mark.skipif(not _TRACING, reason="the tracing code (rescore_sidecar.connectors.tracing) is not present"),
    pytest.mark.timeout(1800),  # a cold machine builds Jaeger in the fixture first (minutes, once)
]

SPAN_NAMES = {"rescore.proxy", "rescore.search", "rescore.engine", "rescore.sidecar", "rescore.rerank",
              "rescore.queue", "rescore.tokenize", "rescore.forward"}
NESTING = ["rescore.proxy", "rescore.search", "rescore.sidecar", "rescore.rerank", "rescore.forward"]
# Words only the query and the documents contain: no span attribute may carry them.
QUERY_WORD, DOC_WORD = "zebrafinch", "quokkaberry"


def _tracing_env(jaeger, service: str) -> dict[str, str]:
    return {"RESCORE_TRACING": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_grpc_endpoint,
            "OTEL_SERVICE_NAME": service, "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100"}  # the SDK's batch processor exports within 0.1 s, not 5 s


@pytest.fixture(scope="module")
def corpus(opensearch_node) -> str:
    idx = "tracing-live"
    lines = "".join(json.dumps({"index": {"_index": idx, "_id": str(i)}}) + "\n"
                    + json.dumps({"title": f"doc {i}", "body": f"{QUERY_WORD} {DOC_WORD} {'river ' * i}"}) + "\n"
                    for i in range(12))
    httpx.delete(f"{opensearch_node.url}/{idx}")
    reply = httpx.post(f"{opensearch_node.url}/_bulk?refresh=true", content=lines,
                       headers={"Content-Type": "application/x-ndjson"}, timeout=60)
    assert reply.status_code == 200 and not reply.json()["errors"], reply.text
    return idx


def _app_search(jaeger, url: str) -> tuple[httpx.Response, str]:
    """The application: its own span (service `app`), its context sent on as `traceparent`."""
    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=jaeger.otlp_grpc_endpoint,
                                                                     insecure=True, timeout=10)))
    try:
        with provider.get_tracer("app").start_as_current_span("app.search") as span:
            headers: dict[str, str] = {}
            propagate.inject(headers)
            reply = httpx.post(url, json={"query": {"match": {"body": QUERY_WORD}}, "size": 10},
                               headers=headers, timeout=60)
    finally:
        provider.shutdown()
    return reply, f"{span.get_span_context().trace_id:032x}"


def test_one_trace_from_the_application_to_the_forward_pass(jaeger, opensearch_node, corpus, tiny_cross_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder}, env=_tracing_env(jaeger, "rescore-sidecar")) as sidecar, \
            proxy_process(opensearch_node.url, "--sidecar", sidecar.address,
                          "--rescore", json.dumps({"window": 10, "fields": ["title", "body"]}),
                          env=_tracing_env(jaeger, "rescore-proxy")) as proxy:
        reply, trace_id = _app_search(jaeger, f"{proxy.url}/{corpus}/_search")
        assert reply.status_code == 200 and reply.headers["x-rescore"] == "reranked", reply.text

        def stored() -> list[Span]:
            try:
                return spans_from_jaeger(jaeger.trace(trace_id))
            except (JaegerError, OSError, ValueError):  # not stored yet (404)
                return []

        def complete() -> list[Span]:
            spans = stored()
            return spans if SPAN_NAMES <= {s.name for s in spans} else []

        try:
            wait_until(complete, timeout=30, what=f"trace {trace_id} with every span")
        except TimeoutError:
            got = sorted({(s.service, s.name) for s in stored()})
            pytest.fail(f"trace {trace_id} incomplete in jaeger: {got}\nproxy log:\n{proxy.log_text()[-2000:]}"
                        f"\nsidecar log:\n{sidecar.log_tail()}")
        spans = complete()

    traces = jaeger.traces("app")
    assert [t["traceID"].rjust(32, "0") for t in traces] == [trace_id], "the application's search is ONE trace"
    services = {s.service for s in spans}
    assert {"app", "rescore-proxy", "rescore-sidecar"} <= services, services
    assert all(s.trace_id == trace_id for s in spans)

    def one(name: str) -> Span:
        found = [s for s in spans if s.name == name]
        assert found, f"no {name} span"
        return found[0]

    root = one("app.search")
    assert root.parent_id == "" and root.service == "app"
    assert root in ancestors(one("rescore.proxy"), spans)
    for outer, inner in zip(NESTING, NESTING[1:]):
        assert one(outer) in ancestors(one(inner), spans), f"{inner} is not inside {outer}"
    assert one("rescore.search") in ancestors(one("rescore.engine"), spans)
    for name in ("rescore.queue", "rescore.tokenize"):
        assert one("rescore.sidecar") in ancestors(one(name), spans), f"{name} is not inside rescore.sidecar"
    assert one("rescore.proxy").service == "rescore-proxy" and one("rescore.rerank").service == "rescore-sidecar"

    leaked = [(s.name, k) for s in spans for k, v in s.attributes.items()
              if QUERY_WORD in str(v) or DOC_WORD in str(v)]
    assert not leaked, f"query or document text in span attributes: {leaked}"
