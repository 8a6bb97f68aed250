"""The drop-in wrappers over stand-in engine clients and `MockSidecar`: what reaches the engine
client, the reranked answer, pass-through attributes, close() and context managers."""
from __future__ import annotations

import asyncio

from rescore_sidecar.connectors import (AsyncRescorer, AsyncRescoringOpenSearch, AsyncSidecarClient, ConnectorConfig,
                                        RerankOptions, Rescorer, RescoringElasticsearch, RescoringOpenSearch,
                                        SidecarClient, SidecarClientConfig)
from rescore_sidecar.connectors.testing import MockSidecar

CONFIG = ConnectorConfig(default=RerankOptions(window=3, fields=("text",)),
                         sidecar=SidecarClientConfig(targets=("a:1",)))
HITS = {"hits": {"max_score": 3.0, "hits": [{"_id": str(i), "_score": 3.0 - i, "_source": {"text": f"fox {i}"}}
                                            for i in range(3)]}}


def reverse(address, query, texts):
    return [float(i) for i in range(len(texts))]  # the model prefers the engine's last hit


class OpenSearchStandIn:
    def __init__(self):
        self.calls, self.closed = [], False

    def search(self, **kw):
        self.calls.append(kw)
        return HITS

    def info(self):
        return {"version": "x"}

    def close(self):
        self.closed = True


def _sync(client):
    rescorer = Rescorer(CONFIG, sidecar=SidecarClient(CONFIG.sidecar, transport=MockSidecar(reverse)))
    return RescoringOpenSearch(client, CONFIG, rescorer=rescorer)


def test_opensearch_search_reranks_and_passes_params():
    engine = OpenSearchStandIn()
    wrapped = _sync(engine)
    out = wrapped.search(index="docs", body={"query": {"match": {"text": "fox"}}, "size": 2},
                         request_cache=False, headers={"x": "y"})
    assert [h["_id"] for h in out["hits"]["hits"]] == ["2", "1"]
    call = engine.calls[0]
    assert (call["index"], call["params"], call["headers"]) == ("docs", {"request_cache": "false"}, {"x": "y"})
    assert call["body"]["size"] == 3
    assert wrapped.info() == {"version": "x"}  # everything else passes through


def test_sync_wrapper_closes_engine_client_and_sidecar_channels():
    engine = OpenSearchStandIn()
    with _sync(engine) as wrapped:
        wrapped.search(body={"query": {"match": {"text": "fox"}}})
        closed = []
        wrapped.rescorer.sidecar.close = lambda: closed.append(True)
    assert engine.closed and closed == [True]


def test_real_sidecar_channels_close_with_the_wrapper():
    engine = OpenSearchStandIn()
    wrapped = RescoringOpenSearch(engine, ConnectorConfig(sidecar=SidecarClientConfig(
        targets=("127.0.0.1:1",), retry=False, budget_ms=100)))
    assert wrapped.search(body={"query": {"match": {"text": "fox"}}})["_rescore"]["fallback"] == "unavailable"
    assert wrapped.rescorer.sidecar._channels.open_addresses()
    wrapped.close()
    assert not wrapped.rescorer.sidecar._channels.open_addresses() and engine.closed


def test_elasticsearch_keywords_become_body_and_params():
    class ESStandIn:
        def __init__(self):
            self.calls = []

        def search(self, **kw):
            self.calls.append(kw)
            return HITS

    engine = ESStandIn()
    rescorer = Rescorer(CONFIG, sidecar=SidecarClient(CONFIG.sidecar, transport=MockSidecar(reverse)))
    out = RescoringElasticsearch(engine, CONFIG, rescorer=rescorer).search(
        index="docs", query={"match": {"text": "fox"}}, size=2, source_includes=["text"], request_cache=True)
    assert [h["_id"] for h in out["hits"]["hits"]] == ["2", "1"]
    call = engine.calls[0]
    assert call["index"] == "docs" and call["body"]["query"] == {"match": {"text": "fox"}}
    # The source filter moves into the body (the plan merges it with the fields it reads).
    assert call["body"]["_source"] == {"includes": ["text"]} and "source_includes" not in call
    assert call["request_cache"] is True


def test_async_wrapper_context_manager_closes_both():
    class AsyncStandIn:
        closed = False

        async def search(self, **kw):
            return HITS

        async def close(self):
            self.closed = True

    engine = AsyncStandIn()

    async def run():
        rescorer = AsyncRescorer(CONFIG, sidecar=AsyncSidecarClient(CONFIG.sidecar, transport=MockSidecar(reverse)))
        async with AsyncRescoringOpenSearch(engine, CONFIG, rescorer=rescorer) as wrapped:
            return await wrapped.search(body={"query": {"match": {"text": "fox"}}, "size": 2})

    out = asyncio.run(run())
    assert [h["_id"] for h in out["hits"]["hits"]] == ["2", "1"] and engine.closed
