"""The score cache in a real sidecar: pages, identical scores, the size bound, shared computation."""
from __future__ import annotations

import concurrent.futures
import urllib.request

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rescore_sidecar.connectors import (ConnectorConfig, RerankOptions, RescoringElasticsearch, RescoringOpenSearch,
                                        SidecarClientConfig)
from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.sidecar.core.cache import ENTRY_OVERHEAD
from rescore_sidecar.tools.sidecar_process import sidecar_process

INDEX = "score-cache-corpus"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words} number {i}"}


def metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on the sidecar's /metrics (0 when absent)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def forward_sequences(url: str, model: str) -> float:
    """Sequences that went through a forward pass so far (the batch-size histogram's sum)."""
    return metric(url, "rescore_batch_size_sum", model=model)


def rerank(address: str, query: str, texts: list[str], model: str = "", bypass_cache: bool = False) -> list[float]:
    with grpc.insecure_channel(address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(pb.RerankRequest(
            query=query, model=model, documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(texts)],
            bypass_cache=bypass_cache), timeout=60)
    by_index = {r.index: r.score for r in reply.results}
    return [by_index[i] for i in range(len(texts))]


@pytest.fixture(scope="module")
def cached_sidecar(tiny_cross_encoder, tiny_bi_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder, "bi": tiny_bi_encoder}, http_port=0) as proc:
        yield proc


@pytest.fixture(scope="module")
def uncached_sidecar(tiny_cross_encoder, tiny_bi_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder, "bi": tiny_bi_encoder},
                         extra_args=["--cache-bytes", "0"]) as proc:
        yield proc


def test_page_two_of_a_search_runs_no_forward_pass(engine_node, cached_sidecar):
    client = engine_node.client()
    if not client.indices.exists(index=INDEX):
        ops = []
        for i in range(40):
            ops += [{"index": {"_index": INDEX, "_id": str(i)}}, _doc(i)]
        if engine_node.engine == "opensearch":
            client.bulk(body=ops, refresh=True)
        else:
            client.bulk(operations=ops, refresh=True)
    config = ConnectorConfig(default=RerankOptions(window=30, fields=("title", "body"), model="tiny",
                                                           query=f"common words on {engine_node.engine}"),
                             sidecar=SidecarClientConfig(targets=(cached_sidecar.address,)))
    cls = RescoringOpenSearch if engine_node.engine == "opensearch" else RescoringElasticsearch
    wrapper = cls(engine_node.client(), config)
    url = cached_sidecar.metrics_url
    query = {"query": {"match": {"body": "common"}}, "size": 10}
    try:
        before = forward_sequences(url, "tiny")
        page1 = wrapper.search(index=INDEX, body={**query, "from": 0})
        after_page1 = forward_sequences(url, "tiny")
        hits_before = metric(url, "rescore_cache_hits_total", model="tiny")
        page2 = wrapper.search(index=INDEX, body={**query, "from": 10})
        page3 = wrapper.search(index=INDEX, body={**query, "from": 20})
    finally:
        wrapper.rescorer.sidecar.close()
        wrapper.client.close()
    assert after_page1 - before == 30  # page 1 scored the whole window
    assert forward_sequences(url, "tiny") == after_page1  # pages 2 and 3: no forward pass at all
    assert metric(url, "rescore_cache_hits_total", model="tiny") - hits_before == 60
    ids = [h["_id"] for page in (page1, page2, page3) for h in page["hits"]["hits"]]
    assert len(ids) == 30 and len(set(ids)) == 30  # the pages partition the reranked window


@pytest.mark.parametrize("model", ["tiny", "bi"])
def test_scores_are_identical_with_the_cache_on_and_off(cached_sidecar, uncached_sidecar, model):
    texts = [_doc(i)["body"] for i in range(100, 125)]
    query = f"common river {model}"
    off = rerank(uncached_sidecar.address, query, texts, model)
    first = rerank(cached_sidecar.address, query, texts, model)
    url = cached_sidecar.metrics_url
    computed = forward_sequences(url, model)
    again = rerank(cached_sidecar.address, query, texts, model)
    assert forward_sequences(url, model) == computed  # served from the cache
    assert first == off and again == off  # bit for bit


def cache_state(url: str, model: str) -> dict[str, float]:
    return {"entries": metric(url, "rescore_cache_entries"), "bytes": metric(url, "rescore_cache_bytes"),
            "hits": metric(url, "rescore_cache_hits_total", model=model),
            "misses": metric(url, "rescore_cache_misses_total", model=model),
            "evictions": metric(url, "rescore_cache_evictions_total")}


@pytest.mark.parametrize("model", ["tiny", "bi"])
def test_bypass_computes_every_pair_even_when_cached_and_leaves_the_cache_as_it_was(cached_sidecar, model):
    url, address = cached_sidecar.metrics_url, cached_sidecar.address
    texts = [_doc(i)["body"] for i in range(300, 312)]
    query = f"bypass {model}"
    cached = rerank(address, query, texts, model)  # every pair now in the cache
    sequences = len(texts) + (1 if model == "bi" else 0)  # a bi-encoder also embeds the query
    state, computed = cache_state(url, model), forward_sequences(url, model)
    bypassed = metric(url, "rescore_cache_bypassed_total", model=model)
    # gRPC field, HTTP body field, HTTP header: each one computes every sequence again.
    assert rerank(address, query, texts, model, bypass_cache=True) == cached
    with httpx.Client(base_url=cached_sidecar.http_url, timeout=60) as http:
        for kwargs in ({"json": {"model": model, "query": query, "documents": texts, "bypass_cache": True}},
                       {"json": {"model": model, "query": query, "documents": texts},
                        "headers": {"X-Bypass-Cache": "true"}}):
            reply = http.post("/v1/rerank", **kwargs)
            assert reply.status_code == 200, reply.text
        bad = http.post("/v1/rerank", json={"model": model, "query": query, "documents": texts},
                        headers={"X-Bypass-Cache": "maybe"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "header X-Bypass-Cache"
    assert forward_sequences(url, model) - computed == 3 * sequences
    assert metric(url, "rescore_cache_bypassed_total", model=model) - bypassed == 3 * sequences
    # Documents never seen, asked with the bypass, are not stored either.
    fresh = [_doc(i)["body"] + " fresh" for i in range(400, 405)]
    rerank(address, query, fresh, model, bypass_cache=True)
    assert cache_state(url, model) == state  # nothing read (no hit), nothing written
    before = forward_sequences(url, model)
    rerank(address, query, fresh, model)  # without the bypass: computed, so the bypass stored nothing
    assert forward_sequences(url, model) - before == len(fresh)  # (a bi-encoder's query embedding is cached)


def test_a_bi_encoder_window_of_seen_documents_embeds_only_the_query(cached_sidecar, uncached_sidecar):
    texts = [_doc(i)["body"] for i in range(200, 230)]
    url = cached_sidecar.metrics_url
    rerank(cached_sidecar.address, "first query", texts, "bi")
    computed = forward_sequences(url, "bi")
    scores = rerank(cached_sidecar.address, "another query about mountains", texts, "bi")
    assert forward_sequences(url, "bi") - computed == 1  # only the query's embedding
    # The query was embedded alone here and beside 30 documents there: the same to float32 precision.
    assert scores == pytest.approx(rerank(uncached_sidecar.address, "another query about mountains", texts, "bi"),
                                   abs=1e-6)


def test_the_cache_stays_within_its_size_under_a_stream_of_distinct_documents(tiny_cross_encoder):
    size = 100 * (4 + ENTRY_OVERHEAD)  # room for 100 single-logit entries
    with sidecar_process({"tiny": tiny_cross_encoder}, extra_args=["--cache-bytes", str(size)]) as proc:
        url = proc.metrics_url
        for n in range(12):
            rerank(proc.address, "stream", [f"distinct document {n} {k} {WORDS[k % 10]}" for k in range(50)])
            assert metric(url, "rescore_cache_bytes") <= size
        assert metric(url, "rescore_cache_max_bytes") == size
        assert metric(url, "rescore_cache_entries") == 100
        assert metric(url, "rescore_cache_evictions_total") == 12 * 50 - 100
        # The most recent window is still cached; the first one was evicted.
        computed = forward_sequences(url, "tiny")
        rerank(proc.address, "stream", [f"distinct document 11 {k} {WORDS[k % 10]}" for k in range(50)])
        assert forward_sequences(url, "tiny") == computed
        rerank(proc.address, "stream", [f"distinct document 0 {k} {WORDS[k % 10]}" for k in range(50)])
        assert forward_sequences(url, "tiny") == computed + 50


def test_two_concurrent_identical_requests_compute_each_sequence_once(tiny_cross_encoder):
    # A long batching wait keeps the first request queued while the second arrives.
    with sidecar_process({"tiny": tiny_cross_encoder}, extra_args=["--max-wait-ms", "300"]) as proc:
        texts = [f"shared document {k} {WORDS[k % 10]}" for k in range(40)]
        url = proc.metrics_url
        before = forward_sequences(url, "tiny")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: rerank(proc.address, "same query", texts), range(2)))
        assert results[0] == results[1]
        assert forward_sequences(url, "tiny") - before == 40
        assert metric(url, "rescore_cache_misses_total", model="tiny") == 40
        assert metric(url, "rescore_cache_hits_total", model="tiny") == 40
        assert metric(url, "rescore_cache_shared_total", model="tiny") == 40  # joined, not a later hit
