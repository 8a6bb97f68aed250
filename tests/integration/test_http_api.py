"""The HTTP rerank API (docs/http-api.md) on a real sidecar process: every endpoint and error,
scores equal to gRPC's for the same request, health agreeing with gRPC health, token and TLS."""
from __future__ import annotations

import json
import ssl
import os
import subprocess
import threading
import time

import grpc
import httpx
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.sidecar import errors
from rescore_sidecar.tools.sidecar_process import SidecarProcess, sidecar_process
from tests.support.pki import write_pki

pytestmark = pytest.mark.integration

QUERY = "supersonic flow over a wing"
DOCS = ["laminar boundary layer on a flat plate", "shock wave drag of a slender body at supersonic speed",
        "heat transfer in a turbulent jet", "buckling of cylindrical panels", "wing pressure distribution",
        "hypersonic viscous flow", "nozzle design", "lift of a delta wing at supersonic speed"]


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder, tiny_bi_encoder, short_cross_encoder):
    extra = ["--max-documents", "16", "--max-request-bytes", "20000", "--max-wait-ms", "2"]
    with sidecar_process({"ce": tiny_cross_encoder, "bi": tiny_bi_encoder, "short": short_cross_encoder},
                         extra_args=extra, http_port=0) as proc:
        yield proc


@pytest.fixture
def http(sidecar):
    with httpx.Client(base_url=sidecar.http_url, timeout=30) as client:
        yield client


@pytest.fixture
def stub(sidecar):
    with grpc.insecure_channel(sidecar.address) as channel:
        yield rescore_pb2_grpc.RerankerStub(channel)


def grpc_scores(stub, docs=DOCS, raw=False, **kwargs) -> list[tuple[int, float]]:
    mode = pb.SCORE_MODE_RAW if raw else pb.SCORE_MODE_NORMALIZED
    reply = stub.Rerank(pb.RerankRequest(query=QUERY, documents=[pb.Document(text=t) for t in docs],
                                         score_mode=mode, **kwargs), timeout=30)
    return [(r.index, r.score) for r in reply.results]


def assert_same(http_pairs, grpc_pairs):
    assert [i for i, _ in http_pairs] == [i for i, _ in grpc_pairs]
    assert [s for _, s in http_pairs] == pytest.approx([s for _, s in grpc_pairs], abs=1e-6)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_cohere_shape_scores_equal_grpc(http, stub, path):
    reply = http.post(path, json={"model": "ce", "query": QUERY, "documents": DOCS})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "ce" and body["id"]
    pairs = [(r["index"], r["relevance_score"]) for r in body["results"]]
    assert sorted(i for i, _ in pairs) == list(range(len(DOCS)))  # top_n absent: every document
    scores = [s for _, s in pairs]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert_same(pairs, grpc_scores(stub, model="ce"))
    assert "document" not in body["results"][0]


def test_top_n_documents_as_objects_return_documents_and_raw(http, stub):
    reply = http.post("/v1/rerank", json={"query": QUERY, "documents": [{"text": t} for t in DOCS], "top_n": 3,
                                          "return_documents": True, "raw_scores": True})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert_same([(r["index"], r["relevance_score"]) for r in results], grpc_scores(stub, raw=True, top_n=3))
    assert [r["document"]["text"] for r in results] == [DOCS[r["index"]] for r in results]


def test_tei_shape(http, stub):
    reply = http.post("/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True})
    assert reply.status_code == 200, reply.text
    results = reply.json()
    assert isinstance(results, list)
    assert_same([(r["index"], r["score"]) for r in results], grpc_scores(stub))
    assert [r["text"] for r in results] == [DOCS[r["index"]] for r in results]
    raw = http.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert_same([(r["index"], r["score"]) for r in raw], grpc_scores(stub, raw=True))
    assert "text" not in raw[0]


def test_tei_truncate_false_refuses_a_too_long_text(http):
    long_text = "wing " * 400  # the 'short' model's max length is far below this
    reply = http.post("/rerank", json={"model": "short", "query": QUERY, "texts": ["short", long_text],
                                       "truncate": False})
    assert reply.status_code == 413, reply.text
    assert "texts[1]" in reply.json()["error"]["message"]
    assert http.post("/rerank", json={"model": "short", "query": QUERY, "texts": ["short", long_text]}).status_code == 200


def test_models_and_health(http, sidecar):
    models = http.get("/v1/models").json()
    by_id = {m["id"]: m for m in models["data"]}
    assert set(by_id) == {"ce", "bi", "short"}
    assert by_id["ce"]["default"] and by_id["ce"]["kind"] == "cross-encoder" and by_id["bi"]["kind"] == "bi-encoder"
    assert by_id["ce"]["max_length"] > 0
    assert models["max_documents"] == 16 and models["max_request_bytes"] == 20000
    for path in ("/health", "/ready", "/live"):
        assert http.get(path).status_code == 200
    assert sidecar.serving()  # gRPC health agrees


def error_of(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()["error"]


@pytest.mark.parametrize("body, field", [
    ({"documents": DOCS}, "query"),
    ({"query": "  ", "documents": DOCS}, "query"),
    ({"query": 3, "documents": DOCS}, "query"),
    ({"query": QUERY}, "documents"),
    ({"query": QUERY, "documents": []}, "documents"),
    ({"query": QUERY, "documents": "one"}, "documents"),
    ({"query": QUERY, "documents": ["a", 7]}, "documents[1]"),
    ({"query": QUERY, "documents": ["a", {"title": "no text"}]}, "documents[1].text"),
    ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n"),
    ({"query": QUERY, "documents": DOCS, "top_n": "3"}, "top_n"),
    ({"query": QUERY, "documents": DOCS, "return_documents": "yes"}, "return_documents"),
    ({"query": QUERY, "documents": DOCS, "timeout_ms": -1}, "timeout_ms"),
    ({"query": QUERY, "documents": DOCS, "model": 5}, "model"),
])
def test_bad_input_is_400_naming_the_field(http, body, field):
    error = error_of(http.post("/v1/rerank", json=body), 400)
    assert error["type"] == "invalid_request" and error["field"] == field


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe{}", b"[1, 2]", b""])
def test_malformed_body_is_400(http, content):
    error = error_of(http.post("/v2/rerank", content=content, headers={"content-type": "application/json"}), 400)
    assert error["field"] == "body"


def test_other_errors(http):
    assert error_of(http.post("/v1/rerank", json={"model": "nope", "query": QUERY, "documents": DOCS}),
                    404)["type"] == "model_not_found"
    assert error_of(http.post("/v1/rerank", json={"query": QUERY, "documents": ["d"] * 17}),
                    413)["type"] == "request_too_large"
    assert error_of(http.post("/v1/rerank", json={"query": QUERY, "documents": ["x" * 30000]}),
                    413)["type"] == "request_too_large"
    error = error_of(http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS},
                               headers={"X-Request-Timeout-Ms": "1"}), 504)
    assert error["type"] == "deadline_exceeded"
    assert error_of(http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS},
                              headers={"X-Request-Timeout-Ms": "soon"}), 400)["field"] == "header X-Request-Timeout-Ms"
    assert http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "timeout_ms": 20000}).status_code == 200
    assert error_of(http.post("/v3/rerank", json={}), 404)["type"] == "not_found"
    reply = http.get("/v1/rerank")
    assert error_of(reply, 405)["type"] == "method_not_allowed" and "POST" in reply.headers["allow"]
    assert http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 200  # still serving


def test_no_document_text_in_logs(http, sidecar):
    secret = "zanzibar-unique-document-text"
    assert http.post("/v1/rerank", json={"query": "qqq-unique-query", "documents": [secret]}).status_code == 200
    assert http.post("/v1/rerank", json={"query": QUERY, "documents": [secret, 3]}).status_code == 400
    log = sidecar.log_path.read_text()
    assert secret not in log and "qqq-unique-query" not in log


@pytest.mark.skipif(not hasattr(errors, "Overloaded"), reason="needs the typed Overloaded error (typed-reasons branch)")
def test_queue_full_is_429_with_retry_after(tiny_cross_encoder):
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0,
                         extra_args=["--max-queue-pairs", "4", "--max-documents", "4"]) as proc:
        proc.pause()  # nothing is computed: the first request stays queued
        first = threading.Thread(target=lambda: httpx.post(proc.http_url + "/v1/rerank", timeout=30,
                                                           json={"query": QUERY, "documents": DOCS[:4]}))
        try:
            first.start()
            time.sleep(0.5)
        finally:
            proc.resume()
        reply = httpx.post(proc.http_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS[:4]}, timeout=30)
        first.join()
        if reply.status_code == 200:
            pytest.skip("the first request finished before the second arrived")
        assert error_of(reply, 429)["type"] == "overloaded" and int(reply.headers["retry-after"]) >= 1


def test_loading_is_503_and_agrees_with_grpc_health(tiny_cross_encoder):
    proc = SidecarProcess({"ce": tiny_cross_encoder}, http_port=0)
    try:  # not proc.start(): it waits for SERVING, and this test watches the loading phase
        with open(proc.log_path, "ab") as log:
            proc.process = subprocess.Popen(proc.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seen_loading = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(proc.http_url + "/ready", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if ready.status_code == 200:
                break
            assert ready.status_code == 503 and ready.json()["status"] == "NOT_SERVING"
            rerank = httpx.post(proc.http_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}, timeout=5)
            if rerank.status_code == 503:  # models may finish loading between the two calls
                assert rerank.json()["error"]["type"] == "not_ready" and rerank.headers["retry-after"]
                with grpc.insecure_channel(proc.address) as channel:
                    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                seen_loading = seen_loading or status.status != health_pb2.HealthCheckResponse.SERVING
            time.sleep(0.05)
        assert seen_loading, "never saw the loading phase (HTTP 503 while gRPC health is NOT_SERVING)"
        assert proc.serving()
    finally:
        proc.close()


TOKEN = "http-s3cret"


def test_tls_and_bearer_token(tiny_cross_encoder, tmp_path):
    pki = write_pki(tmp_path, trustme.CA())
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0, credentials=creds, extra_args=[
            "--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]), "--auth-token", TOKEN]) as proc:
        assert proc.http_url.startswith("https://")
        with httpx.Client(base_url=proc.http_url, verify=ssl.create_default_context(cafile=str(pki["ca"])), timeout=30) as client:
            body = {"query": QUERY, "documents": DOCS}
            assert error_of(client.post("/v1/rerank", json=body), 401)["type"] == "unauthorized"
            assert client.post("/v1/rerank", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get("/v1/models").status_code == 401
            assert client.post("/v1/rerank", json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            assert client.get("/ready").status_code == 200  # probes need no token
        with pytest.raises(httpx.TransportError):
            httpx.get(proc.http_url.replace("https", "http") + "/ready", timeout=5)


def test_sigterm_drains_and_closes_the_http_port(tiny_cross_encoder):
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0) as proc:
        assert httpx.post(proc.http_url + "/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 200
        proc.stop()
        assert proc.process.returncode == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(proc.http_url + "/live", timeout=2)


def test_metrics_count_http_requests(http, sidecar):
    before = httpx.get(sidecar.metrics_url).text
    http.post("/v1/rerank", json={"model": "nope", "query": QUERY, "documents": DOCS})
    after = httpx.get(sidecar.metrics_url).text

    def count(text):
        line = [l for l in text.splitlines() if l.startswith('rescore_requests_total{code="NOT_FOUND",model="unknown"}')]
        return float(line[0].split()[-1]) if line else 0.0

    assert count(after) == count(before) + 1
    assert json.loads(http.get("/live").text)["status"] == "alive"
