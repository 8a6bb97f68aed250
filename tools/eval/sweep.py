"""`rescore-sidecar eval --selective-sweep`: what selective reranking and smaller windows cost in quality.

One pass over the judged queries: each query's BM25 top-k (engine scores kept) and the model's score
of every hit in the window (`explain`, policy `replace`). Everything else is computed offline from
those, exactly, since a skipped search is engine order and a smaller window reorders its top hits by
the same model scores:
- per selective threshold t: nDCG@10 when searches whose engine window has `top_gap >= t` keep engine
  order (`connectors/_core/selective.py`), and the share of searches and of (query, hit) pairs sent;
- per window (50/30/20/10 by default): nDCG@10 of reranking only the top w hits.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

from rescore_sidecar.connectors._core.selective import top_gap
from rescore_sidecar.tools.eval.collection import Collection
from rescore_sidecar.tools.eval.metrics import per_query_scores
from rescore_sidecar.tools.eval.services import Engine

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
DEFAULT_WINDOWS = (50, 30, 20, 10)
NDCG = "ndcg@10"


@dataclasses.dataclass(frozen=True)
class QueryHits:
    ids: list[str]  # engine order
    engine_scores: list[float]
    model_scores: dict[str, float]  # doc id -> model score, for the hits of the window


@dataclasses.dataclass(frozen=True)
class SweepRow:
    label: str  # "engine order", "t=0.2", "window 20", ...
    ndcg: float
    searches_sent: float  # share of searches sent to the sidecar
    pairs_sent: float  # share of (query, hit) pairs scored, against reranking every window in full


def reranked(hits: QueryHits, window: int) -> list[str]:
    """The top `window` hits by model score (ties: engine order), the rest in engine order."""
    top = hits.ids[:window]
    order = sorted(range(len(top)), key=lambda i: (-hits.model_scores.get(top[i], float("-inf")), i))
    return [top[i] for i in order] + hits.ids[window:]


def _mean_ndcg(qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, list[str]],
               query_ids: Sequence[str]) -> float:
    scores = per_query_scores(qrels, rankings, [NDCG], query_ids)[NDCG]
    return sum(scores.values()) / len(query_ids)


def sweep(qrels: Mapping[str, Mapping[str, int]], hits: Mapping[str, QueryHits], window: int,
          thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
          windows: Sequence[int] = DEFAULT_WINDOWS) -> tuple[list[SweepRow], list[SweepRow]]:
    """(threshold rows, window rows), each starting with engine order and reranking everything."""
    query_ids = list(hits)
    full = {q: reranked(h, window) for q, h in hits.items()}
    pairs = {q: min(window, len(h.ids)) for q, h in hits.items()}
    all_pairs = max(sum(pairs.values()), 1)
    engine = SweepRow("engine order", _mean_ndcg(qrels, {q: h.ids for q, h in hits.items()}, query_ids), 0.0, 0.0)
    by_threshold = [engine, SweepRow(f"window {window}, every search", _mean_ndcg(qrels, full, query_ids), 1.0, 1.0)]
    for t in thresholds:
        sent = {q for q, h in hits.items() if top_gap(h.engine_scores[:window]) < t}
        rankings = {q: full[q] if q in sent else hits[q].ids for q in query_ids}
        by_threshold.append(SweepRow(f"t={t:g}", _mean_ndcg(qrels, rankings, query_ids), len(sent) / len(query_ids),
                                     sum(pairs[q] for q in sent) / all_pairs))
    by_window = [engine] + [
        SweepRow(f"window {w}", _mean_ndcg(qrels, {q: reranked(h, w) for q, h in hits.items()}, query_ids), 1.0,
                 sum(min(w, len(h.ids)) for h in hits.values()) / all_pairs)
        for w in windows if w <= window]
    return by_threshold, by_window


def collect_hits(collection: Collection, engine: Engine, sidecar_address: str, options: Mapping[str, Any],
                 index: str, depth: int, budget_ms: float, reindex: bool,
                 progress: Callable[..., Iterable] | None = None) -> dict[str, QueryHits]:
    """Engine scores and the model's scores of the window's hits, per judged query."""
    from rescore_sidecar.tools.eval.runner import _search, bm25_body, index_collection, wrap

    progress = progress or (lambda it, **_: it)
    client = engine.client()
    out: dict[str, QueryHits] = {}
    try:
        if reindex:
            index_collection(client, engine, index, collection,
                             lambda it: progress(it, desc="indexing", total=len(collection.documents), unit="doc"))
        search = wrap(client, engine, sidecar_address, budget_ms)
        rerank = {**options, "policy": "replace", "explain": True, "adaptive": False}
        for q in progress(collection.judged_queries(), desc="queries", unit="q"):
            body = bm25_body(collection.queries[q], depth)
            plain = _search(search, index, body, False)["hits"]["hits"]
            scored = _search(search, index, body, {**rerank, "query": collection.queries[q]})
            if not scored.get("_rescore", {}).get("reranked"):
                raise RuntimeError(f"query {q}: not reranked ({scored.get('_rescore')}); the sweep needs every "
                                   "query scored")
            model = {h["_id"]: h["_rescore"]["model_score"] for h in scored["hits"]["hits"]
                     if isinstance(h.get("_rescore"), dict) and h["_rescore"].get("model_score") is not None}
            out[q] = QueryHits([h["_id"] for h in plain], [h.get("_score") for h in plain], model)
    finally:
        client.close()
    return out


def table(by_threshold: Sequence[SweepRow], by_window: Sequence[SweepRow]) -> str:
    base = by_threshold[0].ndcg
    lines = ["| selective threshold | nDCG@10 | vs engine | searches sent | pairs sent |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.label} | {r.ndcg:.4f} | {r.ndcg - base:+.4f} | {100 * r.searches_sent:.0f}% | "
              f"{100 * r.pairs_sent:.0f}% |" for r in by_threshold]
    lines += ["", "| window | nDCG@10 | vs engine | pairs sent |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.label} | {r.ndcg:.4f} | {r.ndcg - base:+.4f} | {100 * r.pairs_sent:.0f}% |" for r in by_window]
    return "\n".join(lines) + "\n"
