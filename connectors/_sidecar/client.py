# Generated from connectors/_async/client.py by scripts/unasync.py: edit that file, then run the script.
"""The gRPC client of the sidecar: a thin shell that only sends, over `_sidecar.calls` (budget, the
one retry as a tenacity policy, classification) and `_sidecar.endpoints` (which address, breakers).

Every failure the connector falls back on comes out as `SidecarUnavailable(reason)` with
reason one of: timeout, unavailable, overloaded, too_large (over the sidecar's per-request limits),
breaker_open, unauthenticated, error; refusals that are the request's fault are `RequestRejected`,
refusals for load are `SidecarOverloaded` (both subclasses). The reason comes from the status's
typed `ErrorInfo`, never from its message (see `_sidecar.errors`).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

import grpc
from tenacity import Retrying

from rescore_sidecar.connectors._sidecar.calls import Call, RerankResult, deadline_for, retry_policy
from rescore_sidecar.connectors._sidecar.channels import Channels, auth_metadata
from rescore_sidecar.connectors._sidecar.concurrency import run_all
from rescore_sidecar.connectors._sidecar.endpoints import Endpoints
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable
from rescore_sidecar.connectors import tracing
from rescore_sidecar.connectors.config import SidecarClientConfig


class SidecarClient:
    """One per application (the sync one is thread-safe). A context manager; `close()` closes the channels."""

    def __init__(self, config: SidecarClientConfig = SidecarClientConfig(), *, clock: Callable[[], float] = time.monotonic,
                 transport: Any = None):
        """`transport`: a stand-in for the gRPC channels (`connectors.testing.MockSidecar`)."""
        self.config = config
        self.endpoints = Endpoints(config, clock)
        self._channels = Channels(self.endpoints, config, transport)
        self._metadata = auth_metadata(config)

    def close(self) -> None:
        """Closes the channels (and a stand-in transport); the client is not used after."""
        self._channels.close()

    def _attempt(self, call: Call) -> RerankResult:
        endpoint, timeout = call.begin(self.endpoints)
        try:
            reply = self._channels.stub(endpoint.address).Rerank(call.request, timeout=timeout,
                                                                 metadata=tracing.grpc_metadata(self._metadata))
        except grpc.RpcError as exc:
            raise call.failed(self.endpoints, endpoint, exc) from None
        return call.succeeded(self.endpoints, endpoint, reply)

    def _run(self, call: Call) -> RerankResult:
        with tracing.client_span(tracing.SIDECAR) as span:  # one per request, its attempts inside
            try:
                return Retrying(**retry_policy(call))(self._attempt, call)
            finally:
                if span.is_recording():
                    span.set_attributes({"rescore.endpoint": call.tried[-1] if call.tried else "",
                                         "rescore.retries": max(len(call.tried) - 1, 0), "rescore.documents": call.n})

    def _run_or_failure(self, call: Call) -> RerankResult | SidecarUnavailable:
        try:
            return self._run(call)
        except SidecarUnavailable as exc:
            return exc

    def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
               budget_ms: float | None = None, bypass_cache: bool | None = None) -> RerankResult:
        """`bypass_cache`: the sidecar scores every pair with the model and neither reads nor fills its
        score cache (for measuring compute latency; scores are the same). None: `config.bypass_cache`."""
        return self._run(Call.start(self.config, query, texts, model, deadline_for(self.config, budget_ms),
                                    bypass_cache))

    def rerank_many(self, calls: Sequence[tuple[str, Sequence[str], str]], *,
                    budget_ms: float | None = None,
                    bypass_cache: bool | None = None) -> list[RerankResult | SidecarUnavailable]:
        """Several (query, texts, model) at once, concurrently, under one shared budget; each
        retried by the same rule as `rerank`, the retries concurrent too."""
        deadline = deadline_for(self.config, budget_ms)
        return run_all([functools.partial(self._run_or_failure,
                                          Call.start(self.config, q, t, m, deadline, bypass_cache))
                                    for q, t, m in calls])

    def __enter__(self) -> SidecarClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
