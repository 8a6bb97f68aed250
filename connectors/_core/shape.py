"""The caller's response from the engine's answer: reordered by the model's scores (`apply_scores`)
or in engine order (`engine_order`, the fallback), sliced to the caller's page, our `_source`
additions stripped, the top-level `_rescore` marker added."""
from __future__ import annotations

import copy
from fnmatch import fnmatchcase
from typing import Any, Mapping, Sequence

from rescore_sidecar.connectors._core.fuse import fused_scores
from rescore_sidecar.connectors._core.plan import SearchPlan

MARKER_KEY = "_rescore"


def marker(*, reranked: bool, arm: str | None = None, fallback: str | None = None, model: str = "",
           took_ms: float = 0.0, skipped: str | None = None, window: int = 0,
           window_reason: str | None = None) -> dict:
    """The top-level `_rescore` entry every response handled by a connector carries. `window`: the
    window used (its hits with text went to the sidecar; 0 = no call); `window_reason`: why it is below the requested one (latency,
    queue, timeouts: the brownout; pinned: `adaptive=False`), None when it is the requested one."""
    return {"reranked": reranked, "arm": arm, "fallback": fallback, "skipped": skipped, "model": model,
            "took_ms": round(took_ms, 3), "window": window, "window_reason": window_reason}


def _remove_path(obj: Any, parts: Sequence[str]) -> None:
    if isinstance(obj, list):
        for item in obj:
            _remove_path(item, parts)
        return
    if not isinstance(obj, dict):
        return
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in obj:
            if i == len(parts):
                del obj[key]
            else:
                _remove_path(obj[key], parts[i:])
                if obj[key] in ({}, []):  # a parent that only held what we added
                    del obj[key]
            return


def _prune(obj: Any, pattern: str, prefix: str = "") -> None:
    if isinstance(obj, list):
        for item in obj:
            _prune(item, pattern, prefix)
        return
    if not isinstance(obj, dict):
        return
    for key in list(obj):
        path = f"{prefix}{key}"
        if fnmatchcase(path, pattern):
            del obj[key]
        else:
            _prune(obj[key], pattern, path + ".")


def _caller_shape(hit: dict, plan: SearchPlan) -> dict:
    """The hit as the caller's own request would have returned it (our `_source` additions gone)."""
    if plan.drop_source:
        hit.pop("_source", None)
    elif (plan.strip_paths or plan.strip_patterns) and isinstance(hit.get("_source"), dict):
        source = copy.deepcopy(hit["_source"])
        for path in plan.strip_paths:
            _remove_path(source, path.split("."))
        for pattern in plan.strip_patterns:
            _prune(source, pattern)
        hit["_source"] = source
    return hit


def _with_hits(response: Mapping, hits: list[dict], max_score: Any, mark: dict) -> dict:
    out = dict(response)
    hits_section = dict(response.get("hits", {}))
    hits_section["hits"] = hits
    if "max_score" in hits_section or hits:
        hits_section["max_score"] = max_score
    out["hits"] = hits_section
    out[MARKER_KEY] = mark
    return out


def engine_order(response: Mapping, plan: SearchPlan, mark: dict) -> dict:
    """Fallback: the caller's page in engine order, in the shape the caller asked for."""
    hits = response.get("hits", {}).get("hits", [])
    if plan.skip is not None:
        return _with_hits(response, list(hits), response.get("hits", {}).get("max_score"), mark)
    page = [_caller_shape(dict(h), plan) for h in hits[plan.offset: plan.offset + plan.size]]
    return _with_hits(response, page, response.get("hits", {}).get("max_score"), mark)


def apply_scores(response: Mapping, plan: SearchPlan, scores: Mapping[int, float], mark: dict) -> dict:
    """Reorders the window by `scores` ({window position: model score}), then slices and strips.

    Hits after the window keep their engine order and `_score` (as the engines' own `rescore`
    does); `max_score` is the highest `_score` of the reordered list.
    """
    hits = response.get("hits", {}).get("hits", [])
    window, rest = hits[: plan.options.window], hits[plan.options.window:]
    engine_scores = [h.get("_score") for h in window]
    model_scores = [scores.get(i) for i in range(len(window))]
    fused = fused_scores(engine_scores, model_scores, plan.options)
    # Ties: hits with text first, then engine order.
    order = sorted(range(len(window)), key=lambda i: (-fused[i], model_scores[i] is None, i))
    reordered: list[dict] = []
    for i in order:
        hit = dict(window[i])
        hit["_score"] = fused[i]
        if plan.explain:
            hit[MARKER_KEY] = {"engine_score": engine_scores[i], "engine_rank": i + 1, "model_score": model_scores[i]}
        reordered.append(hit)
    full = reordered + [dict(h) for h in rest]
    numeric = [h["_score"] for h in full if isinstance(h.get("_score"), (int, float))]
    max_score = max(numeric) if numeric else None
    page = [_caller_shape(h, plan) for h in full[plan.offset: plan.offset + plan.size]]
    return _with_hits(response, page, max_score, mark)
