"""The selective-threshold and window sweep, computed offline from engine and model scores."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core.selective import top_gap
from rescore_sidecar.tools.eval.sweep import QueryHits, reranked, sweep, table

# Three queries, four hits each; the relevant document is d3 (last in engine order) everywhere.
QRELS = {q: {f"{q}-d3": 1} for q in ("a", "b", "c")}


def hits(q: str, engine_scores: list[float]) -> QueryHits:
    ids = [f"{q}-d{i}" for i in range(4)]
    return QueryHits(ids, engine_scores, {ids[i]: float(i) for i in range(4)})  # the model puts d3 first


HITS = {"a": hits("a", [10.0, 9.0, 8.0, 7.0]),    # gap 1/3
        "b": hits("b", [10.0, 2.0, 1.5, 1.0]),    # gap 8/9: confident
        "c": hits("c", [10.0, 9.9, 9.8, 1.0])}    # gap ~0.011


def test_reranked_orders_only_the_window_by_model_score():
    assert reranked(HITS["a"], 2) == ["a-d1", "a-d0", "a-d2", "a-d3"]
    assert reranked(HITS["a"], 4)[0] == "a-d3"


def test_thresholds_send_exactly_the_searches_below_the_gap():
    by_threshold, by_window = sweep(QRELS, HITS, window=4, thresholds=(0.0, 0.5, 1.0), windows=(4, 2))
    rows = {r.label: r for r in by_threshold}
    assert rows["engine order"].ndcg == pytest.approx(1 / 3 * (3 * (1 / 2.321928)), rel=1e-3)  # rank 4 each
    assert rows["window 4, every search"].ndcg == pytest.approx(1.0)
    assert rows["t=0"].searches_sent == 0.0  # every gap >= 0: all confident
    expected = [q for q in HITS if top_gap(HITS[q].engine_scores) < 0.5]
    assert sorted(expected) == ["a", "c"]
    assert rows["t=0.5"].searches_sent == pytest.approx(2 / 3) and rows["t=0.5"].pairs_sent == pytest.approx(2 / 3)
    # b skipped: its relevant hit stays at rank 4, a and c get it at rank 1.
    assert rows["t=0.5"].ndcg == pytest.approx((1 + 1 + 1 / 2.321928) / 3, rel=1e-3)
    assert rows["t=1"].searches_sent == 1.0
    windows = {r.label: r for r in by_window}
    assert windows["window 2"].pairs_sent == pytest.approx(0.5)
    assert windows["window 2"].ndcg == pytest.approx(rows["engine order"].ndcg)  # d3 is outside the top 2
    assert "| t=0.5 |" in table(by_threshold, by_window)
