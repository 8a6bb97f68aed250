"""The proxy (`rescore-sidecar proxy` subprocess) in front of real OpenSearch / Elasticsearch nodes
with a real sidecar: everything but search is identical to going direct; searches come back
reranked exactly as the Python connector reranks them; a dead sidecar never fails a search.
"""
from __future__ import annotations

import gzip
import json
import time

import httpx
import pytest

from rescore_sidecar.connectors import (ConnectorConfig, RerankOptions, RescoringElasticsearch, RescoringOpenSearch,
                        SidecarClientConfig)
from rescore_sidecar.tools.proxy_process import proxy_process as support_proxy_process
from rescore_sidecar.tools.sidecar_process import SidecarProcess, sidecar_process

OPTIONS = {"window": 20, "fields": ["title", "body"]}
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
QUERY = {"match": {"body": "common"}}
# Response headers that must be the same direct and through the proxy.
RELEVANT_HEADERS = ("content-type", "x-elastic-product", "warning", "content-encoding")


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"id": i, "title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}"}


def proxy_process(upstream: str, sidecar: str, *extra: str):
    """The proxy as a subprocess (`python -m rescore_sidecar.tools proxy`), rescoring with OPTIONS."""
    return support_proxy_process(upstream, "--sidecar", sidecar, "--rescore", json.dumps(OPTIONS), *extra)


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder}) as proc:
        yield proc


@pytest.fixture(scope="module")
def proxy(engine_node, sidecar):
    with proxy_process(engine_node.url, sidecar.address) as proc:
        yield proc


def _same(direct: httpx.Response, proxied: httpx.Response, names: tuple[str, str]) -> None:
    """Status, body (index names swapped, timings dropped) and relevant headers are equal."""
    assert proxied.status_code == direct.status_code, (direct.text, proxied.text)
    for name in RELEVANT_HEADERS:
        assert proxied.headers.get(name) == direct.headers.get(name), name
    a, b = direct.text.replace(names[0], "IDX"), proxied.text.replace(names[1], "IDX")
    if "json" in direct.headers.get("content-type", ""):
        a, b = _normal(json.loads(a)) if a else a, _normal(json.loads(b)) if b else b
        if proxied.headers.get("x-rescore-skipped") and isinstance(b, dict) and "_rescore" in b:
            # A search the core chose not to rerank (e.g. sorted by a field) carries its marker.
            assert b.pop("_rescore")["skipped"] == proxied.headers["x-rescore-skipped"]
    assert a == b
    assert proxied.headers.get("x-rescore") in (None, "off")


def _normal(value):
    volatile = {"took", "index_uuid", "uuid", "task_max_waiting_in_queue_millis"}
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _script(idx: str) -> list[tuple[str, str, dict]]:
    bulk = "".join(json.dumps({"index": {"_index": idx, "_id": str(i)}}) + "\n" + json.dumps(_doc(i)) + "\n"
                   for i in range(30))
    js = {"Content-Type": "application/json"}
    nd = {"Content-Type": "application/x-ndjson"}
    return [
        ("PUT", f"/{idx}", {"json": {"settings": {"number_of_replicas": 0},
                                      "mappings": {"properties": {"body": {"type": "text"}}}}}),
        ("PUT", f"/{idx}/_doc/100?refresh=true", {"json": {"title": "x", "body": "common y"}}),
        ("POST", "/_bulk?refresh=true", {"content": bulk.encode(), "headers": nd}),
        ("POST", f"/{idx}/_bulk?refresh=true", {"content": gzip.compress(bulk.encode()),
                                                "headers": {**nd, "Content-Encoding": "gzip"}}),
        ("GET", f"/{idx}/_doc/1", {}),
        ("GET", f"/{idx}/_doc/1", {"headers": {"Accept-Encoding": "gzip"}}),
        ("HEAD", f"/{idx}/_doc/1", {}),
        ("HEAD", f"/{idx}/_doc/404", {}),
        ("POST", f"/{idx}/_update/1?refresh=true", {"json": {"doc": {"title": "updated"}}}),
        ("GET", f"/{idx}/_source/1", {}),
        ("DELETE", f"/{idx}/_doc/2?refresh=true", {}),
        ("GET", f"/{idx}/_count", {}),
        ("GET", f"/_cat/indices/{idx}?h=index,health,docs.count", {}),
        ("GET", f"/_cluster/health/{idx}?wait_for_status=yellow", {}),
        ("GET", "/no-such-index-xyz/_doc/1", {}),
        ("GET", "/no-such-index-xyz/_search", {}),
        ("POST", f"/{idx}/_search", {"json": {"query": {"no_such_query": {}}}}),
        ("POST", f"/{idx}/_search", {"content": b'{"query": {"match": ', "headers": js}),
        ("POST", f"/{idx}/_search?size=-5", {"json": {"query": QUERY}}),
        ("POST", f"/{idx}/_search", {"json": {"query": QUERY, "sort": [{"id": "asc"}], "size": 3}}),
        ("DELETE", f"/{idx}", {}),
    ]


def test_plain_http_is_identical_direct_and_through_the_proxy(engine_node, proxy):
    direct_idx, proxy_idx = "proxy-cmp-direct", "proxy-cmp-proxied"
    with httpx.Client(base_url=engine_node.url, timeout=30) as direct, \
            httpx.Client(base_url=proxy.url, timeout=30) as proxied:
        for idx in (direct_idx, proxy_idx):
            direct.delete(f"/{idx}")
        for (method, path, kw), (_, ppath, pkw) in zip(_script(direct_idx), _script(proxy_idx)):
            a = direct.request(method, path, **kw)
            b = proxied.request(method, ppath, **pkw)
            _same(a, b, (direct_idx, proxy_idx))


def _rescoring_client(node, sidecar):
    cls = RescoringOpenSearch if node.engine == "opensearch" else RescoringElasticsearch
    config = ConnectorConfig(default=RerankOptions(window=20, fields=("title", "body")),
                             sidecar=SidecarClientConfig(targets=(sidecar.address,)))
    return cls(node.client(), config)


@pytest.fixture(scope="module")
def corpus(engine_node):
    client = engine_node.client()
    index = "proxy-corpus"
    if not client.indices.exists(index=index):
        lines = "".join(json.dumps({"index": {"_index": index, "_id": str(i)}}) + "\n" + json.dumps(_doc(i)) + "\n"
                        for i in range(40))
        httpx.post(f"{engine_node.url}/_bulk?refresh=true", content=lines.encode(),
                   headers={"Content-Type": "application/x-ndjson"}, timeout=30).raise_for_status()
    return index


def test_official_client_through_the_proxy(engine_node, sidecar, proxy, corpus):
    """opensearch-py / elasticsearch-py pointed at the proxy: CRUD works, searches are reranked
    exactly as the Python connector (same core) reranks them, errors are the engine's."""
    direct = engine_node.client()
    client = direct.__class__(proxy.url)
    idx = "proxy-client"
    es = engine_node.engine == "elasticsearch"
    if client.indices.exists(index=idx):
        client.indices.delete(index=idx)
    client.index(index=idx, id="1", body={"title": "a", "body": "common thing"}, refresh=True) if not es else \
        client.index(index=idx, id="1", document={"title": "a", "body": "common thing"}, refresh=True)
    ops = [{"index": {"_index": idx, "_id": str(i)}} for i in range(2, 6)]
    docs = [{"title": f"t{i}", "body": f"common {'x ' * i}"} for i in range(2, 6)]
    lines = [x for pair in zip(ops, docs) for x in pair]
    bulk = client.bulk(body=lines, refresh=True) if not es else client.bulk(operations=lines, refresh=True)
    assert not bulk["errors"]
    assert client.get(index=idx, id="3")["_source"] == docs[1]
    client.update(index=idx, id="3", body={"doc": {"title": "new"}}, refresh=True) if not es else \
        client.update(index=idx, id="3", doc={"title": "new"}, refresh=True)
    assert direct.get(index=idx, id="3")["_source"]["title"] == "new"
    client.delete(index=idx, id="4", refresh=True)
    assert client.count(index=idx)["count"] == 4
    assert client.cluster.health()["status"] in ("green", "yellow")
    assert client.cat.indices(index=idx, format="json")[0]["index"] == idx
    for call in (lambda c: c.get(index="no-such-index-xyz", id="1"),
                 lambda c: c.search(index=idx, body={"query": {"no_such_query": {}}})):
        with pytest.raises(Exception) as via_proxy:
            call(client)
        with pytest.raises(Exception) as via_engine:
            call(direct)
        assert type(via_proxy.value) is type(via_engine.value)
        assert str(via_proxy.value) == str(via_engine.value)
    client.indices.delete(index=idx)

    body = {"query": QUERY, "size": 10}
    reranked = dict(client.search(index=corpus, body=body))
    expected = dict(_rescoring_client(engine_node, sidecar).search(index=corpus, body=body))
    engine_ids = [h["_id"] for h in direct.search(index=corpus, body=body)["hits"]["hits"]]
    ids = [h["_id"] for h in reranked["hits"]["hits"]]
    assert reranked["_rescore"]["reranked"] is True
    assert ids == [h["_id"] for h in expected["hits"]["hits"]]
    assert ids != engine_ids  # the tiny random model does reorder this corpus
    assert [h["_score"] for h in reranked["hits"]["hits"]] == pytest.approx(
        [h["_score"] for h in expected["hits"]["hits"]])


def test_search_marks_and_toggles(engine_node, proxy, corpus):
    url = f"{proxy.url}/{corpus}/_search"
    body = {"query": QUERY, "size": 5}
    with httpx.Client(timeout=30) as http:
        on = http.post(url, json=body)
        assert on.headers["x-rescore"] == "reranked" and on.json()["_rescore"]["reranked"]
        for kwargs in ({"headers": {"X-Rescore": "off"}}, {"params": {"rescore": "off"}},
                       {"json": {**body, "rescore_sidecar": "off"}}):
            off = http.post(url, **{"json": body, **kwargs})
            direct = httpx.post(f"{engine_node.url}/{corpus}/_search", json=body)
            assert off.headers["x-rescore"] == "off"
            assert [h["_id"] for h in off.json()["hits"]["hits"]] == [h["_id"] for h in direct.json()["hits"]["hits"]]
        get = http.get(url, params={"q": "body:common", "size": "3"})
        assert get.status_code == 200 and get.headers["x-rescore"] == "reranked"
        assert len(get.json()["hits"]["hits"]) == 3
        lines = [{"index": corpus}, body, {"index": "no-such-index-xyz"}, body]
        ms = http.post(f"{proxy.url}/_msearch", content="".join(json.dumps(x) + "\n" for x in lines),
                       headers={"Content-Type": "application/x-ndjson"})
        assert ms.status_code == 200 and ms.headers["x-rescore"] == "reranked"
        first, missing = ms.json()["responses"]
        assert first["_rescore"]["reranked"] and missing["status"] == 404
        metrics = http.get(f"{proxy.url}/_rescore/metrics").text
    assert 'rescore_proxy_requests_total{arm="",outcome="reranked",route="search",status="200"}' in metrics
    assert "rescore_connector_searches_total" in metrics


def test_sidecar_killed_mid_test_every_search_still_succeeds(engine_node, tiny_cross_encoder, corpus):
    body = {"query": QUERY, "from": 2, "size": 6}
    engine_ids = [h["_id"] for h in httpx.post(f"{engine_node.url}/{corpus}/_search", json=body).json()["hits"]["hits"]]
    side = SidecarProcess({"tiny": tiny_cross_encoder}).start()
    try:
        with proxy_process(engine_node.url, side.address, "--budget-ms", "300") as proxy, \
                httpx.Client(timeout=30) as http:
            url = f"{proxy.url}/{corpus}/_search"
            assert http.post(url, json=body).headers["x-rescore"] == "reranked"
            side.pause()  # hung: the budget runs out
            t0 = time.monotonic()
            hung = http.post(url, json=body)
            assert time.monotonic() - t0 < 3
            side.resume()
            side.kill()  # dead: connection refused, then the breaker opens
            outs = [hung] + [http.post(url, json=body) for _ in range(15)]
            outs.append(http.post(f"{proxy.url}/_msearch", content=f'{{"index":"{corpus}"}}\n{json.dumps(body)}\n',
                                  headers={"Content-Type": "application/x-ndjson"}))
    finally:
        side.close()
    for out in outs:
        assert out.status_code == 200
        assert out.headers["x-rescore"] == "fallback"
        hits = out.json()["responses"][0]["hits"]["hits"] if "responses" in out.json() else out.json()["hits"]["hits"]
        assert [h["_id"] for h in hits] == engine_ids
    assert hung.headers["x-rescore-fallback"] == "timeout"
    assert {o.headers["x-rescore-fallback"] for o in outs[1:]} <= {"unavailable", "breaker_open"}
