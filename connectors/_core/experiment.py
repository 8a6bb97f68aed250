"""An A/B experiment on one search, without I/O: interleaved (team-draft) or split arms.

`experiment_steps` is a steps generator like `steps.search_steps` (same effects, driven by the
same `drive` / `resume`): ONE engine call, then, for an interleaved experiment, one `RerankMany`
holding one sidecar call per reranked arm, which the shells run concurrently (asyncio.gather /
a small thread pool: `_sidecar.concurrency`) under one deadline budget, each through the breaker
(an experiment with one engine-order arm makes a plain `Rerank`: one call, nothing to fan out). Each arm's full ranking of the same
hits is built as that arm would serve it alone; the user's page is their team-draft merge, seeded
by the impression id, so (impression id, hits) replays to the same page. An arm that falls back
(sidecar failure) is not compared: the other arm's list is served, marked `interleaved: false`,
and no impression is recorded. A split experiment is the plain search with the arm chosen by hash.

`impression_of(response)` reads what to record in the event log from the finished response (its
`_rescore` marker and each hit's `_rescore.team`), so the shells log exactly what was shown.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._core import arms as arms_
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors._core.interleave import TEAM_A, team_draft
from rescore_sidecar.connectors._core.plan import SearchPlan, plan_search
from rescore_sidecar.connectors._core.shape import MARKER_KEY, _with_hits, apply_scores, engine_order, marker
from rescore_sidecar.connectors._core.steps import (EngineSearch, Rerank, RerankMany, Route, Steps, _body, _failure, _like,
                                                    _observe, _sent_docs, search_steps)
from rescore_sidecar.connectors._sidecar.calls import RerankResult
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable
from rescore_sidecar.connectors.config import Arm, ConnectorConfig, Experiment, RerankOptions

log = logging.getLogger("connectors")


@dataclasses.dataclass(frozen=True)
class ImpressionRecord:
    """What the event log records for one search of an experiment (`FeedbackLog.impression`)."""
    id: str
    experiment: str
    arms: tuple[str, str]
    doc_ids: tuple[str, ...]
    teams: dict[str, str] | None  # interleave: doc id -> arm
    arm: str | None               # split: the arm shown


def engine_options(experiment: Experiment, default: RerankOptions) -> RerankOptions:
    """Options whose plan fetches what every arm needs: the largest window, every text field."""
    reranked = [a.options for a in experiment.arms if a.options is not None] or [default]
    fields = tuple(dict.fromkeys(f for o in reranked for f in o.fields))
    return dataclasses.replace(reranked[0], enabled=True, window=max(o.window for o in reranked), fields=fields)


def _arm_plan(engine_plan: SearchPlan, body: Mapping | None, params: Mapping | None, options: RerankOptions) -> SearchPlan:
    """The engine plan (one engine call for both arms) with this arm's options and query text."""
    own = plan_search(body, params, options)
    return dataclasses.replace(engine_plan, options=options, query_text=own.query_text or engine_plan.query_text)


def _full(p: SearchPlan, hits: list) -> SearchPlan:
    """The plan with the whole result list as the page (interleaving needs the full rankings)."""
    return dataclasses.replace(p, offset=0, size=max(len(hits), 1))


def _ranking(response: Mapping, p: SearchPlan, docs: list, sent: Route, result: Any) -> tuple[list[dict], str, str | None]:
    """(this arm's hits, best first, in the caller's shape; "reranked" / "engine" / "fallback";
    fallback reason)."""
    hits = response.get("hits", {}).get("hits", [])
    full = _full(p, hits)
    if not docs:  # engine-order arm, or the arm's own choice not to call (selective, brownout, no text)
        return engine_order(response, full, {})["hits"]["hits"], "engine", None
    if isinstance(result, RerankResult):
        scores = {pos: result.scores[j] for j, (pos, _) in enumerate(docs)}
        if sent.window < full.options.window:
            full = dataclasses.replace(full, options=dataclasses.replace(full.options, window=sent.window))
        return apply_scores(response, full, scores, {})["hits"]["hits"], "reranked", None
    reason = result.reason if isinstance(result, SidecarUnavailable) else "connector_error"
    return engine_order(response, full, {})["hits"]["hits"], "fallback", reason


def _teamed(hit: dict, arm: str) -> dict:
    hit = dict(hit)
    extra = hit.get(MARKER_KEY)
    hit[MARKER_KEY] = {**(extra if isinstance(extra, Mapping) else {}), "team": arm}
    return hit


def _max_score(hits: list[dict]) -> Any:
    numeric = [h["_score"] for h in hits if isinstance(h.get("_score"), (int, float))]
    return max(numeric) if numeric else None


def experiment_steps(config: ConnectorConfig, body: Mapping | None, params: Mapping | None, *, impression_id: str,
                     ab_key: str | None = None, brownout: Brownout | None = None) -> Steps:
    """One search under `config.experiment` (required). `impression_id` seeds the interleaving."""
    experiment = config.experiment
    assert experiment is not None, "experiment_steps needs config.experiment"
    names = (experiment.arms[0].name, experiment.arms[1].name)
    try:
        engine_plan = plan_search(body, params, engine_options(experiment, config.default))
    except ValueError:
        engine_plan = None  # malformed from/size: the engine judges the request as sent
    if engine_plan is None or engine_plan.skip is not None:
        # Not rankable (sort, scroll, size 0, no query text, ...): no arm, no impression.
        return (yield from search_steps(config, body, params, choice=arms_.Choice(
            dataclasses.replace(config.default, enabled=False), None), brownout=brownout))
    if experiment.mode == "split":
        return (yield from _split(config, experiment, body, params, impression_id, ab_key, brownout))

    answer = yield EngineSearch(engine_plan.body, engine_plan.params)  # engine errors propagate as they are
    started = time.perf_counter()
    response = _body(answer)
    plans = [_arm_plan(engine_plan, body, params, a.options) if a.options is not None else engine_plan
             for a in experiment.arms]
    routed = [_sent_docs(response, p, brownout) if a.options is not None else (Route(0), [])
              for a, p in zip(experiment.arms, plans)]
    wanted = [i for i, (_, docs) in enumerate(routed) if docs]
    results: dict[int, Any] = {}
    if wanted:
        t0 = time.perf_counter()
        calls = [(plans[i].query_text, [t for _, t in routed[i][1]], plans[i].options.model) for i in wanted]
        if len(calls) == 1:  # one reranked arm: a plain call (no fan-out machinery, e.g. the sync thread pool)
            got = _failure((yield Rerank(*calls[0])))
        else:
            got = _failure((yield RerankMany(calls)))
        results = dict(zip(wanted, got)) if isinstance(got, list) else {i: got for i in wanted}
        sidecar_ms = (time.perf_counter() - t0) * 1000
        for i in wanted:
            r = results.get(i)
            _observe(brownout, r, r.took_ms if isinstance(r, RerankResult) else sidecar_ms)
    out = _interleave(response, experiment, names, plans, routed, results, impression_id, started)
    return _like(answer, out)


def _interleave(response: Mapping, experiment: Experiment, names: tuple[str, str], plans: list[SearchPlan],
                routed: list, results: Mapping[int, Any], impression_id: str, started: float) -> dict:
    p = plans[0]
    outcome, fallback = "reranked", None
    mark = {"experiment": experiment.name, "mode": "interleave", "arms": list(names)}
    try:
        rankings = [_ranking(response, plans[i], routed[i][1], routed[i][0], results.get(i)) for i in range(2)]
        failed = [i for i in range(2) if rankings[i][1] == "fallback"]
        window = max(routed[0][0].window, routed[1][0].window)
        reason = next((r[0].reason for r in routed if r[0].reason), None)
        model = next((r.model for r in results.values() if isinstance(r, RerankResult)), "")
        took_ms = (time.perf_counter() - started) * 1000
        if failed:
            fallback = rankings[failed[0]][2]
            kept = [i for i in range(2) if i not in failed]
            if not kept:  # both arms fell back: the engine's order, as any search would
                outcome = "fallback"
                return engine_order(response, p, {**marker(reranked=False, fallback=fallback, took_ms=took_ms,
                                                           window=window, window_reason=reason),
                                                   **mark, "interleaved": False, "served_arm": None,
                                                   "impression_id": None})
            i = kept[0]
            hits = [_teamed(h, names[i]) for h in rankings[i][0][p.offset: p.offset + p.size]]
            outcome = "reranked" if rankings[i][1] == "reranked" else "fallback"
            return _with_hits(response, hits, _max_score(hits), {
                **marker(reranked=rankings[i][1] == "reranked", fallback=fallback, model=model, took_ms=took_ms,
                         window=window, window_reason=reason),
                **mark, "interleaved": False, "served_arm": names[i], "impression_id": None})
        by_id = [{h.get("_id"): h for h in rankings[i][0]} for i in range(2)]
        merged = team_draft([h.get("_id") for h in rankings[0][0]], [h.get("_id") for h in rankings[1][0]],
                            seed=impression_id)
        shown = list(zip(merged.doc_ids, merged.teams))[p.offset: p.offset + p.size]
        hits = [_teamed(by_id[0 if team == TEAM_A else 1][doc], names[0 if team == TEAM_A else 1])
                for doc, team in shown]
        reranked = any(r[1] == "reranked" for r in rankings)
        return _with_hits(response, hits, _max_score(hits), {
            **marker(reranked=reranked, model=model, took_ms=took_ms, window=window, window_reason=reason),
            **mark, "interleaved": True, "served_arm": None, "impression_id": impression_id})
    except Exception:  # noqa: BLE001 - a connector bug must not fail the search
        log.exception("rescore: interleaving failed; returning engine order")
        outcome, fallback = "fallback", "connector_error"
        return engine_order(response, p, {**marker(reranked=False, fallback=fallback), **mark, "interleaved": False,
                                          "served_arm": None, "impression_id": None})
    finally:
        metrics.SEARCHES.labels(outcome, experiment.name).inc()
        if fallback:
            metrics.FALLBACKS.labels(fallback).inc()


def _split(config: ConnectorConfig, experiment: Experiment, body: Mapping | None, params: Mapping | None,
           impression_id: str, ab_key: str | None, brownout: Brownout | None) -> Steps:
    """The plain search with the arm chosen by a hash of `ab_key` (of the impression id without one).
    The impression records the assigned arm even when its sidecar call fell back (intent to treat)."""
    arm: Arm = arms_.choose_arm(experiment.arms, str(ab_key) if ab_key is not None else impression_id,
                                config.ab_salt)
    options = arm.options if arm.options is not None else dataclasses.replace(config.default, enabled=False)
    answer = yield from search_steps(config, body, params, choice=arms_.Choice(options, arm.name), brownout=brownout)
    out = _body(answer)
    try:
        section = out.get("hits", {})
        section["hits"] = [_teamed(h, arm.name) for h in section.get("hits", [])]
        out[MARKER_KEY].update({"experiment": experiment.name, "mode": "split",
                                "arms": [a.name for a in experiment.arms], "interleaved": False,
                                "served_arm": arm.name, "impression_id": impression_id})
    except Exception:  # noqa: BLE001
        log.exception("rescore: marking the split experiment failed")
    return answer


def impression_of(response: Any) -> ImpressionRecord | None:
    """The impression a finished experiment search showed (None: not one to record)."""
    out = _body(response)
    mark = out.get(MARKER_KEY) if isinstance(out, Mapping) else None
    if not isinstance(mark, Mapping) or not mark.get("impression_id") or not mark.get("experiment"):
        return None
    hits = [h for h in out.get("hits", {}).get("hits", []) if isinstance(h, Mapping)]
    doc_ids = tuple(str(h.get("_id")) for h in hits)
    if mark.get("mode") == "interleave":
        teams = {str(h.get("_id")): h.get(MARKER_KEY, {}).get("team") for h in hits}
        return ImpressionRecord(mark["impression_id"], mark["experiment"], tuple(mark["arms"]), doc_ids, teams, None)
    return ImpressionRecord(mark["impression_id"], mark["experiment"], tuple(mark["arms"]), doc_ids, None,
                            mark.get("served_arm"))
