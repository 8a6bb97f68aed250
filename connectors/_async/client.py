"""asyncio gRPC client of the sidecar; the same shell as `sidecar_client` over `_sidecar.calls`,
with `await` where it sends."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

import grpc

from rescore_sidecar.connectors._sidecar.calls import Call, RerankResult, deadline_for
from rescore_sidecar.connectors._sidecar.channels import auth_metadata, channel_credentials, channel_options
from rescore_sidecar.connectors._sidecar.endpoints import Endpoints
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc


class AsyncSidecarClient:
    """One per application. An async context manager; `await close()` closes the channels."""

    def __init__(self, config: SidecarClientConfig = SidecarClientConfig(), *, clock: Callable[[], float] = time.monotonic,
                 transport: Any = None):
        """`transport`: a stand-in for the gRPC channels (`connectors.testing.MockSidecar`)."""
        self.config = config
        self._transport = transport
        self.endpoints = Endpoints(config, clock)
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._metadata = auth_metadata(config)
        # grpc.aio channels belong to one event loop: keep them per loop.
        self._stubs: dict[tuple[int, str], tuple[grpc.aio.Channel, rescore_pb2_grpc.RerankerStub]] = {}

    @property
    def targets(self) -> Endpoints:  # the attribute's name before `endpoints`; kept one release
        return self.endpoints

    def _stub(self, address: str) -> rescore_pb2_grpc.RerankerStub:
        if self._transport is not None:
            return self._transport.async_stub(address)
        key = (id(asyncio.get_running_loop()), address)
        if key not in self._stubs:
            self._close_stale(keep=address)
            options = self.endpoints.channel_options(address, self._options, self._credentials is not None)
            channel = (grpc.aio.secure_channel(address, self._credentials, options) if self._credentials
                       else grpc.aio.insecure_channel(address, options))
            self._stubs[key] = (channel, rescore_pb2_grpc.RerankerStub(channel))
        return self._stubs[key][1]

    def _close_stale(self, keep: str) -> None:
        """Closes (in the background) channels to endpoints the targets no longer resolve to; called
        when a new endpoint's channel is opened, which is when the set of endpoints changed."""
        current = self.endpoints.current_addresses() | {keep}
        for key in [k for k in self._stubs if k[1] not in current]:
            channel = self._stubs.pop(key)[0]
            if key[0] == id(asyncio.get_running_loop()):
                asyncio.get_running_loop().create_task(channel.close())

    async def _attempt(self, call: Call) -> RerankResult:
        endpoint = self.endpoints.pick(exclude=call.tried)
        timeout = call.begin(endpoint)
        try:
            reply = await self._stub(endpoint.address).Rerank(call.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise call.failed(self.endpoints, endpoint, exc) from None
        return call.succeeded(self.endpoints, endpoint, reply)

    async def _run(self, call: Call) -> RerankResult:
        while True:
            try:
                return await self._attempt(call)
            except SidecarUnavailable as failure:
                if not call.retry_after(failure):
                    raise

    async def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
                     budget_ms: float | None = None) -> RerankResult:
        return await self._run(Call.start(self.config, query, texts, model, deadline_for(self.config, budget_ms)))

    async def rerank_many(self, calls: Sequence[tuple[str, Sequence[str], str]], *,
                          budget_ms: float | None = None) -> list[RerankResult | SidecarUnavailable]:
        """Several (query, texts, model) at once, concurrently, under one shared budget."""
        deadline = deadline_for(self.config, budget_ms)

        async def one(call: Call) -> RerankResult | SidecarUnavailable:
            try:
                return await self._run(call)
            except SidecarUnavailable as exc:
                return exc

        return list(await asyncio.gather(*(one(Call.start(self.config, q, t, m, deadline)) for q, t, m in calls)))

    async def close(self) -> None:
        """Closes the channels this event loop opened (others belong to loops that are gone)."""
        if self._transport is not None and hasattr(self._transport, "close"):
            self._transport.close()
        stubs, self._stubs = self._stubs, {}
        loop_id = id(asyncio.get_running_loop())
        for (owner, _), (channel, _) in stubs.items():
            if owner == loop_id:
                try:
                    await channel.close()
                except RuntimeError:  # its loop's machinery is already shut down
                    pass

    async def __aenter__(self) -> AsyncSidecarClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
