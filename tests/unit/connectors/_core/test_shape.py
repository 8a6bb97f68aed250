"""The caller's response over plain dicts: _source transparency, policies (fuse), pages, explain, fallback."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core.plan import plan_search
from rescore_sidecar.connectors._core.shape import apply_scores, engine_order, marker
from rescore_sidecar.connectors._core.text import documents
from rescore_sidecar.connectors.config import RerankOptions

OPTS = RerankOptions(window=4, fields=("title", "meta.body"))


def _response(n: int, with_source: bool = True) -> dict:
    hits = []
    for i in range(n):
        h = {"_index": "i", "_id": f"d{i}", "_score": float(n - i)}
        if with_source:
            h["_source"] = {"title": f"t{i}", "meta": {"body": f"b{i}", "other": i}, "extra": i}
        hits.append(h)
    return {"took": 1, "hits": {"total": {"value": n, "relation": "eq"}, "max_score": float(n), "hits": hits}}


def test_source_false_fetches_fields_then_drops_source():
    p = plan_search({"query": {"match": {"t": "q"}}, "_source": False}, {}, OPTS)
    assert p.body["_source"] == {"includes": ["title", "meta.body"]}
    out = apply_scores(_response(4), p, {0: 0.1, 1: 0.9, 2: 0.5, 3: 0.2}, marker(reranked=True))
    assert all("_source" not in h for h in out["hits"]["hits"])
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2", "d3", "d0"][:10]


def test_source_includes_are_widened_and_restored():
    p = plan_search({"query": {"match": {"t": "q"}}}, {"_source_includes": "extra,title"}, OPTS)
    assert p.body["_source"]["includes"] == ["extra", "title", "meta.body"]
    assert "_source_includes" not in p.params
    engine = _response(2)
    for h in engine["hits"]["hits"]:  # what the engine returns for the widened filter
        h["_source"] = {"title": h["_source"]["title"], "extra": h["_source"]["extra"],
                        "meta": {"body": h["_source"]["meta"]["body"]}}
    out = apply_scores(engine, p, {0: 0.2, 1: 0.3}, marker(reranked=True))
    assert [sorted(h["_source"]) for h in out["hits"]["hits"]] == [["extra", "title"], ["extra", "title"]]


def test_source_excludes_touching_needed_fields_are_applied_locally():
    p = plan_search({"query": {"match": {"t": "q"}}, "_source": {"excludes": ["meta.*", "extra"]}}, {}, OPTS)
    assert p.body["_source"] == {"excludes": ["extra"]}
    engine = _response(1)
    for h in engine["hits"]["hits"]:
        del h["_source"]["extra"]
    out = apply_scores(engine, p, {0: 1.0}, marker(reranked=True))
    # What the engine answers for the caller's own excludes: the emptied object stays, as `{}`.
    assert out["hits"]["hits"][0]["_source"] == {"title": "t0", "meta": {}}


def test_replace_policy_orders_window_and_keeps_rest_in_engine_order():
    p = plan_search({"query": {"match": {"t": "q"}}, "size": 6}, {}, OPTS)
    engine = _response(6)
    out = apply_scores(engine, p, {0: 0.1, 1: 0.4, 2: 0.9, 3: 0.3}, marker(reranked=True))
    hits = out["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["d2", "d1", "d3", "d0", "d4", "d5"]
    assert [h["_score"] for h in hits[:4]] == [0.9, 0.4, 0.3, 0.1]
    assert hits[4]["_score"] == 2.0  # after the window: the engine's own score
    assert out["hits"]["max_score"] == 2.0 and out["_rescore"]["reranked"] is True
    assert engine["hits"]["hits"][0]["_id"] == "d0"  # input not mutated


def test_pages_are_slices_of_one_reranked_list():
    scores = {0: 0.1, 1: 0.4, 2: 0.9, 3: 0.3}
    full = apply_scores(_response(4), plan_search({"query": {"match": {"t": "q"}}, "size": 4}, {}, OPTS),
                             scores, {})
    pages = []
    for page in range(2):
        p = plan_search({"query": {"match": {"t": "q"}}, "from": 2 * page, "size": 2}, {}, OPTS)
        pages += [h["_id"] for h in apply_scores(_response(4), p, scores, {})["hits"]["hits"]]
    assert pages == [h["_id"] for h in full["hits"]["hits"]]


def test_hits_without_text_go_last_in_window():
    resp = _response(3)
    resp["hits"]["hits"][0]["_source"] = {"unrelated": 1}
    p = plan_search({"query": {"match": {"t": "q"}}}, {}, OPTS)
    assert [i for i, _ in documents(resp, p)] == [1, 2]
    out = apply_scores(resp, p, {1: 0.2, 2: 0.6}, {})
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d2", "d1", "d0"]


def test_linear_and_rrf_policies():
    resp = _response(3)
    lin = RerankOptions(window=3, fields=("title",), policy="linear", model_weight=1.0)
    p = plan_search({"query": {"match": {"t": "q"}}}, {}, lin)
    out = apply_scores(resp, p, {0: 0.0, 1: 1.0, 2: 0.5}, {})
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2", "d0"]
    assert out["hits"]["hits"][0]["_score"] == pytest.approx(1.0)
    half = RerankOptions(window=3, fields=("title",), policy="linear", model_weight=0.5)
    out = apply_scores(resp, plan_search({"query": {"match": {"t": "q"}}}, {}, half), {0: 0.0, 1: 1.0, 2: 0.5}, {})
    # engine norm (1, .5, 0) + model norm (0, 1, .5), halves: d1 = .75, d0 = .5, d2 = .25
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d0", "d2"]
    rrf = RerankOptions(window=3, fields=("title",), policy="rrf", rrf_k=1)
    out = apply_scores(resp, plan_search({"query": {"match": {"t": "q"}}}, {}, rrf), {0: 0.0, 1: 1.0, 2: 0.5}, {})
    # d0: 1/2+1/4, d1: 1/3+1/2, d2: 1/4+1/3
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d0", "d2"]
    assert out["hits"]["hits"][0]["_score"] == pytest.approx(1 / 3 + 1 / 2)


def test_explain_adds_original_score_and_rank():
    p = plan_search({"query": {"match": {"t": "q"}}, "explain": True}, {}, OPTS)
    out = apply_scores(_response(2), p, {0: 0.1, 1: 0.9}, {})
    assert out["hits"]["hits"][0]["_rescore"] == {"engine_score": 1.0, "engine_rank": 2, "model_score": 0.9}


def test_engine_order_fallback_keeps_order_and_caller_shape():
    p = plan_search({"query": {"match": {"t": "q"}}, "from": 1, "size": 2, "_source": False}, {}, OPTS)
    out = engine_order(_response(4), p, marker(reranked=False, fallback="timeout"))
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2"]
    assert all("_source" not in h for h in out["hits"]["hits"])
    assert out["_rescore"]["fallback"] == "timeout"
