"""The search step without I/O: plan -> engine call -> sidecar call -> finish, as a generator.

`search_steps` / `msearch_steps` yield what they need done (`EngineSearch`, `EngineMsearch`,
`Rerank`, `RerankMany`) and receive its result (the engine's answer, or the sidecar's result or
the exception it raised); they return the caller's response. The sync and async `Rescorer`s and
the proxy only carry out those effects (`rescoring.drive` / `_async.rescoring.drive`), so
planning, fallback, metrics and marking live once. Engine errors propagate untouched; anything going wrong on the sidecar
side, or a bug here, gives the engine's order with `_rescore.fallback` set.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, Generator, Mapping, Sequence

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._core import arms
from rescore_sidecar.connectors._core.plan import SearchPlan, plan_search
from rescore_sidecar.connectors._core.shape import apply_scores, engine_order, marker
from rescore_sidecar.connectors._core.text import documents
from rescore_sidecar.connectors._sidecar.calls import RerankResult
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable
from rescore_sidecar.connectors.config import ConnectorConfig

log = logging.getLogger("connectors")


@dataclasses.dataclass(frozen=True)
class EngineSearch:
    body: dict
    params: dict


@dataclasses.dataclass(frozen=True)
class EngineMsearch:
    lines: list
    params: dict


@dataclasses.dataclass(frozen=True)
class Rerank:
    query: str
    texts: list[str]
    model: str


@dataclasses.dataclass(frozen=True)
class RerankMany:
    calls: list[tuple[str, list[str], str]]


Effect = EngineSearch | EngineMsearch | Rerank | RerankMany
Steps = Generator[Effect, Any, Any]


def plan(config: ConnectorConfig, body: Mapping | None, params: Mapping | None, rerank: Any,
         ab_key: str | None, choice: arms.Choice | None = None) -> tuple[SearchPlan, str | None]:
    """Chosen options + search plan. Bad `rerank=` raises (caller error); a request the engine
    should judge (malformed from/size) or a bug here is sent unchanged. `choice`: options the
    caller already resolved (the proxy), so they are resolved once per request."""
    choice = choice or arms.resolve(config, rerank, ab_key)
    try:
        return plan_search(body, params, choice.options), choice.arm
    except ValueError:
        skip = "invalid_request"
    except Exception:  # noqa: BLE001 - a connector bug must not fail the search
        log.exception("rescore: planning failed; sending the request unchanged")
        skip = "connector_error"
    return SearchPlan(body=dict(body or {}), params=dict(params or {}), options=choice.options, skip=skip), choice.arm


def finish(response: Mapping, p: SearchPlan, arm: str | None, docs: list[tuple[int, str]],
           result: RerankResult | SidecarUnavailable | Exception | None, sidecar_ms: float, started: float) -> dict:
    """The caller's response from the engine's answer and the sidecar's result (or failure).
    Counts the search in `connectors.metrics` (the one fallback counter, proxy included)."""
    took_ms = (time.perf_counter() - started) * 1000
    outcome, fallback = "reranked", None
    try:
        if p.skip is not None:
            outcome = "skipped"
            return engine_order(response, p, marker(reranked=False, arm=arm, skipped=p.skip, took_ms=took_ms))
        if not docs:
            outcome = "skipped"
            return engine_order(response, p, marker(reranked=False, arm=arm, skipped="no_text",
                                                              took_ms=took_ms))
        if isinstance(result, RerankResult):
            scores = {pos: result.scores[j] for j, (pos, _) in enumerate(docs)}
            return apply_scores(response, p, scores, marker(reranked=True, arm=arm, model=result.model,
                                                                       took_ms=took_ms))
        fallback = result.reason if isinstance(result, SidecarUnavailable) else "connector_error"
        outcome = "fallback"
        return engine_order(response, p, marker(reranked=False, arm=arm, fallback=fallback, took_ms=took_ms))
    except Exception:  # noqa: BLE001
        log.exception("rescore: applying scores failed; returning engine order")
        outcome, fallback = "fallback", "connector_error"
        return engine_order(response, p, marker(reranked=False, arm=arm, fallback=fallback, took_ms=took_ms))
    finally:
        metrics.SEARCHES.labels(outcome, arm or "").inc()
        if fallback:
            metrics.FALLBACKS.labels(fallback).inc()
        overhead = (time.perf_counter() - started) - sidecar_ms / 1000
        metrics.OVERHEAD_SECONDS.observe(max(overhead, 0.0))


def collect(response: Mapping, p: SearchPlan) -> list[tuple[int, str]]:
    if p.skip is not None:
        return []
    try:
        return documents(response, p)
    except Exception:  # noqa: BLE001
        log.exception("rescore: reading hits failed")
        return []


def split_msearch(searches: Sequence) -> list[tuple[dict, dict]]:
    """msearch bodies as (header, body) pairs; accepts a list of dicts or NDJSON text."""
    if isinstance(searches, (str, bytes)):
        text = searches.decode() if isinstance(searches, bytes) else searches
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        items = list(searches)
    if len(items) % 2:
        raise ValueError("msearch needs header/body pairs: got an odd number of lines")
    return [(dict(items[i]), dict(items[i + 1])) for i in range(0, len(items), 2)]


def _body(answer: Any) -> Mapping:
    """The JSON body of an engine answer: elasticsearch-py's ApiResponse carries it in `.body`."""
    return answer.body if hasattr(answer, "body") and hasattr(answer, "meta") else answer


def _like(answer: Any, out: dict) -> Any:
    """`out` in the engine answer's own type (ApiResponse keeps its meta), else the dict."""
    return type(answer)(body=out, meta=answer.meta) if answer is not _body(answer) else out


def _failure(result: Any) -> Any:
    if isinstance(result, Exception) and not isinstance(result, SidecarUnavailable):
        log.error("rescore: sidecar call failed", exc_info=result)
    return result


def search_steps(config: ConnectorConfig, body: Mapping | None, params: Mapping | None, *, rerank: Any = None,
                 ab_key: str | None = None, choice: arms.Choice | None = None) -> Steps:
    p, arm = plan(config, body, params, rerank, ab_key, choice)
    answer = yield EngineSearch(p.body, p.params)  # engine errors propagate as they are
    started = time.perf_counter()
    response = _body(answer)
    docs = collect(response, p)
    result, sidecar_ms = None, 0.0
    if docs:
        t0 = time.perf_counter()
        result = _failure((yield Rerank(p.query_text, [t for _, t in docs], p.options.model)))
        sidecar_ms = (time.perf_counter() - t0) * 1000
    return _like(answer, finish(response, p, arm, docs, result, sidecar_ms, started))


def msearch_steps(config: ConnectorConfig, searches: Sequence, params: Mapping | None = None, *,
                  rerank: Any = None, ab_key: str | None = None, choice: arms.Choice | None = None) -> Steps:
    pairs = split_msearch(searches)
    plans = [plan(config, b, {}, rerank, ab_key, choice) for _, b in pairs]
    lines: list[dict] = []
    for (header, _), (p, _) in zip(pairs, plans):
        lines += [header, p.body]
    answer = yield EngineMsearch(lines, dict(params or {}))
    started = time.perf_counter()
    response = _body(answer)
    subs = list(response.get("responses", []))
    docs = [collect(r, p) if "error" not in r else [] for r, (p, _) in zip(subs, plans)]
    wanted = [i for i, d in enumerate(docs) if d]
    results: dict[int, Any] = {}
    sidecar_ms = 0.0
    if wanted:
        t0 = time.perf_counter()
        got = _failure((yield RerankMany([(plans[i][0].query_text, [t for _, t in docs[i]], plans[i][0].options.model)
                                          for i in wanted])))
        results = dict(zip(wanted, got)) if isinstance(got, list) else {i: got for i in wanted}
        sidecar_ms = (time.perf_counter() - t0) * 1000
    out = dict(response)
    out["responses"] = [r if "error" in r else finish(r, p, arm, docs[i], results.get(i),
                                                      sidecar_ms / max(len(wanted), 1), started)
                        for i, (r, (p, arm)) in enumerate(zip(subs, plans))]
    return _like(answer, out)
