"""Bad input, tried for real: a real sidecar process (raw gRPC), a real OpenSearch node with
odd documents, the Python connector and a real proxy process. Every case gets a clear error or
the documented fallback; nothing crashes or hangs, memory stays bounded, and the next valid
request is served normally. The table in docs/reliability.md lists the behaviour per case.
"""
from __future__ import annotations

import json
import pathlib
import re
import socket
import time

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rescore_sidecar.connectors import BreakerConfig, ConnectorConfig, RerankOptions, RescoringOpenSearch, SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.proxy_process import ProxyProcess
from rescore_sidecar.tools.sidecar_process import SidecarProcess

pytestmark = pytest.mark.integration

ODD = "bad-input-odd"
MANY = "bad-input-10k"
HUGE = "bad-input-huge"
RERANK = "/rescore.v1.Reranker/Rerank"
TEN_MB = 10 * 1024 * 1024
PROXY_LIMIT = 16 * 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", pathlib.Path(f"/proc/{pid}/status").read_text())
    assert match, field
    return int(match.group(1))


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    """Default limits (1000 documents, 8 MiB per request)."""
    proc = SidecarProcess({"tiny": tiny_cross_encoder}).start()
    proc.rss_start_kb = status_kb(proc.process.pid, "VmRSS")
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def channel(sidecar):
    with grpc.insecure_channel(sidecar.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as ch:
        yield ch


def rerank(channel, request: pb.RerankRequest, timeout: float = 30) -> grpc.StatusCode:
    try:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(request, timeout=timeout)
    except grpc.RpcError as exc:
        assert exc.details(), "every error carries a message"
        return exc.code()
    assert sorted(r.index for r in reply.results) == list(range(len(request.documents)))
    return grpc.StatusCode.OK


def raw_call(channel, data: bytes) -> tuple[grpc.StatusCode, str]:
    call = channel.unary_unary(RERANK, request_serializer=None, response_deserializer=None)
    try:
        call(data, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def served(channel) -> bool:
    return rerank(channel, pb.RerankRequest(query="wing", documents=[pb.Document(id="1", text="swept wing")])) \
        == grpc.StatusCode.OK


@pytest.fixture(scope="module")
def indices(opensearch_node):
    """Odd `_source` shapes (not indexed: `dynamic: false`), 10,000 small hits, one 10 MB document."""
    client = opensearch_node.client()
    deep: object = "bottom of a deep object"
    for _ in range(200):
        deep = {"x": deep}
    odd_sources = {
        "plain": {"text": "a plain wing document"},
        "deep": {"text": deep}, "deep_list": {"text": [[[[["wing in a list"]]]]]},
        "mixed_list": {"text": [1, "wing", None, {"a": "b"}, True, 2.5]},
        "number": {"text": 12345}, "bool": {"text": False}, "null": {"text": None},
        "empty": {"text": ""}, "missing": {"title": "no text field"},
        "control": {"text": "wing\x00\x01\x07\x1b[31m\u200b\ufeff\ud7ff\U0010fffd"},
        "object": {"text": {"en": "wing", "fr": "aile"}},
    }
    if not client.indices.exists(index=ODD):
        client.indices.create(index=ODD, body={"mappings": {"dynamic": False}})
        ops = []
        for key, source in odd_sources.items():
            ops += [{"index": {"_index": ODD, "_id": key}}, source]
        client.bulk(body=ops, refresh=True)
    if not client.indices.exists(index=MANY):
        client.indices.create(index=MANY, body={"settings": {"max_result_window": 10_000}})
        for start in range(0, 10_000, 2500):
            ops = []
            for i in range(start, start + 2500):
                ops += [{"index": {"_index": MANY, "_id": str(i)}}, {"text": f"wing {i % 97} flow {i}"}]
            client.bulk(body=ops)
        client.indices.refresh(index=MANY)
    if not client.indices.exists(index=HUGE):
        client.indices.create(index=HUGE, body={"mappings": {"dynamic": False}})
        client.index(index=HUGE, id="huge", body={"text": "wing " * (TEN_MB // 5)}, refresh=True)
        client.index(index=HUGE, id="small", body={"text": "a small wing"}, refresh=True)
    client.close()
    return sorted(odd_sources)


@pytest.fixture(scope="module")
def proxy(opensearch_node, sidecar):
    proc = ProxyProcess(opensearch_node.url, ["--sidecar", sidecar.address, "--budget-ms", "5000",
                                              "--max-request-bytes", str(PROXY_LIMIT),
                                              "--rescore", json.dumps({"window": 50, "fields": ["text"]})]).start()
    yield proc
    proc.close()


def proxy_search(proxy, index: str, body, **kw) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{proxy.url}/{index}/_search", content=content, timeout=60,
                      headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)


# --------------------------------------------------------------------------- sidecar, raw gRPC

def test_sidecar_answers_each_bad_request_with_a_clear_status(channel, sidecar):
    doc = pb.Document(id="d", text="swept wing")
    cases = {
        "empty query": (pb.RerankRequest(query="", documents=[doc]), grpc.StatusCode.INVALID_ARGUMENT),
        "whitespace query": (pb.RerankRequest(query=" \t\n\u3000", documents=[doc]), grpc.StatusCode.INVALID_ARGUMENT),
        "zero documents": (pb.RerankRequest(query="wing"), grpc.StatusCode.INVALID_ARGUMENT),
        "10,000 documents": (pb.RerankRequest(query="wing", documents=[doc] * 10_000),
                             grpc.StatusCode.RESOURCE_EXHAUSTED),
        "10 MB document": (pb.RerankRequest(query="wing", documents=[pb.Document(text="w" * TEN_MB)]),
                           grpc.StatusCode.RESOURCE_EXHAUSTED),
        "unknown model": (pb.RerankRequest(query="wing", model="nope", documents=[doc]), grpc.StatusCode.NOT_FOUND),
        "document without text": (pb.RerankRequest(query="wing", documents=[pb.Document(id="x")]),
                                  grpc.StatusCode.OK),
        "control characters": (pb.RerankRequest(query="wing\x00\x1b[0m", documents=[
            pb.Document(text="\x00\x01\x02\x7f\u200b\ufeff wing \U0010fffd")]), grpc.StatusCode.OK),
        "1,000 documents (the limit)": (pb.RerankRequest(query="wing", documents=[doc] * 1000), grpc.StatusCode.OK),
        "7 MB document (under the limit, truncated)": (
            pb.RerankRequest(query="wing", documents=[pb.Document(text="wing flow " * (700 * 1024))]),
            grpc.StatusCode.OK),
    }
    seen = {}
    for name, (request, _) in cases.items():
        started = time.monotonic()
        seen[name] = rerank(channel, request)
        assert time.monotonic() - started < 30, f"{name} took too long"
    assert seen == {name: want for name, (_, want) in cases.items()}
    assert served(channel)


def test_sidecar_rejects_malformed_bytes_and_invalid_utf8(channel):
    good = pb.RerankRequest(query="wing", documents=[pb.Document(id="d", text="MARK")]).SerializeToString()
    invalid_utf8 = good.replace(b"MARK", b"\xff\xfe\xc3\x28")
    for data in (b"\xff\xff\xff\xff", b"\x0a\xff", invalid_utf8, good[:-3]):
        code, details = raw_call(channel, data)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (data[:20], code, details)
        assert "not a valid rescore.v1.RerankRequest" in details
    # Bytes that happen to parse (as unknown fields) are an empty request: also a clear error.
    assert raw_call(channel, b"\x08" * 1000) == (grpc.StatusCode.INVALID_ARGUMENT, "query is empty")
    assert raw_call(channel, good)[0] == grpc.StatusCode.OK


def test_sidecar_survives_clients_that_go_away(channel, sidecar):
    stub = rescore_pb2_grpc.RerankerStub(channel)
    big = pb.RerankRequest(query="wing", documents=[pb.Document(text="wing flow " * 50)] * 1000)
    # Cancelled right after sending; and a channel closed with calls in flight.
    for _ in range(5):
        stub.Rerank.future(big, timeout=30).cancel()
    with grpc.insecure_channel(sidecar.address) as other:
        futures = [rescore_pb2_grpc.RerankerStub(other).Rerank.future(big, timeout=30) for _ in range(3)]
    assert all(f.done() for f in futures)
    # Raw TCP: half an HTTP/2 preface, then garbage, then gone.
    host, port = sidecar.address.split(":")
    for payload in (b"PRI * HTTP/2.0\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 64):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
    assert served(channel)
    assert sidecar.process.poll() is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=200), texts=st.lists(st.text(max_size=300), min_size=0, max_size=12))
def test_sidecar_any_unicode(channel, query, texts):
    request = pb.RerankRequest(query=query, documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(texts)])
    code = rerank(channel, request)
    if not query.strip() or not texts:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert code == grpc.StatusCode.OK


def test_sidecar_memory_stays_bounded(channel, sidecar):
    """Runs after the cases above (file order): peak and current RSS stay within bounds."""
    pid = sidecar.process.pid
    for _ in range(3):  # the largest accepted request again: no growth per request
        assert rerank(channel, pb.RerankRequest(query="wing", documents=[
            pb.Document(text="wing flow " * (700 * 1024))])) == grpc.StatusCode.OK
    peak_mb, now_mb = status_kb(pid, "VmHWM") / 1024, status_kb(pid, "VmRSS") / 1024
    start_mb = sidecar.rss_start_kb / 1024
    assert peak_mb < start_mb + 1024, (start_mb, peak_mb)
    assert now_mb < start_mb + 600, (start_mb, now_mb)
    assert served(channel)


# --------------------------------------------------------------------------- connector and proxy

def test_odd_sources_through_connector_and_proxy(opensearch_node, indices, sidecar, proxy):
    body = {"query": {"match_all": {}}, "size": 50}
    config = ConnectorConfig(default=RerankOptions(window=50, fields=("text",)),
                             sidecar=SidecarClientConfig(targets=(sidecar.address,), budget_ms=5000))
    client = RescoringOpenSearch(opensearch_node.client(), config)
    try:
        direct = client.search(index=ODD, body=body, rerank={"query": "wing"})
    finally:
        client.close()
    assert direct["_rescore"]["reranked"], direct["_rescore"]
    assert sorted(h["_id"] for h in direct["hits"]["hits"]) == indices
    r = proxy_search(proxy, ODD, {**body, "rescore_sidecar": {"query": "wing"}})
    assert r.status_code == 200 and r.headers["x-rescore"] == "reranked", r.text
    assert sorted(h["_id"] for h in r.json()["hits"]["hits"]) == indices
    # Sources come back untouched, however odd.
    sources = {h["_id"]: h["_source"] for h in r.json()["hits"]["hits"]}
    assert sources["mixed_list"] == {"text": [1, "wing", None, {"a": "b"}, True, 2.5]}
    assert sources["control"]["text"].startswith("wing\x00\x01")


def test_empty_queries_zero_hits_and_missing_fields_through_proxy(indices, proxy):
    for query in ("", "   ", "\t\n"):
        r = proxy_search(proxy, ODD, {"query": {"match": {"text": query}}})
        assert r.status_code == 200, r.text
        assert r.headers["x-rescore"] == "off" and r.headers.get("x-rescore-skipped"), dict(r.headers)
    r = proxy_search(proxy, ODD, {"query": {"match_all": {}}, "size": 0})
    assert r.status_code == 200 and r.json()["hits"]["hits"] == []
    r = proxy_search(proxy, ODD, {})  # no query at all
    assert r.status_code == 200 and r.headers["x-rescore"] == "off"
    r = proxy_search(proxy, ODD, {"query": {"match": {"title": "text"}}, "rescore_sidecar": {"fields": ["nope"]}})
    assert r.status_code == 200 and r.headers.get("x-rescore-skipped") == "no_text", dict(r.headers)


def test_ten_thousand_hits_fall_back_without_opening_the_breaker(opensearch_node, indices, sidecar, proxy):
    """10,000 hits to rerank pass the sidecar's 1,000-document limit: the search falls back, and
    since the request (not the sidecar) is at fault, the breaker stays closed for the next ones."""
    body = {"query": {"match": {"text": "wing"}}, "size": 10_000}
    rerank_all = {"window": 10_000, "fields": ["text"]}
    breaker = BreakerConfig(minimum_calls=4, window_size=8)
    config = ConnectorConfig(default=RerankOptions(window=10_000, fields=("text",)),
                             sidecar=SidecarClientConfig(targets=(sidecar.address,), budget_ms=10_000, breaker=breaker))
    client = RescoringOpenSearch(opensearch_node.client(timeout=60), config)
    try:
        for _ in range(6):
            out = client.search(index=MANY, body=body)
            assert len(out["hits"]["hits"]) == 10_000
            assert out["_rescore"]["fallback"] == "too_large", out["_rescore"]
        after = client.search(index=MANY, body={**body, "size": 20}, rerank={"window": 20})["_rescore"]
        assert after["reranked"], (after, {t: b.state for t, b in client.rescorer.sidecar.endpoints.breakers.items()})
    finally:
        client.close()
    for _ in range(2):
        r = proxy_search(proxy, MANY, {**body, "rescore_sidecar": rerank_all})
        assert r.status_code == 200 and len(r.json()["hits"]["hits"]) == 10_000
        assert (r.headers["x-rescore"], r.headers["x-rescore-fallback"]) == ("fallback", "too_large")
    assert proxy_search(proxy, MANY, {**body, "size": 20}).headers["x-rescore"] == "reranked"


def test_ten_mb_document_is_reranked_on_its_first_characters(opensearch_node, indices, sidecar, proxy):
    r = proxy_search(proxy, HUGE, {"query": {"match_all": {}}, "rescore_sidecar": {"query": "wing"}})
    assert r.status_code == 200 and r.headers["x-rescore"] == "reranked", r.headers
    assert len(r.content) > TEN_MB
    assert status_kb(proxy.process.pid, "VmHWM") < 1024 * 1024  # peak under 1 GiB for a 10 MB answer


def test_malformed_json_and_utf8_reach_the_engine_and_come_back_as_its_errors(indices, proxy, opensearch_node):
    cases = [b'{"query": ', b"[1, 2, 3]", b'"just a string"', b'{"query": {"match": {"text": "\xff\xfe"}}}',
             b"\x00\x01\x02", b'{"query": {"match_all": {}}, "size": "many"}']
    for data in cases:
        proxied = proxy_search(proxy, ODD, data)
        direct = httpx.post(f"{opensearch_node.url}/{ODD}/_search", content=data, timeout=30,
                            headers={"Content-Type": "application/json"})
        assert proxied.status_code == direct.status_code, (data, proxied.text, direct.text)
        assert 400 <= proxied.status_code < 500, (data, proxied.status_code)
    # Deeply nested JSON: OpenSearch 2.19 exits (StackOverflowError) on a bool query ~350 levels
    # deep, so the proxy refuses bodies past max_json_depth (200) itself; the node stays up.
    for depth in (70, 400, 5000):
        nested = b'{"query": ' + b'{"bool": {"must": [' * depth + b"{}" + b"]}}" * depth + b"}"
        r = proxy_search(proxy, ODD, nested)
        assert r.status_code == 400 and r.json()["error"]["type"] == "proxy_json_too_deep", r.text[:300]
    assert opensearch_node.alive() and proxy.alive()
    # Bad toggles are the proxy's own clear 400s.
    r = proxy_search(proxy, ODD, {"query": {"match_all": {}}, "rescore_sidecar": {"window": "all"}})
    assert r.status_code == 400 and "window" in r.json()["error"]["reason"]
    r = proxy_search(proxy, ODD, {"query": {"match_all": {}}}, headers={"X-Rescore": "perhaps"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "rescore_toggle_exception"


def test_proxy_limits_request_size_and_survives_disconnects(indices, proxy):
    r = proxy_search(proxy, ODD, b" " * (PROXY_LIMIT + 1))
    assert r.status_code == 413 and r.json()["error"]["type"] == "proxy_request_too_large"
    # A client that promises a big body, sends a little and goes; one that sends a whole
    # search and goes before the answer.
    search = json.dumps({"query": {"match": {"text": "wing"}}}).encode()
    for request in (b"POST /%s/_search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000\r\n\r\n{\"query\": " % ODD.encode(),
                    b"POST /%s/_search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (ODD.encode(), len(search), search),
                    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(200)):  # a TLS hello
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(request)
    time.sleep(0.5)
    assert proxy.alive()
    r = proxy_search(proxy, MANY, {"query": {"match": {"text": "wing"}}})
    assert r.status_code == 200 and r.headers["x-rescore"] == "reranked"


def test_every_listener_has_a_size_limit(sidecar):
    """Sidecar: max_request_bytes; proxy: max_request_bytes (413); metrics ports take no bodies."""
    with grpc.insecure_channel(sidecar.address, options=[("grpc.max_send_message_length", -1)]) as ch:
        code, details = raw_call(ch, b"\x0a" + b"\xff" * 10 + bytes(9 * 1024 * 1024))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    # The metrics listener serves GET only and never reads a body: a huge announced one is ignored.
    with socket.create_connection(("127.0.0.1", sidecar.metrics_port), timeout=10) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + bytes(65536))
    assert httpx.get(sidecar.metrics_url, timeout=10).status_code == 200
    assert served_after(sidecar)


def served_after(sidecar) -> bool:
    with grpc.insecure_channel(sidecar.address) as ch:
        return served(ch)


def test_calls_while_models_load_are_unavailable_not_unimplemented(tiny_cross_encoder):
    """A (re)starting sidecar opens its port before its models are loaded: calls then must get a
    retryable UNAVAILABLE (clients try another replica), not UNIMPLEMENTED."""
    import subprocess

    proc = SidecarProcess({"tiny": tiny_cross_encoder})
    with open(proc.log_path, "ab") as log:
        proc.process = subprocess.Popen(proc.command(), stdout=log, stderr=subprocess.STDOUT)
    seen: dict[str, str] = {}
    try:
        with grpc.insecure_channel(proc.address) as ch:
            stub = rescore_pb2_grpc.RerankerStub(ch)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                assert proc.process.poll() is None, proc.log_tail()
                try:
                    stub.Rerank(pb.RerankRequest(query="wing", documents=[pb.Document(text="wing")]), timeout=2)
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or "loading" in exc.details():
                        seen.setdefault(exc.code().name, exc.details())
                time.sleep(0.01)
            else:
                raise AssertionError(f"never served: {seen}")
    finally:
        proc.close()
    assert set(seen) <= {"UNAVAILABLE"}, seen
    assert "models are still loading" in seen.get("UNAVAILABLE", ""), f"the loading window was not hit: {seen}"
