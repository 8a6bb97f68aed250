"""One Rerank request's life, without I/O: budget, attempts, outcome bookkeeping, the retry rule.

The sync and async clients are thin shells that only send: both do

    call = Call.start(config, query, texts, model, deadline)
    while True:
        address = endpoints.pick(exclude=call.tried); timeout = call.begin(address)
        send (timeout) -> reply: return call.succeeded(endpoints, address, reply)
                       -> grpc.RpcError e: failure = call.failed(endpoints, address, e)
        if not call.retry_after(failure): raise failure

so budget, retry and classification cannot drift between them.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import grpc

from rescore_sidecar.connectors._sidecar.endpoints import Endpoints
from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable, from_rpc_error
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2

MAX_ATTEMPTS = 2  # the first call and at most one retry


@dataclasses.dataclass(frozen=True)
class RerankResult:
    scores: list[float]  # by position in the request's texts
    model: str
    took_ms: float


def build_request(query: str, texts: Sequence[str], model: str) -> rescore_pb2.RerankRequest:
    return rescore_pb2.RerankRequest(query=query, model=model,
                                     documents=[rescore_pb2.Document(id=str(i), text=t) for i, t in enumerate(texts)])


def to_result(reply: rescore_pb2.RerankResponse, n: int, took_ms: float) -> RerankResult:
    scores = [0.0] * n
    seen = 0
    for r in reply.results:
        if r.index >= n:
            raise SidecarUnavailable("error", f"result index {r.index} out of range for {n} documents")
        scores[r.index] = r.score
        seen += 1
    if seen != n:
        raise SidecarUnavailable("error", f"sidecar returned {seen} results for {n} documents")
    return RerankResult(scores=scores, model=reply.model, took_ms=took_ms)


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
    tried: list[str] = dataclasses.field(default_factory=list)
    _sent: float = 0.0

    @classmethod
    def start(cls, config: SidecarClientConfig, query: str, texts: Sequence[str], model: str,
              deadline: float) -> Call:
        return cls(build_request(query, texts, model), len(texts), deadline, config.retry,
                   config.min_retry_budget_ms / 1000)

    def begin(self, address: str) -> float:
        """Starts an attempt on `address`; the timeout it may use (what is left of the budget)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SidecarUnavailable("timeout", "budget spent")
        self.tried.append(address)
        self._sent = time.monotonic()
        return left

    def failed(self, endpoints: Endpoints, address: str, error: grpc.RpcError) -> SidecarUnavailable:
        """Records the failed attempt and returns the exception that stands for it."""
        failure = from_rpc_error(error, address)
        endpoints.record(address, failure, time.monotonic() - self._sent, error.code().name)
        return failure

    def succeeded(self, endpoints: Endpoints, address: str, reply: rescore_pb2.RerankResponse) -> RerankResult:
        seconds = time.monotonic() - self._sent
        endpoints.record(address, None, seconds)
        return to_result(reply, self.n, seconds * 1000)

    def retry_after(self, failure: SidecarUnavailable) -> bool:
        """One retry, only for a sidecar that was down (another replica may take it), only when
        enough budget is left for it to succeed."""
        return (self.retry and len(self.tried) < MAX_ATTEMPTS and failure.reason == "unavailable"
                and self.deadline - time.monotonic() >= self.min_retry_s)
