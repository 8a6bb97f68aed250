"""Rescoring of one search / msearch around any engine call (sync): a thin shell that carries out
the effects of `search_steps` (the one source of behaviour, shared with `rescoring_async` and the proxy).

The engine call is a function `(body, params) -> response` (a dict, or elasticsearch-py's
ApiResponse, given back in the same type); the wrappers pass their own.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors._core.steps import (collect, drive, finish, log, msearch_steps, plan, search_steps,
                                                     split_msearch)
from rescore_sidecar.connectors._sidecar.client import SidecarClient

__all__ = ["EngineMsearch", "EngineSearch", "Rescorer", "collect", "finish", "log", "plan", "split_msearch"]

EngineSearch = Callable[[dict, dict], Mapping]
EngineMsearch = Callable[[list, dict], Mapping]


class Rescorer:
    """Reranks searches through the sidecar. One per application; thread-safe; a context manager."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: Any = None):
        self.config = config
        self.sidecar = sidecar or SidecarClient(config.sidecar)

    def search(self, engine_search: EngineSearch, body: Mapping | None = None, params: Mapping | None = None, *,
               rerank: Any = None, ab_key: str | None = None) -> Any:
        steps = search_steps(self.config, body, params, rerank=rerank, ab_key=ab_key)
        return drive(steps, lambda e: engine_search(e.body, e.params), self.sidecar)

    def msearch(self, engine_msearch: EngineMsearch, searches: Sequence, params: Mapping | None = None, *,
                rerank: Any = None, ab_key: str | None = None) -> Any:
        steps = msearch_steps(self.config, searches, params, rerank=rerank, ab_key=ab_key)
        return drive(steps, lambda e: engine_msearch(e.lines, e.params), self.sidecar)

    def close(self) -> None:
        self.sidecar.close()

    def __enter__(self) -> Rescorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
