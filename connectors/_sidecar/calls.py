"""One Rerank request's life, without I/O: budget, attempts, outcome bookkeeping, the retry rule.

The client (`_async/client.py`, and the sync one generated from it) only sends: each attempt is

    endpoint, timeout = call.begin(endpoints)
    send to endpoint.address (timeout) -> reply: return call.succeeded(endpoints, endpoint, reply)
                                       -> grpc.RpcError e: raise call.failed(endpoints, endpoint, e)

and the attempts run under tenacity with `retry_policy(call)` (`Retrying` / `AsyncRetrying`), so
budget, retry and classification are written once.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import grpc
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, stop_any

from rescore_sidecar.connectors._sidecar.endpoints import Endpoint, Endpoints
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable, from_rpc_error
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2

MAX_ATTEMPTS = 2  # the first call and at most one retry


@dataclasses.dataclass(frozen=True)
class RerankResult:
    scores: list[float]  # by position in the request's texts
    model: str
    took_ms: float
    # What the brownout window reads: the sidecar's reported queue wait, and which target answered.
    queue_ms: float = 0.0
    target: str = ""


def build_request(query: str, texts: Sequence[str], model: str,
                  bypass_cache: bool = False) -> rescore_pb2.RerankRequest:
    """`bypass_cache`: the sidecar computes every pair and leaves its score cache untouched (measuring)."""
    return rescore_pb2.RerankRequest(query=query, model=model, bypass_cache=bypass_cache,
                                     documents=[rescore_pb2.Document(id=str(i), text=t) for i, t in enumerate(texts)])


def to_result(reply: rescore_pb2.RerankResponse, n: int, took_ms: float, target: str = "") -> RerankResult:
    scores = [0.0] * n
    seen = 0
    for r in reply.results:
        if r.index >= n:
            raise SidecarUnavailable("error", f"result index {r.index} out of range for {n} documents")
        scores[r.index] = r.score
        seen += 1
    if seen != n:
        raise SidecarUnavailable("error", f"sidecar returned {seen} results for {n} documents")
    return RerankResult(scores=scores, model=reply.model, took_ms=took_ms, queue_ms=reply.timings.queue_ms,
                        target=target)


def deadline_for(config: SidecarClientConfig, budget_ms: float | None) -> float:
    return time.monotonic() + (config.budget_ms if budget_ms is None else budget_ms) / 1000


@dataclasses.dataclass
class Call:
    """One rerank request across its attempts (not thread-safe; one per request)."""

    request: rescore_pb2.RerankRequest
    n: int
    deadline: float  # time.monotonic() seconds
    retry: bool
    min_retry_s: float
    tried: list[str] = dataclasses.field(default_factory=list)  # addresses, in order
    _sent: float = 0.0

    @classmethod
    def start(cls, config: SidecarClientConfig, query: str, texts: Sequence[str], model: str,
              deadline: float, bypass_cache: bool | None = None) -> Call:
        """`bypass_cache` None: the client's `config.bypass_cache`."""
        bypass = config.bypass_cache if bypass_cache is None else bypass_cache
        return cls(build_request(query, texts, model, bypass), len(texts), deadline, config.retry,
                   config.min_retry_budget_ms / 1000)

    def begin(self, endpoints: Endpoints) -> tuple[Endpoint, float]:
        """Starts an attempt: the endpoint to send to (not one already tried when another is
        healthy) and the timeout it may use (what is left of the budget)."""
        endpoint = endpoints.pick(exclude=self.tried)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SidecarUnavailable("timeout", "budget spent")
        self.tried.append(endpoint.address)
        self._sent = time.monotonic()
        return endpoint, left

    def failed(self, endpoints: Endpoints, endpoint: Endpoint, error: grpc.RpcError) -> SidecarUnavailable:
        """Records the failed attempt and returns the exception that stands for it."""
        failure = from_rpc_error(error, endpoint.address)
        endpoints.record(endpoint, failure, time.monotonic() - self._sent, error.code().name)
        # For the brownout window's per-target state. One sick endpoint while another of its target
        # is healthy is the pool's business (ejection), as for the breaker: not a reason to shrink.
        failure.target = None if endpoints.others_healthy(endpoint) else endpoint.target
        failure.isolated = failure.target is None
        return failure

    def succeeded(self, endpoints: Endpoints, endpoint: Endpoint, reply: rescore_pb2.RerankResponse) -> RerankResult:
        seconds = time.monotonic() - self._sent
        endpoints.record(endpoint, None, seconds)
        return to_result(reply, self.n, seconds * 1000, endpoint.target)

    def budget_too_small(self, attempt: RetryCallState) -> bool:
        """A tenacity stop: too little budget left for another attempt to succeed."""
        return self.deadline - time.monotonic() < self.min_retry_s


def _worth_retrying(failure: BaseException) -> bool:
    # Only a sidecar that was down: another replica may take it. Overload, a bad request or a
    # spent budget would fail the same way again.
    return isinstance(failure, SidecarUnavailable) and failure.reason == "unavailable"


def retry_policy(call: Call) -> dict:
    """tenacity arguments for one call's attempts, shared by the sync and async client: one retry
    (MAX_ATTEMPTS in all; none when `retry` is off), only for a sidecar that was down, only when
    enough budget is left; no wait in between (the budget is short); the last failure re-raised."""
    return {"retry": retry_if_exception(_worth_retrying), "reraise": True,
            "stop": stop_any(stop_after_attempt(MAX_ATTEMPTS if call.retry else 1), call.budget_too_small)}
