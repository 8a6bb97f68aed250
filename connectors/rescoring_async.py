"""Rescoring around an async engine call; mirrors `rescore_sidecar.connectors.rescoring` (same planning and finishing)."""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Mapping, Sequence

from rescore_sidecar.connectors.config import ConnectorConfig
from rescore_sidecar.connectors.rescoring import collect, finish, log, plan, split_msearch
from rescore_sidecar.connectors.sidecar_client import RerankResult, SidecarUnavailable
from rescore_sidecar.connectors.sidecar_client_async import AsyncSidecarClient

AsyncEngineSearch = Callable[[dict, dict], Awaitable[Mapping]]
AsyncEngineMsearch = Callable[[list, dict], Awaitable[Mapping]]


class AsyncRescorer:
    """Reranks searches through the sidecar from asyncio code. One per application."""

    def __init__(self, config: ConnectorConfig = ConnectorConfig(), *, sidecar: AsyncSidecarClient | None = None):
        self.config = config
        self.sidecar = sidecar or AsyncSidecarClient(config.sidecar)

    async def search(self, engine_search: AsyncEngineSearch, body: Mapping | None = None,
                     params: Mapping | None = None, *, rerank: Any = None, ab_key: str | None = None) -> dict:
        p, arm = plan(self.config, body, params, rerank, ab_key)
        response = await engine_search(p.body, p.params)  # engine errors propagate as they are
        started = time.perf_counter()
        docs = collect(response, p)
        result: RerankResult | Exception | None = None
        sidecar_ms = 0.0
        if docs:
            t0 = time.perf_counter()
            try:
                result = await self.sidecar.rerank(p.query_text, [t for _, t in docs], model=p.options.model)
            except SidecarUnavailable as exc:
                result = exc
            except Exception as exc:  # noqa: BLE001
                log.exception("rescore: sidecar call failed")
                result = exc
            sidecar_ms = (time.perf_counter() - t0) * 1000
        return finish(response, p, arm, docs, result, sidecar_ms, started)

    async def msearch(self, engine_msearch: AsyncEngineMsearch, searches: Sequence, params: Mapping | None = None,
                      *, rerank: Any = None, ab_key: str | None = None) -> dict:
        pairs = split_msearch(searches)
        plans = [plan(self.config, b, {}, rerank, ab_key) for _, b in pairs]
        lines: list[dict] = []
        for (header, _), (p, _) in zip(pairs, plans):
            lines += [header, p.body]
        response = await engine_msearch(lines, dict(params or {}))
        started = time.perf_counter()
        subs = list(response.get("responses", []))
        docs = [collect(r, p) if "error" not in r else [] for r, (p, _) in zip(subs, plans)]
        wanted = [i for i, d in enumerate(docs) if d]
        results: dict[int, Any] = {}
        sidecar_ms = 0.0
        if wanted:
            t0 = time.perf_counter()
            try:
                got = await self.sidecar.rerank_many([(plans[i][0].query_text, [t for _, t in docs[i]],
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

    async def close(self) -> None:
        await self.sidecar.close()
