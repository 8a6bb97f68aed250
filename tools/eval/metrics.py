"""Ranking metrics per query (computed by ranx) and paired comparisons across queries (scipy).

A ranking is the list of document ids a system returned for a query, best first. Metrics are
computed on that order exactly: ranx sees strictly decreasing scores, so engine score ties can
not be re-broken by the metric library.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Mapping, Sequence

import numpy as np

Rankings = Mapping[str, Sequence[str]]   # query id -> doc ids, best first
PerQuery = dict[str, float]              # query id -> metric value


def default_metrics(recall_k: int = 100) -> tuple[str, ...]:
    return ("ndcg@10", "mrr@10", f"recall@{recall_k}")


def per_query_scores(qrels: Mapping[str, Mapping[str, int]], rankings: Rankings,
                     metrics: Sequence[str], query_ids: Sequence[str]) -> dict[str, PerQuery]:
    """{metric: {query id: value}} for every query in `query_ids`.

    ranx metric names: "ndcg@k" (linear gain, log2 discount, as trec_eval), "mrr@k", "recall@k".
    A query missing from `rankings` or with an empty ranking scores 0.
    """
    from ranx import Qrels, Run, evaluate

    if not query_ids:
        raise ValueError("no queries to evaluate: none of them has a relevant judgement")
    scores: dict[str, PerQuery] = {m: {q: 0.0 for q in query_ids} for m in metrics}
    # Only positive judgements count as relevant; a query without one scores 0 on every metric.
    qrels_pos = {q: {d: g for d, g in qrels.get(q, {}).items() if g > 0} for q in query_ids}
    ranked = [q for q in query_ids if rankings.get(q) and qrels_pos[q]]
    if not ranked:
        return scores
    run = Run({q: {d: float(len(rankings[q]) - i) for i, d in enumerate(dict.fromkeys(rankings[q]))}
               for q in ranked})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from inside ranx
        evaluate(Qrels({q: qrels_pos[q] for q in ranked}), run, list(metrics), return_mean=False)
    for metric in metrics:
        for q, value in run.scores[metric].items():
            scores[metric][q] = float(value)
    return scores


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A candidate system against the baseline on one metric, paired by query."""
    metric: str
    baseline: float          # mean over queries
    candidate: float
    delta: float             # candidate - baseline
    ci_low: float            # 95% bootstrap CI of the mean per-query delta
    ci_high: float
    p_value: float           # two-sided paired randomisation (sign-flip) test
    wins: int                # queries where the candidate scores higher
    losses: int
    ties: int

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def compare(metric: str, baseline: PerQuery, candidate: PerQuery, *,
            resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired comparison over the queries both sides scored."""
    from scipy import stats

    queries = [q for q in baseline if q in candidate]
    if not queries:
        raise ValueError(f"{metric}: no query is scored by both systems")
    base = np.array([baseline[q] for q in queries])
    cand = np.array([candidate[q] for q in queries])
    delta = cand - base
    wins = int(np.sum(delta > 1e-12))
    losses = int(np.sum(delta < -1e-12))
    ties = len(queries) - wins - losses
    if np.allclose(delta, delta[0]):
        # No spread: the CI collapses to the single value and no test can tell the systems apart.
        ci_low = ci_high = float(delta[0])
        p_value = 1.0 if abs(delta[0]) < 1e-12 else 0.0
    else:
        rng = np.random.default_rng(seed)
        ci = stats.bootstrap((delta,), np.mean, confidence_level=0.95, n_resamples=resamples,
                             method="percentile", random_state=rng).confidence_interval
        ci_low, ci_high = float(ci.low), float(ci.high)
        test = stats.permutation_test((base, cand), lambda x, y: np.mean(y - x), permutation_type="samples",
                                      n_resamples=resamples, alternative="two-sided", random_state=rng)
        p_value = float(test.pvalue)
    return Comparison(metric, float(base.mean()), float(cand.mean()), float(delta.mean()),
                      ci_low, ci_high, p_value, wins, losses, ties)


@dataclasses.dataclass(frozen=True)
class Latency:
    """Milliseconds a configuration added per query (rescoring round trip on top of the engine)."""
    p50_ms: float
    p99_ms: float
    mean_ms: float
    count: int


def latency_summary(samples_ms: Sequence[float]) -> Latency:
    if not samples_ms:
        return Latency(math.nan, math.nan, math.nan, 0)
    arr = np.asarray(samples_ms, dtype=float)
    return Latency(float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.mean()), len(arr))
