"""Rescoring of one search / msearch around any engine call (sync). Mirrored by `rescoring_async`.

The engine call is a function `(body, params) -> response dict`; the wrappers and the proxy
pass their own. Engine errors propagate untouched; anything going wrong on the sidecar side, or
a bug here, gives the engine's order with `_rescore.fallback` set.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

from rescore_sidecar.connectors import arms, core, metrics
from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors.sidecar_client import RerankResult, SidecarClient, SidecarUnavailable

log = logging.getLogger("connectors")

EngineSearch = Callable[[dict, dict], Mapping]
EngineMsearch = Callable[[list, dict], Mapping]


def plan(config: ConnectorConfig, body: Mapping | None, params: Mapping | None, rerank: Any,
         ab_key: str | None) -> tuple[core.SearchPlan, str | None]:
    """Chosen options + search plan. Bad `rerank=` raises (caller error); a request the engine
    should judge (malformed from/size) or a bug here is sent unchanged."""
    choice = arms.resolve(config, rerank, ab_key)
    try:
        return core.plan_search(body, params, choice.options), choice.arm
    except ValueError:
        skip = "invalid_request"
    except Exception:  # noqa: BLE001 - a connector bug must not fail the search
        log.exception("rescore: planning failed; sending the request unchanged")
        skip = "connector_error"
    return core.SearchPlan(body=dict(body or {}), params=dict(params or {}), options=choice.options, skip=skip), choice.arm


def finish(response: Mapping, p: core.SearchPlan, arm: str | None, docs: list[tuple[int, str]],
           result: RerankResult | SidecarUnavailable | Exception | None, sidecar_ms: float, started: float) -> dict:
    """The caller's response from the engine's answer and the sidecar's result (or failure)."""
    took_ms = (time.perf_counter() - started) * 1000
    outcome, fallback = "reranked", None
    try:
        if p.skip is not None:
            outcome = "skipped"
            return core.engine_order(response, p, core.marker(reranked=False, arm=arm, skipped=p.skip, took_ms=took_ms))
        if not docs:
            outcome = "skipped"
            return core.engine_order(response, p, core.marker(reranked=False, arm=arm, skipped="no_text",
                                                              took_ms=took_ms))
        if isinstance(result, RerankResult):
            scores = {pos: result.scores[j] for j, (pos, _) in enumerate(docs)}
            return core.apply_scores(response, p, scores, core.marker(reranked=True, arm=arm, model=result.model,
                                                                       took_ms=took_ms))
        fallback = result.reason if isinstance(result, SidecarUnavailable) else "connector_error"
        outcome = "fallback"
        return core.engine_order(response, p, core.marker(reranked=False, arm=arm, fallback=fallback, took_ms=took_ms))
    except Exception:  # noqa: BLE001
        log.exception("rescore: applying scores failed; returning engine order")
        outcome, fallback = "fallback", "connector_error"
        return core.engine_order(response, p, core.marker(reranked=False, arm=arm, fallback=fallback, took_ms=took_ms))
    finally:
        metrics.SEARCHES.labels(outcome, arm or "").inc()
        if fallback:
            metrics.FALLBACKS.labels(fallback).inc()
        overhead = (time.perf_counter() - started) - sidecar_ms / 1000
        metrics.OVERHEAD_SECONDS.observe(max(overhead, 0.0))


def collect(response: Mapping, p: core.SearchPlan) -> list[tuple[int, str]]:
    if p.skip is not None:
        return []
    try:
        return core.documents(response, p)
    except Exception:  # noqa: BLE001
        log.exception("rescore: reading hits failed")
        return []


def split_msearch(searches: Sequence) -> list[tuple[dict, dict]]:
    """msearch bodies as (header, body) pairs; accepts a list of dicts or NDJSON text."""
    import json

    if isinstance(searches, (str, bytes)):
        text = searches.decode() if isinstance(searches, bytes) else searches
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = list(searches)
    if len(items) % 2:
        raise ValueError("msearch needs header/body pairs: got an odd number of lines")
    return [(dict(items[i]), dict(items[i + 1])) for i in range(0, len(items), 2)]


class Rescorer:
    """Reranks searches through the sidecar. One per application; thread-safe."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: SidecarClient | None = None):
        self.config = config
        self.sidecar = sidecar or SidecarClient(config.sidecar)

    def search(self, engine_search: EngineSearch, body: Mapping | None = None, params: Mapping | None = None, *,
               rerank: Any = None, ab_key: str | None = None) -> dict:
        p, arm = plan(self.config, body, params, rerank, ab_key)
        response = engine_search(p.body, p.params)  # engine errors propagate as they are
        started = time.perf_counter()
        docs = collect(response, p)
        result: RerankResult | Exception | None = None
        sidecar_ms = 0.0
        if docs:
            t0 = time.perf_counter()
            try:
                result = self.sidecar.rerank(p.query_text, [t for _, t in docs], model=p.options.model)
            except SidecarUnavailable as exc:
                result = exc
            except Exception as exc:  # noqa: BLE001
                log.exception("rescore: sidecar call failed")
                result = exc
            sidecar_ms = (time.perf_counter() - t0) * 1000
        return finish(response, p, arm, docs, result, sidecar_ms, started)

    def msearch(self, engine_msearch: EngineMsearch, searches: Sequence, params: Mapping | None = None, *,
                rerank: Any = None, ab_key: str | None = None) -> dict:
        pairs = split_msearch(searches)
        plans = [plan(self.config, b, {}, rerank, ab_key) for _, b in pairs]
        lines: list[dict] = []
        for (header, _), (p, _) in zip(pairs, plans):
            lines += [header, p.body]
        response = engine_msearch(lines, dict(params or {}))
        started = time.perf_counter()
        subs = list(response.get("responses", []))
        docs = [collect(r, p) if "error" not in r else [] for r, (p, _) in zip(subs, plans)]
        wanted = [i for i, d in enumerate(docs) if d]
        results: dict[int, Any] = {}
        sidecar_ms = 0.0
        if wanted:
            t0 = time.perf_counter()
            try:
                got = self.sidecar.rerank_many([(plans[i][0].query_text, [t for _, t in docs[i]],
                                                 plans[i][0].options.model) for i in wanted])
                results = dict(zip(wanted, got))
            except Exception as exc:  # noqa: BLE001
                log.exception("rescore: sidecar call failed")
                results = {i: exc for i in wanted}
            sidecar_ms = (time.perf_counter() - t0) * 1000
        out = dict(response)
        out["responses"] = [r if "error" in r else finish(r, p, arm, docs[i], results.get(i), sidecar_ms / max(len(wanted), 1), started)
                            for i, (r, (p, arm)) in enumerate(zip(subs, plans))]
        return out
