"""Pass-through behaviour of the proxy against a local aiohttp upstream that records what it got.

The upstream is a real HTTP server on loopback; these tests pin down the byte-level edge cases
(headers, encodings, chunking, HEAD, limits, failover) that the engine tests cannot provoke.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from rescore_sidecar.connectors.proxy.app import start, stop
from rescore_sidecar.connectors.proxy.config import ProxyConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """Records every request; answers by path."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.content.read()  # no 1 MiB cap, unlike request.read()
        self.seen.append({"method": request.method, "target": request.raw_path,
                          "headers": list(request.headers.items()), "body": raw})
        path = request.raw_path.partition("?")[0]
        if path == "/gzip":
            data = gzip.compress(b'{"compressed": true}')
            return web.Response(body=data, headers={"Content-Encoding": "gzip",
                                                    "Content-Type": "application/json"})
        if path == "/chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for i in range(200):
                await response.write(b'{"line": %d, "pad": "%s"}\n' % (i, b"x" * 20000))
            await response.write_eof()
            return response
        if path == "/cut":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b"partial" * 10000)
            request.transport.close()
            return response
        if path == "/big":
            return web.Response(body=b"z" * (3 * 1024 * 1024), content_type="application/octet-stream")
        if path == "/hop":
            return web.Response(body=b"{}", headers={"Content-Type": "application/json",
                                                     "Connection": "keep-alive, X-Private",
                                                     "X-Private": "secret", "Keep-Alive": "timeout=5",
                                                     "X-Kept": "yes"})
        if path == "/missing":
            return web.Response(status=404, body=b'{"error":"not here","status":404}',
                                headers={"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"})
        summary = {"method": request.method, "target": request.raw_path,
                   "sha256": hashlib.sha256(raw).hexdigest(), "length": len(raw)}
        return web.Response(status=201 if request.method == "PUT" else 200,
                            body=json.dumps(summary).encode(),
                            headers={"Content-Type": "application/json; charset=UTF-8",
                                     "X-Custom": "a", "Warning": '299 Elasticsearch "deprecated"'})


@pytest.fixture
async def upstream():
    recorder = Upstream()
    server = web.Server(recorder.handle, auto_decompress=False)
    runner = web.ServerRunner(server)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


async def _proxy(config: ProxyConfig):
    runner, state, port = await start(config, host="127.0.0.1", port=0)
    return runner, state, f"http://127.0.0.1:{port}"


@pytest.fixture
async def proxy(upstream):
    runner, state, url = await _proxy(ProxyConfig(upstreams=(upstream.url,), listen="127.0.0.1:0",
                                                  max_request_bytes=8 * 1024 * 1024))
    yield url
    await stop(runner, state)


@pytest.fixture
async def client():
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def test_method_target_headers_and_body_reach_the_upstream_unchanged(upstream, proxy, client):
    body = json.dumps({"title": "ünïcode", "n": 1}).encode()
    target = "/my-index/_doc/1?refresh=true&routing=a%2Fb&q=x+y&flag"
    async with client.put(URL(proxy + target, encoded=True), data=body, headers={
            "Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json",
            "X-Opaque-Id": "abc"}) as r:
        assert r.status == 201
        got = await r.json()
        assert r.headers["X-Custom"] == "a"
        assert r.headers["Warning"] == '299 Elasticsearch "deprecated"'
        assert r.headers["Content-Type"] == "application/json; charset=UTF-8"
    seen = upstream.seen[-1]
    assert got["target"] == target and seen["target"] == target
    assert seen["body"] == body
    headers = dict(seen["headers"])
    assert headers["Authorization"] == "Basic dXNlcjpwYXNz"
    assert headers["X-Opaque-Id"] == "abc"
    assert headers["Content-Type"] == "application/json"


async def test_no_headers_are_invented_for_the_upstream(upstream, proxy):
    # Raw socket request so no client library adds anything either.
    host, port = proxy.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /plain HTTP/1.1\r\nHost: x\r\nX-Only: 1\r\nConnection: close\r\n\r\n")
    await reader.read()
    writer.close()
    names = {k.lower() for k, _ in upstream.seen[-1]["headers"]}
    assert names == {"host", "x-only"}


async def test_expect_100_continue_is_answered_by_the_proxy(upstream, proxy):
    host, port = proxy.removeprefix("http://").split(":")
    for path in ("/_bulk", "/i/_search"):
        reader, writer = await asyncio.open_connection(host, int(port))
        body = b'{"query": {"match_all": {}}}'
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
                     % (path.encode(), len(body)))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(body)
        final = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert final.startswith(b"HTTP/1.1 200")
        assert upstream.seen[-1]["body"] == body
        assert "expect" not in {k.lower() for k, _ in upstream.seen[-1]["headers"]}
    # Too large: 413 at once, no 100.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /_bulk HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the server lingers to drain
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413")


async def test_hop_by_hop_headers_are_dropped_both_ways(upstream, proxy, client):
    async with client.get(proxy + "/hop", headers={"Connection": "X-Secret-Hop",
                                                   "X-Secret-Hop": "1", "TE": "trailers",
                                                   "X-Kept": "1"}) as r:
        assert r.headers["X-Kept"] == "yes"
        assert "X-Private" not in r.headers and "Keep-Alive" not in r.headers
    names = {k.lower() for k, _ in upstream.seen[-1]["headers"]}
    assert "x-secret-hop" not in names and "te" not in names and "x-kept" in names


async def test_compressed_bodies_are_not_decompressed(upstream, proxy, client):
    async with client.get(proxy + "/gzip", headers={"Accept-Encoding": "gzip"}) as r:
        raw = await r.read()
        assert r.headers["Content-Encoding"] == "gzip"
        assert int(r.headers["Content-Length"]) == len(raw)
    assert gzip.decompress(raw) == b'{"compressed": true}'
    assert dict(upstream.seen[-1]["headers"])["Accept-Encoding"] == "gzip"
    # And a gzip request body reaches the engine as gzip.
    data = gzip.compress(b'{"index":{}}\n{"a":1}\n')
    async with client.post(proxy + "/_bulk", data=data,
                           headers={"Content-Encoding": "gzip",
                                    "Content-Type": "application/x-ndjson"}) as r:
        assert r.status == 200
    assert upstream.seen[-1]["body"] == data


async def test_chunked_and_large_bodies_stream_through_intact(upstream, proxy, client):
    async with client.get(proxy + "/chunked") as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        lines = (await r.read()).splitlines()
    assert len(lines) == 200 and json.loads(lines[-1])["line"] == 199
    async with client.get(proxy + "/big") as r:
        assert int(r.headers["Content-Length"]) == 3 * 1024 * 1024
        assert await r.read() == b"z" * (3 * 1024 * 1024)
    payload = bytes(range(256)) * (5 * 4096)  # 5 MiB, above the buffering threshold

    async def chunks():
        for i in range(0, len(payload), 100_000):
            yield payload[i:i + 100_000]

    async with client.post(proxy + "/_bulk", data=chunks()) as r:  # chunked request body
        got = await r.json()
    assert got["sha256"] == hashlib.sha256(payload).hexdigest()
    async with client.post(proxy + "/_bulk", data=payload) as r:  # Content-Length request body
        got = await r.json()
    assert got["length"] == len(payload)
    assert dict(upstream.seen[-1]["headers"])["Content-Length"] == str(len(payload))


async def test_an_upstream_cut_mid_body_is_not_passed_off_as_complete(upstream, proxy, client):
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(proxy + "/cut") as r:
            await r.read()
    async with client.get(proxy + "/plain") as r:  # the proxy is fine afterwards
        assert r.status == 200


async def test_head_keeps_the_engines_content_length(upstream, proxy, client):
    async with client.head(proxy + "/big") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(3 * 1024 * 1024)
        assert await r.read() == b""
    assert upstream.seen[-1]["method"] == "HEAD"


async def test_engine_errors_pass_through_as_sent(upstream, proxy, client):
    async with client.get(proxy + "/missing") as r:
        assert r.status == 404
        assert await r.read() == b'{"error":"not here","status":404}'
        assert r.headers["X-Elastic-Product"] == "Elasticsearch"


async def test_request_size_limit_answers_413_without_reaching_the_engine(upstream, client):
    runner, state, url = await _proxy(ProxyConfig(upstreams=(upstream.url,), listen="127.0.0.1:0",
                                                  max_request_bytes=1000))
    try:
        before = len(upstream.seen)
        async with client.post(url + "/_bulk", data=b"x" * 1001) as r:
            assert r.status == 413
            assert (await r.json())["error"]["type"] == "proxy_request_too_large"
        assert len(upstream.seen) == before
        async with client.post(url + "/_bulk", data=b"x" * 1000) as r:
            assert r.status == 200

        async def chunks():  # no Content-Length: the limit trips while streaming
            for _ in range(10):
                yield b"y" * 300

        async with client.post(url + "/_bulk", data=chunks()) as r:
            assert r.status == 413
    finally:
        await stop(runner, state)


async def test_unreachable_upstreams_give_502_and_failover_skips_dead_ones(upstream, client):
    dead = f"http://127.0.0.1:{free_port()}"
    runner, state, url = await _proxy(ProxyConfig(upstreams=(dead,), listen="127.0.0.1:0"))
    try:
        async with client.get(url + "/x", headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 502
            body = await r.json()
        assert body["error"]["type"] == "proxy_upstream_unreachable"
        assert "s3cret" not in json.dumps(body)
    finally:
        await stop(runner, state)
    runner, state, url = await _proxy(ProxyConfig(upstreams=(dead, upstream.url),
                                                  listen="127.0.0.1:0"))
    try:
        for _ in range(4):  # round-robin starts on each upstream in turn; all must succeed
            async with client.put(url + "/i/_doc/1", data=b"{}") as r:
                assert r.status == 201
    finally:
        await stop(runner, state)


async def test_health_and_metrics(upstream, proxy, client):
    async with client.get(proxy + "/_rescore/health") as r:
        assert r.status == 200 and (await r.json())["status"] == "ok"
    async with client.get(proxy + "/some/path") as r:
        await r.read()
    async with client.get(proxy + "/_rescore/metrics") as r:
        text = await r.text()
    assert 'rescore_proxy_requests_total{arm="",outcome="passthrough",route="other",status="200"}' in text
    assert "rescore_proxy_added_latency_seconds_bucket" in text


async def test_the_proxys_own_namespace_never_reaches_the_engine(upstream, proxy, client):
    async with client.get(proxy + "/_rescore/openapi.json") as r:
        assert r.status == 200 and "/_rescore/health" in (await r.json())["paths"]
    before = len(upstream.seen)
    async with client.request("TRACE", proxy + "/_rescore/health") as r:
        assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
        assert (await r.json())["error"]["type"] == "proxy_method_not_allowed"
    async with client.get(proxy + "/_rescore/nothing") as r:
        assert r.status == 404 and (await r.json())["error"]["type"] == "proxy_not_found"
    assert len(upstream.seen) == before
