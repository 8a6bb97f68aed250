"""The rescoring core over plain dicts: planning, _source transparency, policies, pages."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors import core
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


def test_plan_asks_for_the_whole_window_from_zero():
    p = core.plan_search({"query": {"match": {"title": "q"}}, "from": 2, "size": 1}, {}, OPTS)
    assert p.skip is None and p.body["from"] == 0 and p.body["size"] == 4
    assert (p.offset, p.size, p.query_text) == (2, 1, "q")
    p = core.plan_search({"query": {"match": {"title": "q"}}, "from": 5, "size": 3}, {}, OPTS)
    assert p.body["size"] == 8  # past the window: the engine's order continues


@pytest.mark.parametrize("body,params,reason", [
    ({"query": {"match": {"t": "q"}}, "search_after": [1]}, {}, "search_after"),
    ({"query": {"match": {"t": "q"}}}, {"scroll": "1m"}, "scroll"),
    ({"query": {"match": {"t": "q"}}, "sort": [{"date": "desc"}]}, {}, "sort"),
    ({"query": {"match": {"t": "q"}}, "size": 0}, {}, "size_zero"),
    ({"query": {"match_all": {}}}, {}, "no_query_text"),
    ({"query": {"match": {"t": "q"}}}, {"filter_path": "hits.hits._id"}, "filter_path"),
])
def test_unrerankable_requests_are_sent_unchanged(body, params, reason):
    p = core.plan_search(body, params, OPTS)
    assert p.skip == reason and p.body == body and p.params == params


def test_sort_by_score_is_still_reranked():
    assert core.plan_search({"query": {"match": {"t": "q"}}, "sort": ["_score"]}, {}, OPTS).skip is None


def test_bad_from_is_a_clear_error():
    with pytest.raises(ValueError, match="from must be"):
        core.plan_search({"query": {"match": {"t": "q"}}, "from": -1}, {}, OPTS)


def test_query_text_found_inside_bool_but_not_in_filters():
    q = {"bool": {"filter": [{"match": {"lang": "en"}}], "must": [{"multi_match": {"query": "real text"}}]}}
    assert core.extract_query_text(q) == "real text"
    assert core.extract_query_text({"match": {"t": {"query": "x y"}}}) == "x y"


def test_source_false_fetches_fields_then_drops_source():
    p = core.plan_search({"query": {"match": {"t": "q"}}, "_source": False}, {}, OPTS)
    assert p.body["_source"] == {"includes": ["title", "meta.body"]}
    out = core.apply_scores(_response(4), p, {0: 0.1, 1: 0.9, 2: 0.5, 3: 0.2}, core.marker(reranked=True))
    assert all("_source" not in h for h in out["hits"]["hits"])
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2", "d3", "d0"][:10]


def test_source_includes_are_widened_and_restored():
    p = core.plan_search({"query": {"match": {"t": "q"}}}, {"_source_includes": "extra,title"}, OPTS)
    assert p.body["_source"]["includes"] == ["extra", "title", "meta.body"]
    assert "_source_includes" not in p.params
    engine = _response(2)
    for h in engine["hits"]["hits"]:  # what the engine returns for the widened filter
        h["_source"] = {"title": h["_source"]["title"], "extra": h["_source"]["extra"],
                        "meta": {"body": h["_source"]["meta"]["body"]}}
    out = core.apply_scores(engine, p, {0: 0.2, 1: 0.3}, core.marker(reranked=True))
    assert [sorted(h["_source"]) for h in out["hits"]["hits"]] == [["extra", "title"], ["extra", "title"]]


def test_source_excludes_touching_needed_fields_are_applied_locally():
    p = core.plan_search({"query": {"match": {"t": "q"}}, "_source": {"excludes": ["meta.*", "extra"]}}, {}, OPTS)
    assert p.body["_source"] == {"excludes": ["extra"]}
    engine = _response(1)
    for h in engine["hits"]["hits"]:
        del h["_source"]["extra"]
    out = core.apply_scores(engine, p, {0: 1.0}, core.marker(reranked=True))
    # What the engine answers for the caller's own excludes: the emptied object stays, as `{}`.
    assert out["hits"]["hits"][0]["_source"] == {"title": "t0", "meta": {}}


def test_replace_policy_orders_window_and_keeps_rest_in_engine_order():
    p = core.plan_search({"query": {"match": {"t": "q"}}, "size": 6}, {}, OPTS)
    engine = _response(6)
    out = core.apply_scores(engine, p, {0: 0.1, 1: 0.4, 2: 0.9, 3: 0.3}, core.marker(reranked=True))
    hits = out["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["d2", "d1", "d3", "d0", "d4", "d5"]
    assert [h["_score"] for h in hits[:4]] == [0.9, 0.4, 0.3, 0.1]
    assert hits[4]["_score"] == 2.0  # after the window: the engine's own score
    assert out["hits"]["max_score"] == 2.0 and out["_rescore"]["reranked"] is True
    assert engine["hits"]["hits"][0]["_id"] == "d0"  # input not mutated


def test_pages_are_slices_of_one_reranked_list():
    scores = {0: 0.1, 1: 0.4, 2: 0.9, 3: 0.3}
    full = core.apply_scores(_response(4), core.plan_search({"query": {"match": {"t": "q"}}, "size": 4}, {}, OPTS),
                             scores, {})
    pages = []
    for page in range(2):
        p = core.plan_search({"query": {"match": {"t": "q"}}, "from": 2 * page, "size": 2}, {}, OPTS)
        pages += [h["_id"] for h in core.apply_scores(_response(4), p, scores, {})["hits"]["hits"]]
    assert pages == [h["_id"] for h in full["hits"]["hits"]]


def test_hits_without_text_go_last_in_window():
    resp = _response(3)
    resp["hits"]["hits"][0]["_source"] = {"unrelated": 1}
    p = core.plan_search({"query": {"match": {"t": "q"}}}, {}, OPTS)
    assert [i for i, _ in core.documents(resp, p)] == [1, 2]
    out = core.apply_scores(resp, p, {1: 0.2, 2: 0.6}, {})
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d2", "d1", "d0"]


def test_text_joins_fields_lists_and_caps():
    opts = RerankOptions(fields=("a", "b.c"), separator=" | ", max_chars=12)
    assert core.hit_text({"_source": {"a": ["x", "y"], "b": {"c": "zzzzzzzzzz"}}}, opts) == "x y | zzzzzz"
    assert core.hit_text({"_source": {"b.c": "dotted"}}, RerankOptions(fields=("b.c",))) == "dotted"
    assert core.hit_text({"_source": {}}, opts) is None


def test_linear_and_rrf_policies():
    resp = _response(3)
    lin = RerankOptions(window=3, fields=("title",), policy="linear", model_weight=1.0)
    p = core.plan_search({"query": {"match": {"t": "q"}}}, {}, lin)
    out = core.apply_scores(resp, p, {0: 0.0, 1: 1.0, 2: 0.5}, {})
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2", "d0"]
    assert out["hits"]["hits"][0]["_score"] == pytest.approx(1.0)
    half = RerankOptions(window=3, fields=("title",), policy="linear", model_weight=0.5)
    out = core.apply_scores(resp, core.plan_search({"query": {"match": {"t": "q"}}}, {}, half), {0: 0.0, 1: 1.0, 2: 0.5}, {})
    # engine norm (1, .5, 0) + model norm (0, 1, .5), halves: d1 = .75, d0 = .5, d2 = .25
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d0", "d2"]
    rrf = RerankOptions(window=3, fields=("title",), policy="rrf", rrf_k=1)
    out = core.apply_scores(resp, core.plan_search({"query": {"match": {"t": "q"}}}, {}, rrf), {0: 0.0, 1: 1.0, 2: 0.5}, {})
    # d0: 1/2+1/4, d1: 1/3+1/2, d2: 1/4+1/3
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d0", "d2"]
    assert out["hits"]["hits"][0]["_score"] == pytest.approx(1 / 3 + 1 / 2)


def test_explain_adds_original_score_and_rank():
    p = core.plan_search({"query": {"match": {"t": "q"}}, "explain": True}, {}, OPTS)
    out = core.apply_scores(_response(2), p, {0: 0.1, 1: 0.9}, {})
    assert out["hits"]["hits"][0]["_rescore"] == {"engine_score": 1.0, "engine_rank": 2, "model_score": 0.9}


def test_engine_order_fallback_keeps_order_and_caller_shape():
    p = core.plan_search({"query": {"match": {"t": "q"}}, "from": 1, "size": 2, "_source": False}, {}, OPTS)
    out = core.engine_order(_response(4), p, core.marker(reranked=False, fallback="timeout"))
    assert [h["_id"] for h in out["hits"]["hits"]] == ["d1", "d2"]
    assert all("_source" not in h for h in out["hits"]["hits"])
    assert out["_rescore"]["fallback"] == "timeout"


def test_options_validation():
    with pytest.raises(ValueError, match="policy"):
        RerankOptions(policy="max")
    with pytest.raises(ValueError, match="window"):
        RerankOptions(window=0)
    with pytest.raises(ValueError, match="unknown rerank option"):
        RerankOptions().replace({"windw": 3})
    assert RerankOptions().replace({"fields": ["a", "b"]}).fields == ("a", "b")
