"""asyncio gRPC client of the sidecar; mirrors `rescore_sidecar.connectors.sidecar_client`."""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

import grpc
import tenacity

from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.connectors.endpoints import Channels, EndpointPool, channel_options_for
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
        # grpc.aio channels belong to one event loop: one per endpoint address and loop.
        self._channels = Channels(self._open_channel, rescore_pb2_grpc.RerankerStub,
                                  scope=lambda: id(asyncio.get_running_loop()),
                                  discard=lambda ch: asyncio.get_running_loop().create_task(ch.close()))

    def _open_channel(self, address: str, pool: EndpointPool) -> grpc.aio.Channel:
        options = channel_options_for(pool, self._options, self._credentials is not None)
        return (grpc.aio.secure_channel(address, self._credentials, options) if self._credentials
                else grpc.aio.insecure_channel(address, options))

    def _stub(self, target: str, address: str) -> rescore_pb2_grpc.RerankerStub:
        return self._channels.stub(self.targets.pools[target], address)

    def _retrying(self, deadline: float) -> tenacity.AsyncRetrying:
        min_left = self.config.min_retry_budget_ms / 1000

        def retryable(exc: BaseException) -> bool:
            return (isinstance(exc, SidecarUnavailable) and exc.reason == "unavailable"
                    and deadline - time.monotonic() >= min_left)

        return tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(2 if self.config.retry else 1),
                                      retry=tenacity.retry_if_exception(retryable), reraise=True)

    async def _attempt(self, request: rescore_pb2.RerankRequest, n: int, deadline: float,
                       tried: list[str]) -> RerankResult:
        target, address = self.targets.pick(exclude=tried)
        tried.append(address)  # the retry (same list) goes to another endpoint
        left = deadline - time.monotonic()
        if left <= 0:
            raise SidecarUnavailable("timeout", "budget spent")
        start = time.monotonic()
        try:
            reply = await self._stub(target, address).Rerank(request, timeout=left, metadata=self._metadata)
        except grpc.RpcError as exc:
            self.targets.record(target, address, exc, time.monotonic() - start)
            raise SidecarUnavailable(classify(exc), f"{address}: {exc.code().name} {exc.details()}") from None
        seconds = time.monotonic() - start
        self.targets.record(target, address, None, seconds)
        return to_result(reply, n, seconds * 1000)

    async def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
                     budget_ms: float | None = None) -> RerankResult:
        deadline = time.monotonic() + (self.config.budget_ms if budget_ms is None else budget_ms) / 1000
        return await self._rerank_until(query, texts, model, deadline)

    async def _rerank_until(self, query: str, texts: Sequence[str], model: str, deadline: float) -> RerankResult:
        request = build_request(query, texts, model)
        return await self._retrying(deadline)(self._attempt, request, len(texts), deadline, [])

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
        for loop_id, channel in self._channels.take_all():
            try:
                if id(asyncio.get_running_loop()) == loop_id:
                    await channel.close()
            except RuntimeError:
                pass
