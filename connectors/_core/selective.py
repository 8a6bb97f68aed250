"""Selective reranking: skip the sidecar when the engine's own ranking is already confident.

The predictor reads only what the engine returned for the window: when the top hit's score stands
far above the second one, relative to the spread of scores in the window, BM25 has found one clear
answer and a cross-encoder rarely moves it. `top_gap` is that gap as a share of the window's score
range (0 = the first two hits tie, 1 = every hit but the first scored the same as the last). A
window of fewer than two hits has nothing to reorder and is confident by definition.

Off by default (threshold None). Users pick a threshold on their own judged queries with the eval
sweep, which prints nDCG@10 and the share of searches sent to the sidecar per threshold.
"""
from __future__ import annotations

import math
from typing import Sequence

SKIPPED_CONFIDENT = "confident"


def top_gap(scores: Sequence[float | None]) -> float:
    """(s1 - s2) / (s1 - s_last) over the window's engine scores, in [0, 1]; 1.0 for < 2 hits."""
    values = [float(s) for s in scores if s is not None and math.isfinite(float(s))]
    if len(values) < 2:
        return 1.0
    ordered = sorted(values, reverse=True)
    spread = ordered[0] - ordered[-1]
    if spread <= 0:
        return 0.0  # all tied: the engine has no opinion, rerank
    return (ordered[0] - ordered[1]) / spread


def engine_confident(scores: Sequence[float | None], threshold: float | None) -> bool:
    """True when the search can skip the sidecar: a threshold is set and the gap reaches it."""
    if threshold is None:
        return False
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"selective threshold must be in [0, 1] or None, got {threshold!r}")
    return top_gap(scores) >= threshold
