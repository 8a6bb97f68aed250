"""What a search's marker(s) put on its rescore.search span (connectors/_core/spans.py)."""
from __future__ import annotations

from rescore_sidecar.connectors._core.shape import marker
from rescore_sidecar.connectors._core.spans import attributes


def test_search_attributes_from_its_marker():
    body = {"hits": {"hits": []}, "_rescore": marker(reranked=False, arm="b", fallback="timeout", window=20,
                                                     window_reason="latency")}
    assert attributes(body) == {"rescore.outcome": "fallback", "rescore.fallback_reason": "timeout",
                                "rescore.window": 20, "rescore.window_reason": "latency", "rescore.arm": "b"}


def test_msearch_attributes_sum_up_its_searches():
    responses = [{"_rescore": marker(reranked=True, arm="a", window=10)},
                 {"_rescore": marker(reranked=False, arm="b", fallback="overloaded", window=5)},
                 {"_rescore": marker(reranked=False, skipped="no_text")},
                 {"error": {"type": "x"}}]
    assert attributes({"responses": responses}) == {
        "rescore.searches": 3, "rescore.outcome": "fallback", "rescore.fallback_reason": "overloaded",
        "rescore.skipped": "no_text", "rescore.window": 10, "rescore.arm": "a,b"}


def test_an_answer_without_a_marker_sets_nothing():
    assert attributes({"hits": {}}) == {} and attributes("not json") == {}
    reranked = attributes({"_rescore": marker(reranked=True, window=3)})
    assert reranked == {"rescore.outcome": "reranked", "rescore.window": 3}
