# Generated from connectors/_async/rescoring.py by scripts/unasync.py: edit that file, then run the script.
"""Rescoring of one search / msearch around any engine call: a thin shell that carries out the
effects of `_core.steps.search_steps` (the one source of behaviour, shared with the proxy).

The engine call is a function `(body, params) -> response` (a dict, or elasticsearch-py's
ApiResponse, given back in the same type); the wrappers pass their own.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from rescore_sidecar.connectors._sidecar.client import SidecarClient
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors._core.spans import marked as tracing_marked
from rescore_sidecar.connectors._core.steps import Effect, Rerank, Steps, msearch_steps, search_steps
from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors import tracing

EngineSearchCall = Callable[[dict, dict], Mapping]
EngineMsearchCall = Callable[[list, dict], Mapping]


def drive(steps: Steps, engine: Callable[[Effect], Any], sidecar: Any) -> Any:
    """Carries out the steps' effects: `engine(effect)` for the engine call (its errors propagate),
    `sidecar.rerank` / `rerank_many` for sidecar calls (errors become results)."""
    effect = next(steps)
    with tracing.client_span(tracing.ENGINE):
        answer = engine(effect)
    return resume(steps, answer, sidecar)


def resume(steps: Steps, answer: Any, sidecar: Any) -> Any:
    """The rest of the steps once the engine answered (`answer`): what the proxy runs after its own
    engine call."""
    value = answer
    while True:
        try:
            effect = steps.send(value)
        except StopIteration as done:
            return done.value
        try:
            value = (sidecar.rerank(effect.query, effect.texts, model=effect.model) if isinstance(effect, Rerank)
                     else sidecar.rerank_many(effect.calls))
        except Exception as exc:  # noqa: BLE001 - the steps turn it into a fallback
            value = exc


class Rescorer:
    """Reranks searches through the sidecar. One per application; a context manager.
    `brownout`: the load-adaptive window state (default: a fresh one for `config`; tests pass one
    with a fake clock)."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: Any = None,
                 brownout: Brownout | None = None):
        self.config = config
        self.brownout = brownout or Brownout(config)
        self.sidecar = sidecar or SidecarClient(config.sidecar)
        endpoints = getattr(self.sidecar, "endpoints", None)
        if hasattr(endpoints, "defer_to_window"):  # the breaker as the last resort, after the window
            endpoints.defer_to_window = self.brownout.can_bend

    def search(self, engine_search: EngineSearchCall, body: Mapping | None = None,
               params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None) -> Any:
        with tracing.span(tracing.SEARCH) as span:
            steps = search_steps(self.config, body, params, rerank=rerank, ab_key=ab_key, brownout=self.brownout)
            return tracing_marked(span, drive(steps, lambda e: engine_search(e.body, e.params), self.sidecar))

    def msearch(self, engine_msearch: EngineMsearchCall, searches: Sequence,
                params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None) -> Any:
        with tracing.span(tracing.SEARCH) as span:
            steps = msearch_steps(self.config, searches, params, rerank=rerank, ab_key=ab_key,
                                  brownout=self.brownout)
            return tracing_marked(span, drive(steps, lambda e: engine_msearch(e.lines, e.params), self.sidecar))

    def close(self) -> None:
        self.sidecar.close()

    def __enter__(self) -> Rescorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
