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
from rescore_sidecar.connectors._core import arms, spans
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors._core.selective import SKIPPED_CONFIDENT, engine_confident
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


@dataclasses.dataclass(frozen=True)
class Route:
    """What one search sends to the sidecar: the top `window` hits (0 = no call) and why."""

    window: int
    reason: str | None = None  # why `window` is below the requested one (or "pinned")
    skip: str | None = None  # "confident" (selective) or "brownout" (window off): no call


def route(response: Mapping, p: SearchPlan, brownout: Brownout | None) -> Route:
    """Selective reranking first (a confident engine ranking needs no window), then the brownout
    window. Without a `brownout` (steps driven by hand) the requested window is used."""
    if p.skip is not None:
        return Route(0)
    o = p.options
    hits = response.get("hits", {}).get("hits", []) if isinstance(response, Mapping) else []
    if o.selective_threshold is not None and engine_confident(
            [h.get("_score") for h in hits[: o.window] if isinstance(h, Mapping)], o.selective_threshold):
        return Route(0, None, SKIPPED_CONFIDENT)
    if brownout is None:
        return Route(o.window)
    choice = brownout.choose(o)
    if choice.window <= 0:
        return Route(0, choice.reason, "brownout")
    return Route(choice.window, choice.reason)


def _observe(brownout: Brownout | None, result: Any, latency_ms: float) -> None:
    """Feeds one sidecar call's outcome to the brownout window."""
    if brownout is None:
        return
    if isinstance(result, RerankResult):
        brownout.observe(result.target or None, latency_ms=latency_ms, queue_ms=result.queue_ms)
    elif isinstance(result, SidecarUnavailable) and not result.isolated:
        brownout.observe(result.target, latency_ms=latency_ms, failure=result.reason)


def finish(response: Mapping, p: SearchPlan, arm: str | None, docs: list[tuple[int, str]],
           result: RerankResult | SidecarUnavailable | Exception | None, sidecar_ms: float, started: float,
           sent: Route | None = None) -> dict:
    """The caller's response from the engine's answer and the sidecar's result (or failure).
    Counts the search in `connectors.metrics` (the one fallback counter, proxy included)."""
    took_ms = (time.perf_counter() - started) * 1000
    sent = sent or Route(0 if p.skip is not None else p.options.window)
    outcome, fallback, skipped = "reranked", None, None
    mark = {"arm": arm, "took_ms": took_ms, "window": sent.window, "window_reason": sent.reason}
    try:
        if p.skip is not None or sent.skip is not None:
            outcome, skipped = "skipped", p.skip or sent.skip
            return engine_order(response, p, marker(reranked=False, skipped=skipped, **mark))
        if not docs:
            outcome, skipped = "skipped", "no_text"
            return engine_order(response, p, marker(reranked=False, skipped=skipped, **mark))
        if isinstance(result, RerankResult):
            scores = {pos: result.scores[j] for j, (pos, _) in enumerate(docs)}
            if sent.window < p.options.window:  # the brownout's smaller window is what gets reordered
                p = dataclasses.replace(p, options=dataclasses.replace(p.options, window=sent.window))
            return apply_scores(response, p, scores, marker(reranked=True, model=result.model, **mark))
        fallback = result.reason if isinstance(result, SidecarUnavailable) else "connector_error"
        outcome = "fallback"
        return engine_order(response, p, marker(reranked=False, fallback=fallback, **mark))
    except Exception:  # noqa: BLE001
        log.exception("rescore: applying scores failed; returning engine order")
        outcome, fallback = "fallback", "connector_error"
        return engine_order(response, p, marker(reranked=False, fallback=fallback, **mark))
    finally:
        metrics.SEARCHES.labels(outcome, arm or "").inc()
        if fallback:
            metrics.FALLBACKS.labels(fallback).inc()
        if skipped:
            metrics.SKIPPED.labels(skipped).inc()
        if p.skip is None:
            metrics.WINDOW_SEARCHES.labels(str(sent.window if outcome != "skipped" else 0), sent.reason or "").inc()
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


def _sent_docs(response: Mapping, p: SearchPlan, brownout: Brownout | None) -> tuple[Route, list[tuple[int, str]]]:
    """The search's route and the (window position, text) pairs it sends (none when skipped)."""
    try:
        sent = route(response, p, brownout)
    except Exception:  # noqa: BLE001 - a connector bug must not fail the search
        log.exception("rescore: choosing the window failed; using the requested one")
        sent = Route(p.options.window)
    if sent.skip is not None:
        return sent, []
    return sent, [d for d in collect(response, p) if d[0] < sent.window]


def search_steps(config: ConnectorConfig, body: Mapping | None, params: Mapping | None, *, rerank: Any = None,
                 ab_key: str | None = None, choice: arms.Choice | None = None,
                 brownout: Brownout | None = None) -> Steps:
    p, arm = plan(config, body, params, rerank, ab_key, choice)
    spans.planned(p)
    answer = yield EngineSearch(p.body, p.params)  # engine errors propagate as they are
    started = time.perf_counter()
    response = _body(answer)
    sent, docs = _sent_docs(response, p, brownout)
    result, sidecar_ms = None, 0.0
    if docs:
        t0 = time.perf_counter()
        result = _failure((yield Rerank(p.query_text, [t for _, t in docs], p.options.model)))
        sidecar_ms = (time.perf_counter() - t0) * 1000
        _observe(brownout, result, sidecar_ms)
    return _like(answer, finish(response, p, arm, docs, result, sidecar_ms, started, sent))


def msearch_steps(config: ConnectorConfig, searches: Sequence, params: Mapping | None = None, *,
                  rerank: Any = None, ab_key: str | None = None, choice: arms.Choice | None = None,
                  brownout: Brownout | None = None) -> Steps:
    pairs = split_msearch(searches)
    plans = [plan(config, b, {}, rerank, ab_key, choice) for _, b in pairs]
    if plans:
        spans.planned(plans[0][0])
    lines: list[dict] = []
    for (header, _), (p, _) in zip(pairs, plans):
        lines += [header, p.body]
    answer = yield EngineMsearch(lines, dict(params or {}))
    started = time.perf_counter()
    response = _body(answer)
    subs = list(response.get("responses", []))
    routed = [_sent_docs(r, p, brownout) if "error" not in r else (Route(0), []) for r, (p, _) in zip(subs, plans)]
    sents, docs = [s for s, _ in routed], [d for _, d in routed]
    wanted = [i for i, d in enumerate(docs) if d]
    results: dict[int, Any] = {}
    sidecar_ms = 0.0
    if wanted:
        t0 = time.perf_counter()
        got = _failure((yield RerankMany([(plans[i][0].query_text, [t for _, t in docs[i]], plans[i][0].options.model)
                                          for i in wanted])))
        results = dict(zip(wanted, got)) if isinstance(got, list) else {i: got for i in wanted}
        sidecar_ms = (time.perf_counter() - t0) * 1000
        for i in wanted:
            r = results.get(i)
            _observe(brownout, r, r.took_ms if isinstance(r, RerankResult) else sidecar_ms)
    out = dict(response)
    out["responses"] = [r if "error" in r else finish(r, p, arm, docs[i], results.get(i),
                                                      sidecar_ms / max(len(wanted), 1), started, sents[i])
                        for i, (r, (p, arm)) in enumerate(zip(subs, plans))]
    return _like(answer, out)
