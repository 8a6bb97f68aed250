"""New scores of the window's hits from the engine's and the model's, by the configured policy
(replace, linear, rrf)."""
from __future__ import annotations

from typing import Sequence

from rescore_sidecar.connectors.config import RerankOptions


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def fused_scores(engine: Sequence[float | None], model: Sequence[float | None], options: RerankOptions) -> list[float]:
    """New scores of the window's hits under the policy. Hits without a model score (no text)
    count as the lowest model score (replace, linear) or get no model term (rrf)."""
    known = [m for m in model if m is not None]
    floor = min(known) if known else 0.0
    if options.policy == "replace":
        return [floor if m is None else float(m) for m in model]
    if options.policy == "linear":
        eng = _minmax([e if e is not None else 0.0 for e in engine])
        mod = _minmax([floor if m is None else m for m in model])
        mod = [0.0 if m is None else v for v, m in zip(mod, model)]
        w = options.model_weight
        return [w * m + (1 - w) * e for e, m in zip(eng, mod)]
    # rrf: ranks are 1-based; model rank among hits that have a model score (ties: engine order).
    order = sorted((i for i, m in enumerate(model) if m is not None), key=lambda i: (-model[i], i))
    model_rank = {i: r + 1 for r, i in enumerate(order)}
    k = options.rrf_k
    return [1.0 / (k + i + 1) + (1.0 / (k + model_rank[i]) if i in model_rank else 0.0) for i in range(len(model))]
