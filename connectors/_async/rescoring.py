"""Rescoring of one search / msearch around any engine call: a thin shell that carries out the
effects of `_core.steps.search_steps` (the one source of behaviour, shared with the proxy).

The engine call is a function `(body, params) -> response` (a dict, or elasticsearch-py's
ApiResponse, given back in the same type); the wrappers pass their own.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Awaitable, Callable, Mapping, Sequence

from rescore_sidecar.connectors._async.client import AsyncSidecarClient
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors._core.experiment import experiment_steps, impression_of
from rescore_sidecar.connectors._core.spans import marked as tracing_marked
from rescore_sidecar.connectors._core.steps import Effect, Rerank, Steps, msearch_steps, search_steps
from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors.feedback_log import FeedbackLog, FeedbackResult, open_sink
from rescore_sidecar.connectors import tracing

log = logging.getLogger("connectors")

AsyncEngineSearchCall = Callable[[dict, dict], Awaitable[Mapping]]
AsyncEngineMsearchCall = Callable[[list, dict], Awaitable[Mapping]]


async def drive(steps: Steps, engine: Callable[[Effect], Awaitable[Any]], sidecar: Any) -> Any:
    """Carries out the steps' effects: `engine(effect)` for the engine call (its errors propagate),
    `sidecar.rerank` / `rerank_many` for sidecar calls (errors become results)."""
    effect = next(steps)
    with tracing.client_span(tracing.ENGINE):
        answer = await engine(effect)
    return await resume(steps, answer, sidecar)


async def resume(steps: Steps, answer: Any, sidecar: Any) -> Any:
    """The rest of the steps once the engine answered (`answer`): what the proxy runs after its own
    engine call."""
    value = answer
    while True:
        try:
            effect = steps.send(value)
        except StopIteration as done:
            return done.value
        try:
            value = await (sidecar.rerank(effect.query, effect.texts, model=effect.model) if isinstance(effect, Rerank)
                           else sidecar.rerank_many(effect.calls))
        except Exception as exc:  # noqa: BLE001 - the steps turn it into a fallback
            value = exc


class AsyncRescorer:
    """Reranks searches through the sidecar. One per application; a context manager.
    `brownout`: the load-adaptive window state (default: a fresh one for `config`; tests pass one
    with a fake clock). `feedback_log`: where an experiment's impressions and feedback go (default:
    one this rescorer owns, on `config.experiment.events`)."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: Any = None,
                 brownout: Brownout | None = None, feedback_log: FeedbackLog | None = None):
        self.config = config
        self.brownout = brownout or Brownout(config)
        self._owns_log = feedback_log is None and config.experiment is not None
        self.feedback_log = feedback_log if feedback_log is not None else (
            FeedbackLog(open_sink(config.experiment.events)) if config.experiment is not None else None)
        self.sidecar = sidecar or AsyncSidecarClient(config.sidecar)
        endpoints = getattr(self.sidecar, "endpoints", None)
        if hasattr(endpoints, "defer_to_window"):  # the breaker as the last resort, after the window
            endpoints.defer_to_window = self.brownout.can_bend

    async def search(self, engine_search: AsyncEngineSearchCall, body: Mapping | None = None,
                     params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None,
                     impression_id: str | None = None) -> Any:
        """With `config.experiment`, a search without `rerank=` runs the experiment (the response's
        `_rescore.impression_id` is what `feedback` takes); `impression_id` replays one (tests)."""
        with tracing.span(tracing.SEARCH) as span:
            if self.config.experiment is not None and rerank is None:
                steps = experiment_steps(self.config, body, params, impression_id=impression_id or uuid.uuid4().hex,
                                         ab_key=ab_key, brownout=self.brownout)
                out = await drive(steps, lambda e: engine_search(e.body, e.params), self.sidecar)
                self.record(out)
                return tracing_marked(span, out)
            steps = search_steps(self.config, body, params, rerank=rerank, ab_key=ab_key, brownout=self.brownout)
            return tracing_marked(span, await drive(steps, lambda e: engine_search(e.body, e.params), self.sidecar))

    async def msearch(self, engine_msearch: AsyncEngineMsearchCall, searches: Sequence,
                      params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None) -> Any:
        with tracing.span(tracing.SEARCH) as span:
            steps = msearch_steps(self.config, searches, params, rerank=rerank, ab_key=ab_key,
                                  brownout=self.brownout)
            return tracing_marked(span, await drive(steps, lambda e: engine_msearch(e.lines, e.params), self.sidecar))

    def record(self, response: Any) -> None:
        """Logs the impression an experiment search showed; never raises (a log must not fail a search)."""
        shown = impression_of(response)
        if shown is None or self.feedback_log is None or not shown.doc_ids:
            return
        try:
            self.feedback_log.impression(shown.experiment, shown.arms, shown.doc_ids, teams=shown.teams,
                                         arm=shown.arm, impression_id=shown.id)
        except ValueError as exc:  # e.g. one _id twice (several indices): not comparable, not logged
            log.warning("rescore: impression %s not recorded: %s", shown.id, exc)

    async def feedback(self, impression_id: str, clicked: Sequence[str]) -> FeedbackResult:
        """Logs what the user clicked in an impression (doc `_id`s); idempotent per click. Raises
        `FeedbackError` (with `.reason`; nothing logged) for an unknown or expired impression or a
        click on a doc not shown; RuntimeError without `config.experiment` / a feedback log."""
        if self.feedback_log is None:
            raise RuntimeError("feedback needs an experiment (ConnectorConfig.experiment) or a feedback_log")
        return self.feedback_log.feedback(impression_id, clicked)

    async def close(self) -> None:
        await self.sidecar.close()
        if self._owns_log and self.feedback_log is not None:
            self.feedback_log.close()  # writes what is queued (bounded wait): shutdown, not a search

    async def __aenter__(self) -> AsyncRescorer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
