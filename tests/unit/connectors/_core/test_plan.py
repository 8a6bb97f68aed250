"""Planning over plain dicts: the window asked for, requests sent unchanged, the query text, options."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core.plan import extract_query_text, plan_search
from rescore_sidecar.connectors.config import RerankOptions

OPTS = RerankOptions(window=4, fields=("title", "meta.body"))


def test_plan_asks_for_the_whole_window_from_zero():
    p = plan_search({"query": {"match": {"title": "q"}}, "from": 2, "size": 1}, {}, OPTS)
    assert p.skip is None and p.body["from"] == 0 and p.body["size"] == 4
    assert (p.offset, p.size, p.query_text) == (2, 1, "q")
    p = plan_search({"query": {"match": {"title": "q"}}, "from": 5, "size": 3}, {}, OPTS)
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
    p = plan_search(body, params, OPTS)
    assert p.skip == reason and p.body == body and p.params == params


def test_sort_by_score_is_still_reranked():
    assert plan_search({"query": {"match": {"t": "q"}}, "sort": ["_score"]}, {}, OPTS).skip is None


def test_bad_from_is_a_clear_error():
    with pytest.raises(ValueError, match="from must be"):
        plan_search({"query": {"match": {"t": "q"}}, "from": -1}, {}, OPTS)


def test_query_text_found_inside_bool_but_not_in_filters():
    q = {"bool": {"filter": [{"match": {"lang": "en"}}], "must": [{"multi_match": {"query": "real text"}}]}}
    assert extract_query_text(q) == "real text"
    assert extract_query_text({"match": {"t": {"query": "x y"}}}) == "x y"


def test_options_validation():
    with pytest.raises(ValueError, match="policy"):
        RerankOptions(policy="max")
    with pytest.raises(ValueError, match="window"):
        RerankOptions(window=0)
    with pytest.raises(ValueError, match="unknown rerank option"):
        RerankOptions().replace({"windw": 3})
    assert RerankOptions().replace({"fields": ["a", "b"]}).fields == ("a", "b")

