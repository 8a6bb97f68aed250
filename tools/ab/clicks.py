"""A cascade click model and the exact per-impression outcome distributions it gives two rankers.

Cascade model (a dependent-click variant of Craswell et al. 2008 / Guo et al. 2009): the user
reads the shown list top down; at a doc of gain g they click with probability `click[g]`, and
after a click stop reading with probability `stop[g]` (otherwise read on). Gains above the last
entry use the last entry. Impressions are independent given the query, so an impression's outcome
(interleaving: win A / win B / tie / no click; split: rank of the first click) has a distribution
per query that is computed here exactly; the simulator draws impressions from it.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import pathlib
from typing import Mapping, Sequence

import numpy as np

from rescore_sidecar.connectors._core.interleave import TEAM_A, team_draft_with_coins

# Defaults, by gain 0 (not relevant) .. 4 (Cranfield's "complete answer" with gain = 5 - grade):
# noise clicks on non-relevant docs, and the more relevant a doc the likelier a click and that it
# satisfies the user. Chosen for this project, not taken from a paper; --click-probs/--stop-probs change them.
DEFAULT_CLICK = (0.05, 0.3, 0.5, 0.7, 0.9)
DEFAULT_STOP = (0.0, 0.2, 0.4, 0.6, 0.8)

# Interleaving outcome columns.
WIN_A, WIN_B, TIE, NO_CLICK = range(4)


@dataclasses.dataclass(frozen=True)
class CascadeModel:
    click: tuple[float, ...] = DEFAULT_CLICK
    stop: tuple[float, ...] = DEFAULT_STOP

    def __post_init__(self) -> None:
        if not self.click or not self.stop:
            raise ValueError("click and stop probabilities need at least one entry (gain 0)")
        if not all(0.0 <= p <= 1.0 for p in (*self.click, *self.stop)):
            raise ValueError("click and stop probabilities must lie in [0, 1]")

    def p_click(self, gain: int) -> float:
        return self.click[min(max(gain, 0), len(self.click) - 1)]

    def p_stop(self, gain: int) -> float:
        return self.stop[min(max(gain, 0), len(self.stop) - 1)]


def read_run(path: str | pathlib.Path) -> dict[str, list[str]]:
    """TREC run file (`query Q0 doc rank score tag`) -> query -> doc ids, best first (score, then rank)."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                query, _, doc, rank, score = parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: expected 'query Q0 doc rank score tag', got {line.strip()!r}") from None
            rows.setdefault(query, []).append((-score, rank, doc))
    return {q: list(dict.fromkeys(doc for *_, doc in sorted(r))) for q, r in rows.items()}


def ndcg_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's ndcg_cut); 0 for a query with nothing relevant."""
    dcg = sum(judged.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]) if judged.get(doc, 0) > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best else 0.0


def first_click_distribution(gains: Sequence[int], model: CascadeModel, depth: int) -> np.ndarray:
    """P(first click at rank 1..depth) then P(no click), for one shown list (shorter lists pad with 0)."""
    out = np.zeros(depth + 1)
    reach = 1.0  # no click above: stopping only follows a click, so every rank before the first click is read
    for i, gain in enumerate(gains[:depth]):
        c = model.p_click(gain)
        out[i] = reach * c
        reach *= 1.0 - c
    out[depth] = reach
    return out


def team_outcome_distribution(gains: Sequence[int], teams: Sequence[str], model: CascadeModel) -> np.ndarray:
    """[P(win A), P(win B), P(tie), P(no click)] for one interleaved list: exact, over the cascade's paths."""
    reading = {(0, False): 1.0}   # (clicks A - clicks B, clicked at all) -> P(still reading there)
    done = np.zeros(4)
    for gain, team in zip(gains, teams):
        c, s, step = model.p_click(gain), model.p_stop(gain), 1 if team == TEAM_A else -1
        after: dict[tuple[int, bool], float] = {}
        for (diff, any_click), p in reading.items():
            after[(diff, any_click)] = after.get((diff, any_click), 0.0) + p * (1 - c)
            key = (diff + step, True)
            after[key] = after.get(key, 0.0) + p * c * (1 - s)
            done[_column(diff + step, True)] += p * c * s
        reading = after
    for (diff, any_click), p in reading.items():
        done[_column(diff, any_click)] += p
    return done


def _column(diff: int, any_click: bool) -> int:
    if not any_click:
        return NO_CLICK
    return WIN_A if diff > 0 else WIN_B if diff < 0 else TIE


def interleave_distribution(run_a: Sequence[str], run_b: Sequence[str], judged: Mapping[str, int],
                            model: CascadeModel, depth: int) -> np.ndarray:
    """Outcome distribution of one query's team-draft impressions, averaged over every coin sequence."""
    patterns = list(itertools.product((True, False), repeat=(depth + 1) // 2))
    total = np.zeros(4)
    for coins in patterns:
        shown = team_draft_with_coins(run_a, run_b, coins, length=depth)
        total += team_outcome_distribution([judged.get(d, 0) for d in shown.doc_ids], shown.teams, model)
    return total / len(patterns)


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """What the simulator needs per impression: each outcome's probability for a uniformly drawn query."""
    queries: tuple[str, ...]
    ndcg_a: float                  # mean nDCG@10 over `queries`
    ndcg_b: float
    interleave: np.ndarray         # [win A, win B, tie, no click]
    first_click_a: np.ndarray      # P(first click at rank 1..depth), P(none): split arm A
    first_click_b: np.ndarray


def outcome_distributions(run_a: Mapping[str, Sequence[str]], run_b: Mapping[str, Sequence[str]],
                          qrels: Mapping[str, Mapping[str, int]], model: CascadeModel, depth: int) -> Outcomes:
    """Over the queries both runs answer that have a relevant judgement (as trec_eval's averages)."""
    queries = tuple(q for q in run_a if q in run_b and any(g > 0 for g in qrels.get(q, {}).values()))
    if not queries:
        raise ValueError("no query is in both runs and has a relevant judgement")
    inter = np.zeros(4)
    first_a, first_b = np.zeros(depth + 1), np.zeros(depth + 1)
    for q in queries:
        judged = qrels[q]
        inter += interleave_distribution(run_a[q], run_b[q], judged, model, depth)
        first_a += first_click_distribution([judged.get(d, 0) for d in run_a[q]], model, depth)
        first_b += first_click_distribution([judged.get(d, 0) for d in run_b[q]], model, depth)
    n = len(queries)
    return Outcomes(queries, sum(ndcg_at(run_a[q], qrels[q]) for q in queries) / n,
                      sum(ndcg_at(run_b[q], qrels[q]) for q in queries) / n, inter / n, first_a / n, first_b / n)
