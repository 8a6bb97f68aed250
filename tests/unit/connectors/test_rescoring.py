"""Rescorer / AsyncRescorer over a plain engine function and `MockSidecar`: reorder, fallback by
reason, engine errors, msearch, Elasticsearch answers; both shells give the same answers."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig, ObjectApiResponse

from rescore_sidecar.connectors import (AsyncRescorer, AsyncSidecarClient, BreakerConfig, ConnectorConfig,
                                        RerankOptions, Rescorer, SidecarClient, SidecarClientConfig, metrics)
from rescore_sidecar.connectors.testing import Fault, MockSidecar

CONFIG = ConnectorConfig(default=RerankOptions(window=4, fields=("text",)),
                         sidecar=SidecarClientConfig(targets=("a:1",), retry=False,
                                                     breaker=BreakerConfig(window_size=2, minimum_calls=2,
                                                                           open_seconds=60)))
BODY = {"query": {"match": {"text": "fox"}}, "size": 3}


def answer(n: int = 4) -> dict:
    hits = [{"_index": "i", "_id": str(i), "_score": float(n - i), "_source": {"text": f"doc {i}" + " fox" * i}}
            for i in range(n)]
    return {"took": 1, "hits": {"total": {"value": n, "relation": "eq"}, "max_score": float(n), "hits": hits}}


def by_fox_count(address, query, texts):
    return [float(t.count("fox")) for t in texts]


class Run:
    """The same calls through the sync or the async shell."""

    def __init__(self, kind: str, mock: MockSidecar, config: ConnectorConfig = CONFIG):
        self.kind = kind
        if kind == "sync":
            self.rescorer = Rescorer(config, sidecar=SidecarClient(config.sidecar, transport=mock))
        else:
            self.rescorer = AsyncRescorer(config, sidecar=AsyncSidecarClient(config.sidecar, transport=mock))

    def search(self, engine, body=BODY, **kw):
        if self.kind == "sync":
            return self.rescorer.search(lambda b, p: engine(b, p), body, {}, **kw)

        async def engine_async(b, p):
            return engine(b, p)

        return asyncio.run(self.rescorer.search(engine_async, body, {}, **kw))

    def msearch(self, engine, searches, **kw):
        if self.kind == "sync":
            return self.rescorer.msearch(lambda lines, p: engine(lines, p), searches, {}, **kw)

        async def engine_async(lines, p):
            return engine(lines, p)

        return asyncio.run(self.rescorer.msearch(engine_async, searches, {}, **kw))


@pytest.fixture(params=["sync", "async"])
def kind(request):
    return request.param


def test_reranks_the_window_and_asks_the_engine_for_it(kind):
    sent = []
    run = Run(kind, MockSidecar(by_fox_count))
    out = run.search(lambda b, p: sent.append(b) or answer())
    assert sent[0]["size"] == 4 and sent[0]["from"] == 0  # the whole window
    assert [h["_id"] for h in out["hits"]["hits"]] == ["3", "2", "1"]
    assert out["_rescore"]["reranked"] is True and out["_rescore"]["model"] == "mock-model"


@pytest.mark.parametrize("fault,reason", [(Fault.too_large(), "too_large"), (Fault.overloaded(), "overloaded"),
                                          (Fault.unavailable(), "unavailable")])
def test_sidecar_failures_fall_back_to_engine_order_with_the_reason(kind, fault, reason):
    before = metrics.FALLBACKS.labels(reason)._value.get()
    out = Run(kind, MockSidecar.script(fault)).search(lambda b, p: answer())
    assert [h["_id"] for h in out["hits"]["hits"]] == ["0", "1", "2"]
    assert out["_rescore"] == {**out["_rescore"], "reranked": False, "fallback": reason}
    assert metrics.FALLBACKS.labels(reason)._value.get() == before + 1


def test_breaker_opens_on_overload_but_not_on_too_large(kind):
    run = Run(kind, MockSidecar.script(Fault.too_large()))
    marks = [run.search(lambda b, p: answer())["_rescore"]["fallback"] for _ in range(4)]
    assert marks == ["too_large"] * 4
    # The breaker alone (a fixed window): with the brownout, overload is first the window's business
    # (tests/unit/connectors/test_rescoring_window.py).
    fixed = dataclasses.replace(CONFIG, default=dataclasses.replace(CONFIG.default, adaptive=False))
    run = Run(kind, MockSidecar.script(Fault.overloaded()), fixed)
    marks = [run.search(lambda b, p: answer())["_rescore"]["fallback"] for _ in range(4)]
    assert marks == ["overloaded", "overloaded", "breaker_open", "breaker_open"]


def test_a_bug_in_the_sidecar_path_is_a_connector_error_fallback(kind):
    def broken(address, query, texts):
        raise RuntimeError("bug")

    out = Run(kind, MockSidecar(broken)).search(lambda b, p: answer())
    assert out["_rescore"]["fallback"] == "connector_error"
    assert [h["_id"] for h in out["hits"]["hits"]] == ["0", "1", "2"]


def test_engine_errors_propagate_untouched(kind):
    class EngineDown(Exception):
        pass

    def engine(b, p):
        raise EngineDown("503")

    mock = MockSidecar()
    with pytest.raises(EngineDown):
        Run(kind, mock).search(engine)
    assert mock.calls == []


def test_rerank_false_skips_the_sidecar(kind):
    mock = MockSidecar()
    out = Run(kind, mock).search(lambda b, p: answer(), rerank=False)
    assert mock.calls == [] and out["_rescore"]["reranked"] is False


def test_msearch_reranks_each_and_keeps_errors(kind):
    def engine(lines, p):
        assert len(lines) == 6
        return {"took": 1, "responses": [answer(), {"error": {"type": "index_not_found"}, "status": 404}, answer(2)]}

    searches = [{"index": "i"}, BODY, {"index": "x"}, BODY, {"index": "i"}, BODY]
    out = Run(kind, MockSidecar(by_fox_count)).msearch(engine, searches)
    first, error, third = out["responses"]
    assert [h["_id"] for h in first["hits"]["hits"]] == ["3", "2", "1"]
    assert error == {"error": {"type": "index_not_found"}, "status": 404}
    assert [h["_id"] for h in third["hits"]["hits"]] == ["1", "0"]


def test_elasticsearch_answers_keep_their_type_and_meta(kind):
    meta = ApiResponseMeta(status=200, http_version="1.1", headers=HttpHeaders({"x-elastic-product": "Elasticsearch"}),
                           duration=0.01, node=NodeConfig("http", "127.0.0.1", 9200))
    out = Run(kind, MockSidecar(by_fox_count)).search(lambda b, p: ObjectApiResponse(body=answer(), meta=meta))
    assert isinstance(out, ObjectApiResponse) and out.meta is meta
    assert [h["_id"] for h in out.body["hits"]["hits"]] == ["3", "2", "1"]


def test_sync_and_async_answer_alike():
    def strip(out):
        return {k: v for k, v in out.items() if k != "_rescore"}

    sync = Run("sync", MockSidecar(by_fox_count)).search(lambda b, p: answer())
    async_ = Run("async", MockSidecar(by_fox_count)).search(lambda b, p: answer())
    assert strip(sync) == strip(async_)
