"""Wrappers against real OpenSearch / Elasticsearch nodes and a real sidecar with a tiny model."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from rescore_sidecar.connectors import (AsyncRescoringElasticsearch, AsyncRescoringOpenSearch, BreakerConfig, ConnectorConfig,
                        RerankOptions, Rescorer, RescoringElasticsearch, RescoringOpenSearch, SidecarClient,
                        SidecarClientConfig)
from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc
from rescore_sidecar.tools.sidecar_process import SidecarProcess, sidecar_process

INDEX = "rescore-corpus"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
QUERY = {"match": {"body": "common"}}


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    # "common" everywhere (all match), repeated differently so BM25 gives distinct scores.
    return {"id": i, "title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}", "tag": f"t{i % 3}"}


CORPUS = [_doc(i) for i in range(40)]


@pytest.fixture(scope="session")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"tiny": tiny_cross_encoder}) as proc:
        yield proc


@pytest.fixture(scope="session")
def indexed(engine_node):
    client = engine_node.client()
    if client.indices.exists(index=INDEX):
        return engine_node
    ops = []
    for d in CORPUS:
        ops += [{"index": {"_index": INDEX, "_id": str(d["id"])}}, d]
    client.bulk(body=ops, refresh=True) if engine_node.engine == "opensearch" else client.bulk(operations=ops, refresh=True)
    return engine_node


def _config(sidecar: SidecarProcess, **sidecar_kw) -> ConnectorConfig:
    return ConnectorConfig(default=RerankOptions(window=20, fields=("title", "body")),
                           sidecar=SidecarClientConfig(targets=(sidecar.address,), **sidecar_kw))


def _wrap(node, mode: str, config: ConnectorConfig, **kw):
    if mode == "sync":
        cls = RescoringOpenSearch if node.engine == "opensearch" else RescoringElasticsearch
        return cls(node.client(), config, **kw)
    cls = AsyncRescoringOpenSearch if node.engine == "opensearch" else AsyncRescoringElasticsearch
    return cls(node.async_client(), config)


def _run(node, mode: str, config: ConnectorConfig, calls):
    """Runs `calls(client)` (a list of (method, kwargs)) with a sync or async wrapper; returns dicts."""
    if mode == "sync":
        client = _wrap(node, mode, config)
        try:
            return [dict(getattr(client, m)(**kw)) for m, kw in calls]
        finally:
            client.close()

    async def go():
        client = _wrap(node, mode, config)
        try:
            return [dict(await getattr(client, m)(**kw)) for m, kw in calls]
        finally:
            await client.close()

    return asyncio.run(go())


def _plain(node, body: dict) -> dict:
    return dict(node.client().search(index=INDEX, body=body))


def _sidecar_scores(sidecar: SidecarProcess, query: str, texts: list[str]) -> list[float]:
    with grpc.insecure_channel(sidecar.address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(rescore_pb2.RerankRequest(
            query=query, documents=[rescore_pb2.Document(id=str(i), text=t) for i, t in enumerate(texts)]), timeout=10)
    scores = [0.0] * len(texts)
    for r in reply.results:
        scores[r.index] = r.score
    return scores


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_order_is_the_window_sorted_by_sidecar_scores(indexed, sidecar, mode):
    (out,) = _run(indexed, mode, _config(sidecar), [("search", {"index": INDEX, "body": {"query": QUERY, "size": 25}})])
    engine = _plain(indexed, {"query": QUERY, "size": 25})["hits"]["hits"]
    window = engine[:20]
    scores = _sidecar_scores(sidecar, "common", [f"{h['_source']['title']}\n{h['_source']['body']}" for h in window])
    expected = [window[i]["_id"] for i in sorted(range(20), key=lambda i: (-scores[i], i))]
    hits = out["hits"]["hits"]
    assert [h["_id"] for h in hits[:20]] == expected
    assert [h["_id"] for h in hits[20:]] == [h["_id"] for h in engine[20:25]]  # after the window: engine order
    assert [h["_score"] for h in hits[:20]] == pytest.approx(sorted(scores, reverse=True), abs=1e-6)
    assert out["_rescore"]["reranked"] is True and out["_rescore"]["model"] == "tiny"
    assert out["hits"]["total"] == _plain(indexed, {"query": QUERY})["hits"]["total"]


def test_pages_one_to_three_are_consistent(indexed, sidecar):
    calls = [("search", {"index": INDEX, "body": {"query": QUERY, "size": 15}})]
    calls += [("search", {"index": INDEX, "body": {"query": QUERY, "from": 5 * p, "size": 5}}) for p in range(3)]
    full, *pages = _run(indexed, "sync", _config(sidecar), calls)
    assert [h["_id"] for page in pages for h in page["hits"]["hits"]] == [h["_id"] for h in full["hits"]["hits"]]


def test_source_filters_are_honoured(indexed, sidecar):
    no_source, only_id, excluded = _run(indexed, "sync", _config(sidecar), [
        ("search", {"index": INDEX, "body": {"query": QUERY, "_source": False}}),
        ("search", {"index": INDEX, "body": {"query": QUERY, "_source": ["id"]}}),
        ("search", {"index": INDEX, "body": {"query": QUERY, "_source": {"excludes": ["body"]}}}),
    ])
    for out in (no_source, only_id, excluded):
        assert out["_rescore"]["reranked"] is True
    assert all("_source" not in h for h in no_source["hits"]["hits"])
    assert all(set(h["_source"]) == {"id"} for h in only_id["hits"]["hits"])
    assert all(set(h["_source"]) == {"id", "title", "tag"} for h in excluded["hits"]["hits"])
    # Same order as an unfiltered search: the model saw the same text.
    (full,) = _run(indexed, "sync", _config(sidecar), [("search", {"index": INDEX, "body": {"query": QUERY}})])
    assert [h["_id"] for h in no_source["hits"]["hits"]] == [h["_id"] for h in full["hits"]["hits"]]


def test_explain_carries_original_score_and_rank(indexed, sidecar):
    (out,) = _run(indexed, "sync", _config(sidecar), [("search", {"index": INDEX, "body": {"query": QUERY, "explain": True}})])
    engine = _plain(indexed, {"query": QUERY, "size": 20})["hits"]["hits"]
    for hit in out["hits"]["hits"]:
        info = hit["_rescore"]
        assert engine[info["engine_rank"] - 1]["_id"] == hit["_id"]
        assert info["engine_score"] == pytest.approx(engine[info["engine_rank"] - 1]["_score"])
        assert info["model_score"] == pytest.approx(hit["_score"])
        assert "_explanation" in hit


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_msearch_reranks_each_sub_search(indexed, sidecar, mode):
    body = [{"index": INDEX}, {"query": QUERY, "size": 5}, {"index": INDEX}, {"query": {"match": {"body": "apple"}}},
            {"index": "no-such-index"}, {"query": QUERY}]
    single = [("search", {"index": INDEX, "body": {"query": QUERY, "size": 5}}),
              ("search", {"index": INDEX, "body": {"query": {"match": {"body": "apple"}}}})]
    out, *singles = _run(indexed, mode, _config(sidecar), [("msearch", {"body": body})] + single)
    subs = out["responses"]
    assert [s["_rescore"]["reranked"] for s in subs[:2]] == [True, True]
    for sub, one in zip(subs[:2], singles):
        assert [h["_id"] for h in sub["hits"]["hits"]] == [h["_id"] for h in one["hits"]["hits"]]
    assert "error" in subs[2] and "_rescore" not in subs[2]


def test_disabled_per_request_and_engine_errors_propagate(indexed, sidecar):
    (out,) = _run(indexed, "sync", _config(sidecar), [("search", {"index": INDEX, "body": {"query": QUERY}, "rerank": False})])
    assert out["_rescore"]["skipped"] == "disabled"
    assert [h["_id"] for h in out["hits"]["hits"]] == [h["_id"] for h in _plain(indexed, {"query": QUERY})["hits"]["hits"]]
    client = _wrap(indexed, "sync", _config(sidecar))
    plain = indexed.client()
    with pytest.raises(Exception) as wrapped_err:
        client.search(index="no-such-index", body={"query": QUERY})
    with pytest.raises(Exception) as plain_err:
        plain.search(index="no-such-index", body={"query": QUERY})
    assert type(wrapped_err.value) is type(plain_err.value)
    assert client.indices.exists(index=INDEX)  # pass-through of everything else


def _engine_ids(node, body):
    return [h["_id"] for h in _plain(node, body)["hits"]["hits"]]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fallback_when_sidecar_is_stopped(indexed, tiny_cross_encoder, mode):
    proc = SidecarProcess({"tiny": tiny_cross_encoder})  # never started: nothing listens
    (out,) = _run(indexed, mode, _config(proc, budget_ms=300),
                  [("search", {"index": INDEX, "body": {"query": QUERY, "from": 3, "size": 4}})])
    assert out["_rescore"]["fallback"] == "unavailable" and out["_rescore"]["reranked"] is False
    assert [h["_id"] for h in out["hits"]["hits"]] == _engine_ids(indexed, {"query": QUERY, "from": 3, "size": 4})


def test_fallback_when_sidecar_is_paused_past_budget(indexed, sidecar):
    sidecar.pause()
    try:
        t0 = time.monotonic()
        (out,) = _run(indexed, "sync", _config(sidecar, budget_ms=200), [("search", {"index": INDEX, "body": {"query": QUERY}})])
        assert time.monotonic() - t0 < 5
    finally:
        sidecar.resume()
    assert out["_rescore"]["fallback"] == "timeout"
    assert [h["_id"] for h in out["hits"]["hits"]] == _engine_ids(indexed, {"query": QUERY})


def test_fallback_when_sidecar_is_overloaded(indexed, tiny_cross_encoder):
    # A queue of 41 sequences that holds a 40-document request for 3 s (the batch waits for more
    # work): any search arriving meanwhile overflows it, a transient overload.
    extra = ["--max-queue-pairs", "41", "--max-wait-ms", "3000", "--max-batch-pairs", "1000",
             "--max-batch-tokens", "1000000"]
    with sidecar_process({"tiny": tiny_cross_encoder}, extra_args=extra) as small:
        # 40 distinct documents: identical ones would be queued once (the score cache computes a
        # sequence once however many requests ask for it).
        filler = rescore_pb2.RerankRequest(query="q", documents=[rescore_pb2.Document(text=f"x{i}") for i in range(40)])
        with grpc.insecure_channel(small.address) as channel:
            pending = rescore_pb2_grpc.RerankerStub(channel).Rerank.future(filler, timeout=30)
            deadline = time.monotonic() + 10
            while _queue_depth(small) < 40:
                assert time.monotonic() < deadline, "the filler request never reached the queue"
                time.sleep(0.02)
            (out,) = _run(indexed, "sync", _config(small), [("search", {"index": INDEX, "body": {"query": QUERY}})])
            pending.result()
    assert out["_rescore"]["fallback"] == "overloaded"
    assert [h["_id"] for h in out["hits"]["hits"]] == _engine_ids(indexed, {"query": QUERY})


def _queue_depth(proc: SidecarProcess) -> float:
    import urllib.request

    text = urllib.request.urlopen(proc.metrics_url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("rescore_queue_depth{"))


def test_breaker_opens_and_closes_after_sidecar_returns(indexed, tiny_cross_encoder):
    breaker = BreakerConfig(window_size=4, minimum_calls=2, failure_rate=0.5, open_seconds=30.0, half_open_calls=1)
    proc = SidecarProcess({"tiny": tiny_cross_encoder})
    config = _config(proc, budget_ms=300, breaker=breaker, retry=False)
    now = [0.0]  # the breaker's clock: the open period passes when the test says so
    rescorer = Rescorer(config, sidecar=SidecarClient(config.sidecar, clock=lambda: now[0]))
    client = _wrap(indexed, "sync", config, rescorer=rescorer)
    try:
        reasons = [client.search(index=INDEX, body={"query": QUERY})["_rescore"]["fallback"] for _ in range(4)]
        assert reasons == ["unavailable", "unavailable", "breaker_open", "breaker_open"]
        proc.start()
        assert client.search(index=INDEX, body={"query": QUERY})["_rescore"]["fallback"] == "breaker_open"
        now[0] += 30.0
        out = client.search(index=INDEX, body={"query": QUERY})  # the half-open probe reaches the sidecar
        assert out["_rescore"]["reranked"] is True
        assert rescorer.sidecar.endpoints.breakers[proc.address].state == "closed"
        assert client.search(index=INDEX, body={"query": QUERY})["_rescore"]["reranked"] is True
    finally:
        rescorer.sidecar.close()
        proc.close()
