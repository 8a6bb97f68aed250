"""Rescoring around an async engine call: the asyncio shell over `search_steps`; mirrors `rescoring`."""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Sequence

from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors._core.steps import drive_async, msearch_steps, search_steps
from rescore_sidecar.connectors._async.client import AsyncSidecarClient

AsyncEngineSearch = Callable[[dict, dict], Awaitable[Mapping]]
AsyncEngineMsearch = Callable[[list, dict], Awaitable[Mapping]]


class AsyncRescorer:
    """Reranks searches through the sidecar from asyncio code. One per application; an async context manager."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: Any = None):
        self.config = config
        self.sidecar = sidecar or AsyncSidecarClient(config.sidecar)

    async def search(self, engine_search: AsyncEngineSearch, body: Mapping | None = None,
                     params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None) -> Any:
        steps = search_steps(self.config, body, params, rerank=rerank, ab_key=ab_key)
        return await drive_async(steps, lambda e: engine_search(e.body, e.params), self.sidecar)

    async def msearch(self, engine_msearch: AsyncEngineMsearch, searches: Sequence, params: Mapping | None = None,
                      *, rerank: Any = None, ab_key: str | None = None) -> Any:
        steps = msearch_steps(self.config, searches, params, rerank=rerank, ab_key=ab_key)
        return await drive_async(steps, lambda e: engine_msearch(e.lines, e.params), self.sidecar)

    async def close(self) -> None:
        await self.sidecar.close()

    async def __aenter__(self) -> AsyncRescorer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
