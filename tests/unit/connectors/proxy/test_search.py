"""Search handling of the proxy: toggles, marks, fallback, engine errors, msearch.

The upstream is a local aiohttp server answering searches like an engine would (hits in a fixed
order, honouring from/size); the sidecar is `MockSidecar` under the real async client (budget,
breaker and fallback as in production), its scores chosen so that the expected order differs from
the engine's.
The real-engine, real-sidecar versions of these are in tests/integration/test_proxy_*.py.
"""
from __future__ import annotations

import gzip
import json
import socket

import aiohttp
import pytest
from aiohttp import web

from rescore_sidecar.connectors.proxy.app import start, stop
from rescore_sidecar.connectors.proxy.config import ProxyConfig
from rescore_sidecar.connectors._async.rescoring import AsyncRescorer
from rescore_sidecar.connectors._async.client import AsyncSidecarClient
from rescore_sidecar.connectors.testing import Delay, MockSidecar

DOCS = [{"_index": "i", "_id": str(n), "_score": 10.0 - n, "_source": {"text": f"doc {n}", "n": n}}
        for n in range(8)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def search(self, body: dict) -> dict:
        start, size = body.get("from", 0), body.get("size", 10)
        hits = [dict(h) for h in DOCS[start:start + size]]
        return {"took": 1, "timed_out": False, "hits": {"total": {"value": len(DOCS), "relation": "eq"},
                                                        "max_score": 10.0, "hits": hits}}

    async def handle(self, request: web.BaseRequest) -> web.Response:
        raw = await request.content.read()
        self.seen.append({"target": request.raw_path, "headers": dict(request.headers), "body": raw})
        path = request.raw_path.partition("?")[0]
        try:
            if path.endswith("/_msearch"):
                lines = [json.loads(x) for x in raw.splitlines() if x.strip()]
                out = {"took": 1, "responses": [self.search(b) for b in lines[1::2]]}
            else:
                body = json.loads(raw) if raw else {}
                if body.get("query") == {"bad": {}}:
                    return web.Response(status=400, content_type="application/json",
                                        body=b'{"error":{"type":"parsing_exception"},"status":400}')
                out = self.search(body)
        except (ValueError, RecursionError):
            return web.Response(status=400, content_type="application/json",
                                body=b'{"error":{"type":"x_content_parse_exception"},"status":400}')
        return web.Response(body=json.dumps(out).encode(), content_type="application/json",
                            headers={"X-Elastic-Product": "Elasticsearch"})


def by_number(address, query, texts):
    """The model prefers higher `n` ("doc n"), the engine lower."""
    return [float(text.split()[-1]) for text in texts]


@pytest.fixture
async def engine():
    recorder = Engine()
    runner = web.ServerRunner(web.Server(recorder.handle, auto_decompress=False))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


@pytest.fixture
def sidecar():
    """The real async sidecar client over a scripted transport (`connectors.testing.MockSidecar`)."""
    return MockSidecar(by_number)


async def _start(engine, sidecar, **overrides):
    config = ProxyConfig(upstreams=(engine.url,), listen="127.0.0.1:0", sidecars=("127.0.0.1:1",),
                         rescore={"window": 5}, **overrides)
    runner, state, port = await start(config, host="127.0.0.1", port=0)
    await state.rescorer.close()
    connector = config.connector_config()
    state.rescorer = AsyncRescorer(connector, sidecar=AsyncSidecarClient(connector.sidecar, transport=sidecar))
    return runner, state, f"http://127.0.0.1:{port}"


@pytest.fixture
async def proxy(engine, sidecar):
    runner, state, url = await _start(engine, sidecar)
    yield url
    await stop(runner, state)


@pytest.fixture
async def client():
    async with aiohttp.ClientSession() as session:
        yield session


QUERY = {"query": {"match": {"text": "doc"}}, "size": 3}


async def test_search_is_reranked_and_marked(engine, proxy, client):
    async with client.post(proxy + "/i/_search", json=QUERY) as r:
        assert r.status == 200
        assert r.headers["X-Rescore"] == "reranked"
        assert r.headers["X-Elastic-Product"] == "Elasticsearch"
        body = await r.json()
    # The window (5) went to the engine from offset 0; the model prefers higher n.
    sent = json.loads(engine.seen[-1]["body"])
    assert sent["size"] == 5 and sent["from"] == 0
    assert [h["_id"] for h in body["hits"]["hits"]] == ["4", "3", "2"]
    assert body["_rescore"]["reranked"] is True


async def test_url_from_and_size_are_honoured(engine, proxy, client):
    async with client.post(proxy + "/i/_search?from=1&size=2&rescore=on",
                           json={"query": {"match": {"text": "doc"}}}) as r:
        body = await r.json()
    assert [h["_id"] for h in body["hits"]["hits"]] == ["3", "2"]
    target = engine.seen[-1]["target"]
    assert "from=" not in target and "size=" not in target and "rescore" not in target


async def test_toggles_are_stripped_and_off_passes_through(engine, proxy, client):
    async with client.post(proxy + "/i/_search?rescore=off&pretty", json=QUERY,
                           headers={"X-Rescore": "on"}) as r:
        assert r.headers["X-Rescore"] == "off"
        body = await r.json()
    assert [h["_id"] for h in body["hits"]["hits"]] == ["0", "1", "2"]
    assert "_rescore" not in body
    seen = engine.seen[-1]
    assert seen["target"] == "/i/_search?pretty"
    assert "X-Rescore" not in seen["headers"]
    # Body section (most specific) beats the header; removed before the engine sees it.
    async with client.post(proxy + "/i/_search", json={**QUERY, "rescore_sidecar": {"enabled": False}},
                           headers={"X-Rescore": "on"}) as r:
        assert r.headers["X-Rescore"] == "off"
    assert b"rescore_sidecar" not in engine.seen[-1]["body"]
    async with client.post(proxy + "/i/_search", json={**QUERY, "rescore_sidecar": {"window": 3}},
                           headers={"X-Rescore": "off"}) as r:
        assert r.headers["X-Rescore"] == "reranked"
    assert json.loads(engine.seen[-1]["body"])["size"] == 3


def _fallbacks(text: str, reason: str) -> float:
    line = f'rescore_connector_fallbacks_total{{reason="{reason}"}} '
    return sum(float(x[len(line):]) for x in text.splitlines() if x.startswith(line))


async def test_sidecar_failure_falls_back_to_engine_order(engine, sidecar, proxy, client):
    async with client.get(proxy + "/_rescore/metrics") as r:
        before = _fallbacks(await r.text(), "timeout")
    sidecar.handler = lambda *call: Delay(5.0)  # longer than the budget
    async with client.post(proxy + "/i/_search", json=QUERY) as r:
        assert r.status == 200
        assert r.headers["X-Rescore"] == "fallback"
        assert r.headers["X-Rescore-Fallback"] == "timeout"
        body = await r.json()
    assert [h["_id"] for h in body["hits"]["hits"]] == ["0", "1", "2"]
    async with client.get(proxy + "/_rescore/metrics") as r:
        text = await r.text()
    assert _fallbacks(text, "timeout") == before + 1  # one counter, counted once
    assert "rescore_proxy_fallbacks" not in text


async def test_engine_errors_and_bad_json_reach_the_client_as_sent(engine, proxy, client):
    async with client.post(proxy + "/i/_search", json={"query": {"bad": {}}}) as r:
        assert r.status == 400
        assert await r.read() == b'{"error":{"type":"parsing_exception"},"status":400}'
    async with client.post(proxy + "/i/_search", data=b'{"query": ',
                           headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["type"] == "x_content_parse_exception"
    assert engine.seen[-1]["body"] == b'{"query": '


async def test_deeply_nested_bodies_reach_the_engine_as_sent(engine, sidecar, client):
    # With the depth guard off (max_json_depth=0): the engine judges them, never a proxy crash.
    runner, state, proxy = await _start(engine, sidecar, max_json_depth=0)
    try:
        # Deep but readable: a search without query text, sent on (re-serialized) and answered.
        data = b'{"query": ' + b'{"bool": {"must": [' * 300 + b"{}" + b"]}}" * 300 + b"}"
        async with client.post(proxy + "/i/_search", data=data, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200
            assert (r.headers["X-Rescore"], r.headers["X-Rescore-Skipped"]) == ("off", "no_query_text")
            assert len((await r.json())["hits"]["hits"]) == 8
        assert json.loads(engine.seen[-1]["body"]) == json.loads(data)
        # Past the proxy's parser: forwarded byte for byte, the engine's own 400 comes back.
        data = b'{"query": ' + b'{"bool": {"must": [' * 5000 + b"{}" + b"]}}" * 5000 + b"}"
        async with client.post(proxy + "/i/_search", data=data, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and r.headers["X-Rescore"] == "off"
            assert (await r.json())["error"]["type"] == "x_content_parse_exception"
        assert engine.seen[-1]["body"] == data
    finally:
        await stop(runner, state)


async def test_bodies_nested_past_max_json_depth_are_a_400_that_never_reaches_the_engine(engine, proxy, client):
    # (OpenSearch 2.19 exits on a StackOverflowError for a bool query ~350 levels deep.)
    before = len(engine.seen)
    for data in (b'{"query": ' + b'{"bool": {"must": [' * 70 + b"{}" + b"]}}" * 70 + b"}",
                 b"{}\n" + b"[" * 201 + b"]" * 201 + b"\n"):
        async with client.post(proxy + "/i/_search", data=data,
                               headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["error"]["type"] == "proxy_json_too_deep"
    # Brackets inside strings do not count.
    async with client.post(proxy + "/i/_search", json={"query": {"match": {"text": "[" * 500}}}) as r:
        assert r.status == 200
    assert len(engine.seen) == before + 1


async def test_bad_toggle_is_a_clear_400_that_never_reaches_the_engine(engine, proxy, client):
    before = len(engine.seen)
    for kwargs in ({"headers": {"X-Rescore": "maybe"}}, {"params": {"rescore": "{nope"}},
                   {"json": {**QUERY, "rescore_sidecar": {"windw": 3}}}):
        kwargs.setdefault("json", QUERY)
        async with client.post(proxy + "/i/_search", **kwargs) as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "rescore_toggle_exception"
    assert len(engine.seen) == before


async def test_gzip_search_body_is_read_and_get_without_body_works(engine, proxy, client):
    data = gzip.compress(json.dumps({**QUERY, "rescore_sidecar": "on"}).encode())
    async with client.post(proxy + "/i/_search", data=data,
                           headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}) as r:
        assert r.headers["X-Rescore"] == "reranked"
        assert len((await r.json())["hits"]["hits"]) == 3
    assert "Content-Encoding" not in engine.seen[-1]["headers"]
    # No query text to rerank with: sent as is, marked off with the reason.
    async with client.get(proxy + "/_search") as r:
        assert r.status == 200
        assert r.headers["X-Rescore"] == "off"
        assert r.headers["X-Rescore-Skipped"] == "no_query_text"


async def test_msearch_reranks_each_search(engine, proxy, client):
    lines = [{"index": "i"}, QUERY, {}, {**QUERY, "size": 2}]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    async with client.post(proxy + "/_msearch", data=data,
                           headers={"Content-Type": "application/x-ndjson"}) as r:
        assert r.headers["X-Rescore"] == "reranked"
        body = await r.json()
    assert [[h["_id"] for h in x["hits"]["hits"]] for x in body["responses"]] == [["4", "3", "2"], ["4", "3"]]
    assert all(x["_rescore"]["reranked"] for x in body["responses"])


async def test_ab_arms_by_key(engine, sidecar, client):
    arms = ({"name": "model", "weight": 1, "options": {"window": 4}},
            {"name": "control", "weight": 1, "options": None})
    runner, state, url = await _start(engine, sidecar, arms=arms)
    try:
        seen = {}
        for key in (f"user-{i}" for i in range(20)):
            async with client.post(url + "/i/_search", json=QUERY, headers={"X-Rescore-Key": key}) as r:
                seen.setdefault(r.headers["X-Rescore-Arm"], set()).add(r.headers["X-Rescore"])
            # Same key, same arm.
            async with client.post(url + "/i/_search", json=QUERY, headers={"X-Rescore-Key": key}) as r2:
                assert r2.headers["X-Rescore-Arm"] == r.headers["X-Rescore-Arm"]
        assert seen == {"model": {"reranked"}, "control": {"off"}}
        assert "X-Rescore-Key" not in engine.seen[-1]["headers"]
    finally:
        await stop(runner, state)


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_proxy_reports_the_same_window_fields_and_bends_alike(engine, client):
    """Brownout and selective run in the proxy as in the wrappers: same `_rescore` fields, plus a
    header; the window shrinks under the sidecar's reported queue wait (fake clock)."""
    from rescore_sidecar.connectors._core.brownout import Brownout

    mock = MockSidecar(by_number, queue_ms=1000.0)
    config = ProxyConfig(upstreams=(engine.url,), listen="127.0.0.1:0", sidecars=("127.0.0.1:1",),
                         rescore={"window": 5, "window_steps": [3, 2]})
    runner, state, port = await start(config, host="127.0.0.1", port=0)
    await state.rescorer.close()
    connector, clock = config.connector_config(), _Clock()
    state.rescorer = AsyncRescorer(connector, sidecar=AsyncSidecarClient(connector.sidecar, transport=mock),
                                   brownout=Brownout(connector, clock=clock))
    url = f"http://127.0.0.1:{port}/i/_search"
    try:
        marks = []
        for advance in (0, 0, 0, 1):
            clock.now += advance
            async with client.post(url, json=QUERY) as r:
                marks.append((r.headers["X-Rescore-Window"], (await r.json())["_rescore"]))
        # One call at 4x the budget in queue wait shrinks at once; the next step only after the 1 s hold.
        assert [h for h, _ in marks] == ["5", "3; reason=queue", "3; reason=queue", "3; reason=queue"]
        assert marks[2][1]["window"] == 3 and marks[2][1]["window_reason"] == "queue"
        assert [len(c.texts) for c in mock.calls] == [5, 3, 3, 3]
        async with client.post(url, json=QUERY) as r:
            assert r.headers["X-Rescore-Window"] == "2; reason=queue"
        # Pinned by the client's toggle: honoured.
        async with client.post(url + "?rescore=" + '{"window":5,"adaptive":false}', json=QUERY) as r:
            assert r.headers["X-Rescore-Window"] == "5; reason=pinned"
        # Selective: DOCS are evenly spaced (gap 1/4 of the window's range): skipped at 0.2.
        calls = len(mock.calls)
        async with client.post(url, json={**QUERY, "rescore_sidecar": {"selective_threshold": 0.2}}) as r:
            assert (r.headers["X-Rescore"], r.headers["X-Rescore-Skipped"]) == ("off", "confident")
            assert (await r.json())["_rescore"]["skipped"] == "confident"
        assert len(mock.calls) == calls
    finally:
        await stop(runner, state)


def test_bad_window_settings_stop_the_proxy_at_start():
    from rescore_sidecar.connectors.proxy.config import ConfigError, load_config

    for rescore, message in (('{"window_floor": -1}', "floor"), ('{"window_steps": [10, 30]}', "decreasing")):
        with pytest.raises(ConfigError, match=message):
            load_config(["--upstream", "http://a", "--rescore", rescore], {})
