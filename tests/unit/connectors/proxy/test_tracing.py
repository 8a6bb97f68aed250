"""The proxy's spans and request log: rescore.proxy continues the client's `traceparent`, the
connector's rescore.search / rescore.engine / rescore.sidecar run inside it, and the engine and the
sidecar each receive the span that called them as their parent (engine and sidecar stand-ins as in
test_search.py)."""
from __future__ import annotations

import json

from rescore_sidecar.connectors import logs, tracing
from rescore_sidecar.connectors.proxy.app import stop
from rescore_sidecar.connectors.testing import Fault, MockSidecar
from tests.support.spans import head, is_child, one, traceparent_of
from tests.unit.connectors.proxy.test_search import _start, by_number, client, engine  # noqa: F401 - fixtures

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
INCOMING = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
QUERY = {"query": {"match": {"text": "doc"}}, "size": 3}


async def test_search_continues_the_clients_trace_through_engine_and_sidecar(spans, engine, client):
    mock = MockSidecar(by_number)
    runner, state, url = await _start(engine, mock)
    try:
        async with client.post(url + "/i/_search", json=QUERY, headers=INCOMING) as r:
            assert r.status == 200 and r.headers["X-Rescore"] == "reranked"
    finally:
        await stop(runner, state)
    proxy, search = one(spans, tracing.PROXY), one(spans, tracing.SEARCH)
    engine_span, sidecar = one(spans, tracing.ENGINE), one(spans, tracing.SIDECAR)
    assert f"{proxy.context.trace_id:032x}" == TRACE and f"{proxy.parent.span_id:016x}" == PARENT
    assert proxy.kind.name == "SERVER" and proxy.parent.is_remote
    assert is_child(search, proxy) and is_child(engine_span, search) and is_child(sidecar, search)
    assert head(engine.seen[-1]["headers"]["traceparent"]) == traceparent_of(engine_span)  # not the client's
    assert head(dict(mock.calls[-1].metadata)["traceparent"]) == traceparent_of(sidecar)
    assert proxy.attributes["rescore.route"] == "search" and proxy.attributes["rescore.outcome"] == "reranked"
    assert proxy.attributes["http.response.status_code"] == 200
    assert search.attributes["rescore.window"] == 5 and search.attributes["rescore.outcome"] == "reranked"


async def test_fallback_reason_and_json_request_line(spans, engine, client, capsys):
    runner, state, url = await _start(engine, MockSidecar.script(Fault.overloaded()))
    logs.configure("INFO", "json")
    try:
        async with client.post(url + "/i/_search", json=QUERY, headers=INCOMING) as r:
            assert r.headers["X-Rescore"] == "fallback"
    finally:
        logs.configure("WARNING", "text")
        await stop(runner, state)
    search, proxy = one(spans, tracing.SEARCH), one(spans, tracing.PROXY)
    assert search.attributes["rescore.fallback_reason"] == "overloaded"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == logs.REQUEST_LOGGER]
    assert len(requests) == 1
    line = requests[0]
    assert (line["trace_id"], line["span_id"]) == (TRACE, f"{proxy.context.span_id:016x}")
    assert (line["route"], line["status"], line["outcome"], line["path"]) == ("search", 200, "fallback", "/i/_search")
    assert line["took_ms"] >= line["added_ms"] >= 0


async def test_passthrough_requests_get_a_proxy_span_and_pass_it_on(spans, engine, client):
    runner, state, url = await _start(engine, MockSidecar(by_number))
    try:
        async with client.get(url + "/_cat/indices", headers=INCOMING) as r:
            await r.read()
        async with client.get(url + "/_rescore/health", headers=INCOMING) as r:  # probes: no span
            assert r.status == 200
    finally:
        await stop(runner, state)
    proxy = one(spans, tracing.PROXY)
    assert f"{proxy.context.trace_id:032x}" == TRACE and proxy.attributes["rescore.route"] == "other"
    assert head(engine.seen[-1]["headers"]["traceparent"]) == traceparent_of(proxy)
    assert not [s for s in spans.get_finished_spans() if s.name == tracing.SEARCH]


async def test_tracing_off_forwards_the_clients_traceparent_untouched(engine, client):
    tracing.reset()
    runner, state, url = await _start(engine, MockSidecar(by_number))
    try:
        tracing.setup("rescore-proxy", enabled=False)  # as the proxy does with tracing off
        async with client.get(url + "/_cat/indices", headers=INCOMING) as r:
            await r.read()
    finally:
        tracing.reset()
        await stop(runner, state)
    assert engine.seen[-1]["headers"]["traceparent"] == INCOMING["traceparent"]
