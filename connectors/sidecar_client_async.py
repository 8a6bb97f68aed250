"""asyncio gRPC client of the sidecar; mirrors `rescore_sidecar.connectors.sidecar_client`."""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

import grpc
import tenacity

from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.connectors.sidecar_client import (RerankResult, SidecarUnavailable, Targets, auth_metadata, build_request,
                                       channel_credentials, channel_options, classify, to_result)
from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc


class AsyncSidecarClient:
    def __init__(self, config: SidecarClientConfig = SidecarClientConfig(), *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.targets = Targets(config, clock)
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._metadata = auth_metadata(config)
        # grpc.aio channels belong to one event loop: keep them per loop.
        self._stubs: dict[tuple[int, str], tuple[grpc.aio.Channel, rescore_pb2_grpc.RerankerStub]] = {}

    def _stub(self, target: str) -> rescore_pb2_grpc.RerankerStub:
        key = (id(asyncio.get_running_loop()), target)
        if key not in self._stubs:
            channel = (grpc.aio.secure_channel(target, self._credentials, self._options) if self._credentials
                       else grpc.aio.insecure_channel(target, self._options))
            self._stubs[key] = (channel, rescore_pb2_grpc.RerankerStub(channel))
        return self._stubs[key][1]

    def _retrying(self, deadline: float) -> tenacity.AsyncRetrying:
        min_left = self.config.min_retry_budget_ms / 1000

        def retryable(exc: BaseException) -> bool:
            return (isinstance(exc, SidecarUnavailable) and exc.reason == "unavailable"
                    and deadline - time.monotonic() >= min_left)

        return tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(2 if self.config.retry else 1),
                                      retry=tenacity.retry_if_exception(retryable), reraise=True)

    async def _attempt(self, request: rescore_pb2.RerankRequest, n: int, deadline: float) -> RerankResult:
        target = self.targets.pick()
        left = deadline - time.monotonic()
        if left <= 0:
            raise SidecarUnavailable("timeout", "budget spent")
        start = time.monotonic()
        try:
            reply = await self._stub(target).Rerank(request, timeout=left, metadata=self._metadata)
        except grpc.RpcError as exc:
            self.targets.record(target, exc, time.monotonic() - start)
            raise SidecarUnavailable(classify(exc), f"{target}: {exc.code().name} {exc.details()}") from None
        seconds = time.monotonic() - start
        self.targets.record(target, None, seconds)
        return to_result(reply, n, seconds * 1000)

    async def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
                     budget_ms: float | None = None) -> RerankResult:
        deadline = time.monotonic() + (self.config.budget_ms if budget_ms is None else budget_ms) / 1000
        return await self._rerank_until(query, texts, model, deadline)

    async def _rerank_until(self, query: str, texts: Sequence[str], model: str, deadline: float) -> RerankResult:
        request = build_request(query, texts, model)
        return await self._retrying(deadline)(self._attempt, request, len(texts), deadline)

    async def rerank_many(self, calls: Sequence[tuple[str, Sequence[str], str]], *,
                          budget_ms: float | None = None) -> list[RerankResult | SidecarUnavailable]:
        """Several (query, texts, model) at once, concurrently, under one shared budget."""
        deadline = time.monotonic() + (self.config.budget_ms if budget_ms is None else budget_ms) / 1000

        async def one(query: str, texts: Sequence[str], model: str) -> RerankResult | SidecarUnavailable:
            try:
                return await self._rerank_until(query, texts, model, deadline)
            except SidecarUnavailable as exc:
                return exc

        return list(await asyncio.gather(*(one(q, t, m) for q, t, m in calls)))

    async def close(self) -> None:
        stubs, self._stubs = self._stubs, {}
        for (loop_id, _), (channel, _) in stubs.items():
            try:
                if id(asyncio.get_running_loop()) == loop_id:
                    await channel.close()
            except RuntimeError:
                pass
