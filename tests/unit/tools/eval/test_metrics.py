"""Metrics agree with trec_eval (pytrec_eval) and with hand computation; comparisons are paired."""
from __future__ import annotations

import math
import random

import pytest

from rescore_sidecar.tools.eval.metrics import compare, latency_summary, per_query_scores

pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier (dev extra) is the reference")


def _trec(qrels, rankings, k_recall: int) -> dict[str, dict[str, float]]:
    """trec_eval on the same rankings (strictly decreasing scores so its tie-breaking never kicks in)."""
    def run(cut: int | None):
        return {q: {d: float(len(r) - i) for i, d in enumerate(r[:cut])} for q, r in rankings.items() if r}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", f"recall.{k_recall}"}).evaluate(run(None))
    top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run(10))
    return {q: {"ndcg@10": full[q]["ndcg_cut_10"], "mrr@10": top10[q]["recip_rank"],
                f"recall@{k_recall}": full[q][f"recall_{k_recall}"]} for q in full}


def test_hand_computed_case() -> None:
    qrels = {"q": {"d1": 3, "d2": 1, "d9": 2, "dx": 0}}
    ranking = {"q": ["dx", "d1", "d5", "d2"]}
    got = per_query_scores(qrels, ranking, ["ndcg@10", "mrr@10", "recall@3"], ["q"])
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@10"]["q"] == pytest.approx(dcg / ideal)
    assert got["mrr@10"]["q"] == pytest.approx(1 / 2)      # first relevant at rank 2; dx has gain 0
    assert got["recall@3"]["q"] == pytest.approx(1 / 3)    # d1 of {d1, d2, d9} in the top 3


def test_order_is_taken_from_the_list_not_re_sorted() -> None:
    qrels = {"q": {"a": 1}}
    assert per_query_scores(qrels, {"q": ["b", "a"]}, ["mrr@10"], ["q"])["mrr@10"]["q"] == 0.5
    assert per_query_scores(qrels, {"q": ["a", "b"]}, ["mrr@10"], ["q"])["mrr@10"]["q"] == 1.0


def test_mrr_cutoff_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"hit": 1}, "q2": {"a": 1}, "q3": {"b": 2}}
    rankings = {"q1": [f"m{i}" for i in range(10)] + ["hit"], "q2": []}
    got = per_query_scores(qrels, rankings, ["mrr@10", "ndcg@10"], ["q1", "q2", "q3"])
    assert got["mrr@10"] == {"q1": 0.0, "q2": 0.0, "q3": 0.0}
    assert got["ndcg@10"] == {"q1": 0.0, "q2": 0.0, "q3": 0.0}


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_trec_eval_on_random_graded_runs(seed: int) -> None:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(40)]
    qrels, rankings = {}, {}
    for q in range(30):
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3, 4]) for d in judged}
        qrels[f"q{q}"][judged[0]] = rng.randint(1, 4)  # at least one relevant
        rankings[f"q{q}"] = rng.sample(docs, rng.randint(1, 30))
    metrics = ["ndcg@10", "mrr@10", "recall@20"]
    ours = per_query_scores(qrels, rankings, metrics, list(qrels))
    ref = _trec(qrels, rankings, 20)
    for q in qrels:
        for m in metrics:
            assert ours[m][q] == pytest.approx(ref[q][m], abs=1e-9), (q, m)


def test_compare_counts_wins_losses_ties_and_is_paired() -> None:
    base = {f"q{i}": 0.5 for i in range(40)}
    better = {q: v + (0.2 if i % 4 else -0.05) for i, (q, v) in enumerate(base.items())}
    better["q1"] = 0.5  # one tie
    c = compare("ndcg@10", base, better)
    assert (c.wins, c.losses, c.ties) == (29, 10, 1)
    assert c.delta == pytest.approx(sum(better.values()) / 40 - 0.5)
    assert c.ci_low < c.delta < c.ci_high
    assert c.ci_low > 0 and c.significant


def test_compare_no_difference_is_not_significant() -> None:
    rng = random.Random(1)
    base = {f"q{i}": rng.random() for i in range(50)}
    same = dict(base)
    c = compare("mrr@10", base, same)
    assert (c.wins, c.losses, c.ties) == (0, 0, 50) and c.p_value == 1.0 and c.ci_low == c.ci_high == 0.0
    # Noise of ±0.01, as many ups as downs in random order: the mean delta is 0, so the CI must
    # straddle 0 and the sign-flip test must find nothing.
    signs = [0.01] * 25 + [-0.01] * 25
    rng.shuffle(signs)
    noisy = {q: v + s for (q, v), s in zip(base.items(), signs)}
    c = compare("mrr@10", base, noisy)
    assert (c.wins, c.losses) == (25, 25) and c.delta == pytest.approx(0.0, abs=1e-12)
    assert c.ci_low < 0 < c.ci_high
    assert c.p_value > 0.5 and not c.significant
    # The same 0.01 as a consistent shift is found: the checks above are not blind to 0.01.
    shifted = {q: v + 0.01 for q, v in base.items()}
    c = compare("mrr@10", base, shifted)
    assert c.ci_low > 0 and c.significant


def test_compare_rejects_disjoint_query_sets() -> None:
    with pytest.raises(ValueError, match="no query is scored by both"):
        compare("ndcg@10", {"a": 1.0}, {"b": 1.0})


def test_per_query_scores_needs_queries() -> None:
    with pytest.raises(ValueError, match="no queries to evaluate"):
        per_query_scores({}, {}, ["ndcg@10"], [])


def test_latency_summary() -> None:
    lat = latency_summary([float(i) for i in range(1, 101)])
    assert lat.p50_ms == pytest.approx(50.5) and lat.p99_ms == pytest.approx(99.01) and lat.count == 100
    assert math.isnan(latency_summary([]).p50_ms)
