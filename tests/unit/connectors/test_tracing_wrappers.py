"""Spans of the sync and async wrappers (stand-in engine clients, `MockSidecar` under the real
clients): rescore.search under the application's span with rescore.engine and rescore.sidecar
inside, their attributes, and `traceparent` handed to the engine call and the sidecar call."""
from __future__ import annotations

from rescore_sidecar.connectors import (AsyncRescorer, AsyncRescoringOpenSearch, AsyncSidecarClient, ConnectorConfig,
                                        RerankOptions, Rescorer, RescoringElasticsearch, RescoringOpenSearch,
                                        SidecarClient, SidecarClientConfig, tracing)
from rescore_sidecar.connectors.testing import Fault, MockSidecar
from tests.support.spans import head, is_child, named, one, traceparent_of

CONFIG = ConnectorConfig(default=RerankOptions(window=3, fields=("text",), policy="replace"),
                         sidecar=SidecarClientConfig(targets=("a:1",)))
HITS = {"hits": {"max_score": 3.0, "hits": [{"_id": str(i), "_score": 3.0 - i, "_source": {"text": f"fox {i}"}}
                                            for i in range(3)]}}
QUERY = {"query": {"match": {"text": "fox"}}}


class Engine:
    """opensearch-py's search/msearch signatures; remembers the headers it was given."""

    def __init__(self):
        self.headers = []

    def search(self, *, body=None, index=None, params=None, headers=None):
        self.headers.append(headers)
        return HITS

    def msearch(self, *, body=None, index=None, params=None, headers=None):
        self.headers.append(headers)
        return {"responses": [HITS for _ in body[1::2]]}


class AsyncEngine(Engine):
    async def search(self, **kw):
        return Engine.search(self, **kw)


def _traceparent(headers_or_metadata) -> str:
    return head(dict(headers_or_metadata)["traceparent"])


def _check_search_tree(spans, app, engine_headers, mock):
    search, engine, sidecar = one(spans, tracing.SEARCH), one(spans, tracing.ENGINE), one(spans, tracing.SIDECAR)
    assert is_child(search, app) and is_child(engine, search) and is_child(sidecar, search)
    assert engine.end_time <= sidecar.start_time  # the engine answers before the sidecar is asked
    # Each remote call carries its own span as the parent of what the other side does.
    assert _traceparent(engine_headers) == traceparent_of(engine)
    assert _traceparent(mock.calls[-1].metadata) == traceparent_of(sidecar)
    return search, sidecar


def test_sync_search_spans_attributes_and_propagation(spans):
    engine, mock = Engine(), MockSidecar()
    client = RescoringOpenSearch(engine, CONFIG, rescorer=Rescorer(CONFIG, sidecar=SidecarClient(
        CONFIG.sidecar, transport=mock)))
    app_tracer = spans  # the application's own span around the search
    with tracing.span("app") as app:
        client.search(index="docs", body=QUERY, headers={"x-opaque-id": "42"})
    app = one(app_tracer, "app")
    assert engine.headers[0]["x-opaque-id"] == "42"  # the caller's headers kept, traceparent added
    search, sidecar = _check_search_tree(spans, app, engine.headers[0], mock)
    assert {k: search.attributes[k] for k in ("rescore.policy", "rescore.window", "rescore.outcome")} == {
        "rescore.policy": "replace", "rescore.window": 3, "rescore.outcome": "reranked"}
    assert "rescore.fallback_reason" not in search.attributes
    assert sidecar.attributes["rescore.endpoint"] == "a:1" and sidecar.attributes["rescore.retries"] == 0
    assert sidecar.attributes["rescore.documents"] == 3
    texts = [str(v) for s in spans.get_finished_spans() for v in s.attributes.values()]
    assert not [t for t in texts if "fox" in t]  # no query or document text in any span


async def test_async_search_falls_back_after_a_retry_and_says_why(spans):
    config = ConnectorConfig(default=CONFIG.default, sidecar=SidecarClientConfig(targets=("a:1", "b:1")))
    engine, mock = AsyncEngine(), MockSidecar.script(Fault.unavailable())
    client = AsyncRescoringOpenSearch(engine, config, rescorer=AsyncRescorer(config, sidecar=AsyncSidecarClient(
        config.sidecar, transport=mock)))
    with tracing.span("app"):
        out = await client.search(body=QUERY)
    assert out["_rescore"]["fallback"] == "unavailable"
    search, sidecar = _check_search_tree(spans, one(spans, "app"), engine.headers[0], mock)
    assert search.attributes["rescore.outcome"] == "fallback"
    assert search.attributes["rescore.fallback_reason"] == "unavailable"
    assert sidecar.attributes["rescore.retries"] == 1 and len(mock.calls) == 2
    assert sidecar.status.status_code.name == "ERROR"
    assert {c.address for c in mock.calls} == {"a:1", "b:1"}
    assert all(_traceparent(c.metadata) == traceparent_of(sidecar) for c in mock.calls)  # both attempts


def test_sync_msearch_runs_each_sidecar_call_in_the_search_span(spans):
    engine, mock = Engine(), MockSidecar()
    client = RescoringOpenSearch(engine, CONFIG, rescorer=Rescorer(CONFIG, sidecar=SidecarClient(
        CONFIG.sidecar, transport=mock)))
    client.msearch(body=[{}, QUERY, {}, QUERY])  # two sidecar calls, on threads
    search = one(spans, tracing.SEARCH)
    calls = named(spans, tracing.SIDECAR)
    assert len(calls) == 2 and all(is_child(c, search) for c in calls)
    assert sorted(_traceparent(c.metadata) for c in mock.calls) == sorted(traceparent_of(c) for c in calls)
    assert search.attributes["rescore.searches"] == 2


def test_elasticsearch_engine_call_gets_traceparent_through_options(spans):
    class Es:
        def __init__(self):
            self.options_headers = []

        def options(self, headers):
            self.options_headers.append(headers)
            return self

        def search(self, **kw):
            return HITS

    es = Es()
    client = RescoringElasticsearch(es, CONFIG, rescorer=Rescorer(CONFIG, sidecar=SidecarClient(
        CONFIG.sidecar, transport=MockSidecar())))
    client.search(index="docs", query={"match": {"text": "fox"}})
    assert [head(h["traceparent"]) for h in es.options_headers] == [traceparent_of(one(spans, tracing.ENGINE))]


def test_without_a_recording_span_nothing_is_added(spans):
    tracing.reset()  # the API without a provider: non-recording spans, as in an application with no tracing
    engine, mock = Engine(), MockSidecar()
    RescoringOpenSearch(engine, CONFIG, rescorer=Rescorer(CONFIG, sidecar=SidecarClient(
        CONFIG.sidecar, transport=mock))).search(body=QUERY)
    assert engine.headers == [None] and mock.calls[0].metadata == ()
    assert spans.get_finished_spans() == ()


def test_sampled_out_searches_make_no_child_spans_and_say_so_downstream():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    exporter, provider = InMemorySpanExporter(), TracerProvider(sampler=TraceIdRatioBased(0.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        engine, mock = Engine(), MockSidecar()
        RescoringOpenSearch(engine, CONFIG, rescorer=Rescorer(CONFIG, sidecar=SidecarClient(
            CONFIG.sidecar, transport=mock))).search(body=QUERY)
        assert tracing.span(tracing.ENGINE) is not tracing.NULL_SPAN  # no current span: a root, the sampler decides
        with tracing.span(tracing.SEARCH):
            assert tracing.span(tracing.ENGINE) is tracing.NULL_SPAN  # under an unsampled one: none
    finally:
        tracing.reset()
        provider.shutdown()
    assert exporter.get_finished_spans() == ()
    # The search span's context still goes out, flagged "not sampled", so the sidecar does not sample either.
    engine_parent, sidecar_parent = engine.headers[0]["traceparent"], dict(mock.calls[0].metadata)["traceparent"]
    assert engine_parent == sidecar_parent and int(engine_parent.rsplit("-", 1)[1], 16) & 1 == 0  # sampled bit off
