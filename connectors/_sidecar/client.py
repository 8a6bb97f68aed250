"""Synchronous gRPC client of the sidecar: a thin shell over `_sidecar.calls` (budget, one retry,
classification) and `_sidecar.endpoints` (which address, breakers). Mirrored by `sidecar_client_async`.

Every failure the connector falls back on comes out as `SidecarUnavailable(reason)` with
reason one of: timeout, unavailable, overloaded, too_large (over the sidecar's per-request limits),
breaker_open, unauthenticated, error; refusals that are the request's fault are `RequestRejected`,
refusals for load are `SidecarOverloaded` (both subclasses). The reason comes from the status's
typed `ErrorInfo`, never from its message (see `_sidecar.errors`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import grpc

from rescore_sidecar.connectors._sidecar.calls import Call, RerankResult, build_request, deadline_for, to_result
from rescore_sidecar.connectors._sidecar.channels import auth_metadata, channel_credentials, channel_options
from rescore_sidecar.connectors._sidecar.endpoints import Endpoint, Endpoints, Targets
from rescore_sidecar.connectors._sidecar.errors import (RequestRejected, SidecarOverloaded, SidecarUnavailable,
                                                        from_rpc_error)
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc

__all__ = ["Endpoint", "Endpoints", "RequestRejected", "RerankResult", "SidecarClient", "SidecarOverloaded", "SidecarUnavailable",
           "Targets", "auth_metadata", "build_request", "channel_credentials", "channel_options", "from_rpc_error",
           "to_result"]


class SidecarClient:
    """Thread-safe; one per application. A context manager; `close()` closes the channels."""

    def __init__(self, config: SidecarClientConfig = SidecarClientConfig(), *, clock: Callable[[], float] = time.monotonic,
                 transport: Any = None):
        """`transport`: a stand-in for the gRPC channels (`connectors.testing.MockSidecar`)."""
        self.config = config
        self._transport = transport
        self.endpoints = Endpoints(config, clock)
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._metadata = auth_metadata(config)
        self._stubs: dict[str, tuple[grpc.Channel, rescore_pb2_grpc.RerankerStub]] = {}
        self._lock = threading.Lock()

    @property
    def targets(self) -> Endpoints:  # the attribute's name before `endpoints`; kept one release
        return self.endpoints

    def _stub(self, address: str) -> rescore_pb2_grpc.RerankerStub:
        if self._transport is not None:
            return self._transport.stub(address)
        with self._lock:
            if address not in self._stubs:
                self._close_stale(keep=address)
                options = self.endpoints.channel_options(address, self._options, self._credentials is not None)
                channel = (grpc.secure_channel(address, self._credentials, options) if self._credentials
                           else grpc.insecure_channel(address, options))
                self._stubs[address] = (channel, rescore_pb2_grpc.RerankerStub(channel))
            return self._stubs[address][1]

    def _attempt(self, call: Call) -> RerankResult:
        endpoint = self.endpoints.pick(exclude=call.tried)
        timeout = call.begin(endpoint)
        try:
            reply = self._stub(endpoint.address).Rerank(call.request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise call.failed(self.endpoints, endpoint, exc) from None
        return call.succeeded(self.endpoints, endpoint, reply)

    def _run(self, call: Call) -> RerankResult:
        while True:
            try:
                return self._attempt(call)
            except SidecarUnavailable as failure:
                if not call.retry_after(failure):
                    raise

    def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
               budget_ms: float | None = None) -> RerankResult:
        return self._run(Call.start(self.config, query, texts, model, deadline_for(self.config, budget_ms)))

    def rerank_many(self, calls: Sequence[tuple[str, Sequence[str], str]], *,
                    budget_ms: float | None = None) -> list[RerankResult | SidecarUnavailable]:
        """Several (query, texts, model) at once, concurrently, under one shared budget; each
        retried by the same rule as `rerank`, the retries concurrent too."""
        deadline = deadline_for(self.config, budget_ms)
        pending = [Call.start(self.config, q, t, m, deadline) for q, t, m in calls]
        results: list[RerankResult | SidecarUnavailable | None] = [None] * len(pending)
        todo = list(range(len(pending)))
        while todo:
            sent = []
            for i in todo:
                try:
                    endpoint = self.endpoints.pick(exclude=pending[i].tried)
                    timeout = pending[i].begin(endpoint)
                    sent.append((i, endpoint, self._stub(endpoint.address).Rerank.future(
                        pending[i].request, timeout=timeout, metadata=self._metadata)))
                except SidecarUnavailable as exc:
                    results[i] = exc
            todo = []
            for i, endpoint, future in sent:
                try:
                    results[i] = pending[i].succeeded(self.endpoints, endpoint, future.result())
                except grpc.RpcError as exc:
                    results[i] = failure = pending[i].failed(self.endpoints, endpoint, exc)
                    if pending[i].retry_after(failure):
                        todo.append(i)
                except SidecarUnavailable as exc:
                    results[i] = exc
        return results  # type: ignore[return-value]

    def _close_stale(self, keep: str) -> None:
        """Closes channels to endpoints the targets no longer resolve to (called with the lock held,
        when a new endpoint's channel is opened: that is when the set of endpoints changed)."""
        current = self.endpoints.current_addresses() | {keep}
        for address in [a for a in self._stubs if a not in current]:
            self._stubs.pop(address)[0].close()

    def close(self) -> None:
        if self._transport is not None and hasattr(self._transport, "close"):
            self._transport.close()
        with self._lock:
            stubs, self._stubs = self._stubs, {}
        for channel, _ in stubs.values():
            channel.close()

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
