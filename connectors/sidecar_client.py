"""Synchronous gRPC client of the sidecar: deadline budget, one retry, breaker per target.

Every failure the connector falls back on comes out as `SidecarUnavailable(reason)` with
reason one of: timeout, unavailable, overloaded, too_large (over the sidecar's per-request limits),
breaker_open, unauthenticated, error.
Transport security (TLS, mutual TLS, bearer token) comes from `SidecarClientConfig`; `channel_credentials`
and `auth_metadata` are shared with the async client.
"""
from __future__ import annotations

import dataclasses
import itertools
import pathlib
import threading
import time
from typing import Callable, Sequence

import grpc
import tenacity

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors.breaker import CircuitBreaker
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.connectors.endpoints import Channels, EndpointPool, NoEndpoint, channel_options_for
from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc

# gRPC codes that say nothing about the sidecar's health (our request was bad): no breaker failure.
_CALLER_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                  grpc.StatusCode.OUT_OF_RANGE}
_REASONS = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.UNAVAILABLE: "unavailable",
            grpc.StatusCode.RESOURCE_EXHAUSTED: "overloaded", grpc.StatusCode.CANCELLED: "timeout",
            grpc.StatusCode.UNAUTHENTICATED: "unauthenticated", grpc.StatusCode.PERMISSION_DENIED: "unauthenticated"}


def _read(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"sidecar {what} {path}: {exc.strerror or exc}") from None


def channel_credentials(config: SidecarClientConfig) -> grpc.ChannelCredentials | None:
    """TLS / mutual-TLS credentials from the PEM files, or None for a plaintext channel.
    Unreadable files are a ValueError now (at start-up) rather than a fallback on every search."""
    if not config.uses_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(config.ca_file, "ca_file") if config.ca_file else None,
        private_key=_read(config.client_key_file, "client_key_file") if config.client_key_file else None,
        certificate_chain=_read(config.client_cert_file, "client_cert_file") if config.client_cert_file else None)


def channel_options(config: SidecarClientConfig) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", config.tls_server_name)] if config.tls_server_name else []


def auth_metadata(config: SidecarClientConfig) -> tuple[tuple[str, str], ...] | None:
    """`authorization: Bearer <token>` call metadata, or None without a token."""
    token = config.auth_token
    if config.auth_token_file:
        token = _read(config.auth_token_file, "auth_token_file").decode().strip()
    if not token:
        return None
    if not config.uses_tls:
        import warnings

        warnings.warn("the sidecar bearer token is sent over a plaintext channel; set tls/ca_file", stacklevel=3)
    return (("authorization", f"Bearer {token}"),)


class SidecarUnavailable(Exception):
    """The sidecar could not score this request within its budget."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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


# RESOURCE_EXHAUSTED details that blame the request, not the sidecar's load: the sidecar's own
# per-request limits ("... the limit is N") and gRPC's message-size check ("larger than max").
_TOO_LARGE = ("the limit is", "larger than max")


def classify(error: grpc.RpcError) -> str:
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and any(s in (error.details() or "") for s in _TOO_LARGE):
        return "too_large"
    return _REASONS.get(error.code(), "error")


def blames_request(error: grpc.RpcError) -> bool:
    """The call failed because of what was sent (a bad or oversized request): no breaker failure."""
    return error.code() in _CALLER_ERRORS or classify(error) == "too_large"


class Targets:
    """Round-robin over sidecar targets, skipping those whose breaker refuses calls; within a
    target, over its healthy endpoints (`EndpointPool`: every address the target resolves to)."""

    def __init__(self, config: SidecarClientConfig, clock: Callable[[], float]):
        if not config.targets:
            raise ValueError("at least one sidecar target (host:port) is needed")
        self.breakers = {t: CircuitBreaker(config.breaker, clock=clock, on_change=metrics.breaker_listener(t))
                         for t in config.targets}
        # --- scale-out wiring (endpoints.py): one pool per target.
        self.pools = {t: EndpointPool(t, config.outlier, clock=clock, listener=metrics.endpoint_listener(t))
                      for t in config.targets}
        self._cycle = itertools.cycle(config.targets)
        self._lock = threading.Lock()

    def pick(self, exclude: Sequence[str] = ()) -> tuple[str, str]:
        """(target, endpoint address) for the next call; `exclude` = endpoints this search already
        tried (the retry goes elsewhere when another endpoint exists)."""
        with self._lock:
            for _ in range(len(self.breakers)):
                target = next(self._cycle)
                if self.breakers[target].allow():
                    break
            else:
                raise SidecarUnavailable("breaker_open")
        try:
            return target, self.pools[target].pick(exclude)
        except NoEndpoint as exc:
            self.breakers[target].record(False, 0.0)  # frees a half-open probe the breaker granted
            raise SidecarUnavailable("unavailable", str(exc)) from None

    def record(self, target: str, address: str, error: grpc.RpcError | None, seconds: float) -> None:
        code = "OK" if error is None else error.code().name
        metrics.SIDECAR_CALLS.labels(target, code).inc()
        metrics.SIDECAR_SECONDS.observe(seconds)
        pool, breaker = self.pools[target], self.breakers[target]
        if error is not None and blames_request(error):
            # Says nothing about the sidecar's health, nor does its duration (a 10,000-document
            # request is slow to send and then refused): a fast success for the breaker.
            metrics.ENDPOINT_CALLS.labels(target, address, "request_error").inc()
            pool.record(address, True)
            breaker.record(True, 0.0)
            return
        ok = error is None
        metrics.ENDPOINT_CALLS.labels(target, address, "ok" if ok else "failed").inc()
        pool.record(address, ok)
        # One sick endpoint is the pool's business (ejection); the breaker, which turns reranking
        # off for the whole target, counts a failure only when no other endpoint is healthy (and
        # always while it is not closed, so its half-open probes resolve).
        if ok or breaker.state != "closed" or not pool.others_healthy(address):
            breaker.record(ok, seconds)


class SidecarClient:
    def __init__(self, config: SidecarClientConfig = SidecarClientConfig(), *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.targets = Targets(config, clock)
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._metadata = auth_metadata(config)
        self._channels = Channels(self._open_channel, rescore_pb2_grpc.RerankerStub)

    def _open_channel(self, address: str, pool: EndpointPool) -> grpc.Channel:
        options = channel_options_for(pool, self._options, self._credentials is not None)
        return (grpc.secure_channel(address, self._credentials, options) if self._credentials
                else grpc.insecure_channel(address, options))

    def _stub(self, target: str, address: str) -> rescore_pb2_grpc.RerankerStub:
        return self._channels.stub(self.targets.pools[target], address)

    def _retrying(self, deadline: float) -> tenacity.Retrying:
        min_left = self.config.min_retry_budget_ms / 1000

        def retryable(exc: BaseException) -> bool:
            return (isinstance(exc, SidecarUnavailable) and exc.reason == "unavailable"
                    and deadline - time.monotonic() >= min_left)

        return tenacity.Retrying(stop=tenacity.stop_after_attempt(2 if self.config.retry else 1),
                                 retry=tenacity.retry_if_exception(retryable), reraise=True)

    def _attempt(self, request: rescore_pb2.RerankRequest, n: int, deadline: float,
                 tried: list[str] | None = None) -> RerankResult:
        tried = [] if tried is None else tried
        target, address = self.targets.pick(exclude=tried)
        tried.append(address)  # the retry (same list) goes to another endpoint
        left = deadline - time.monotonic()
        if left <= 0:
            raise SidecarUnavailable("timeout", "budget spent")
        start = time.monotonic()
        try:
            reply = self._stub(target, address).Rerank(request, timeout=left, metadata=self._metadata)
        except grpc.RpcError as exc:
            self.targets.record(target, address, exc, time.monotonic() - start)
            raise SidecarUnavailable(classify(exc), f"{address}: {exc.code().name} {exc.details()}") from None
        seconds = time.monotonic() - start
        self.targets.record(target, address, None, seconds)
        return to_result(reply, n, seconds * 1000)

    def rerank(self, query: str, texts: Sequence[str], *, model: str = "",
               budget_ms: float | None = None) -> RerankResult:
        deadline = time.monotonic() + (self.config.budget_ms if budget_ms is None else budget_ms) / 1000
        request = build_request(query, texts, model)
        return self._retrying(deadline)(self._attempt, request, len(texts), deadline, [])

    def rerank_many(self, calls: Sequence[tuple[str, Sequence[str], str]], *,
                    budget_ms: float | None = None) -> list[RerankResult | SidecarUnavailable]:
        """Several (query, texts, model) at once, concurrently, under one shared budget."""
        deadline = time.monotonic() + (self.config.budget_ms if budget_ms is None else budget_ms) / 1000
        pending: list[tuple[int, str, str, float, grpc.Future]] = []
        results: list[RerankResult | SidecarUnavailable | None] = [None] * len(calls)
        tried: list[list[str]] = [[] for _ in calls]
        for i, (query, texts, model) in enumerate(calls):
            try:
                target, address = self.targets.pick()
                tried[i].append(address)
                future = self._stub(target, address).Rerank.future(build_request(query, texts, model),
                                                                   timeout=max(deadline - time.monotonic(), 0.001),
                                                                   metadata=self._metadata)
                pending.append((i, target, address, time.monotonic(), future))
            except SidecarUnavailable as exc:
                results[i] = exc
        for i, target, address, start, future in pending:
            n = len(calls[i][1])
            try:
                reply = future.result()
                self.targets.record(target, address, None, time.monotonic() - start)
                results[i] = to_result(reply, n, (time.monotonic() - start) * 1000)
            except grpc.RpcError as exc:
                self.targets.record(target, address, exc, time.monotonic() - start)
                results[i] = SidecarUnavailable(classify(exc), f"{address}: {exc.code().name}")
            except SidecarUnavailable as exc:
                results[i] = exc
        # The single retry, for calls that found a sidecar down, within what is left.
        for i, result in enumerate(results):
            if (isinstance(result, SidecarUnavailable) and result.reason == "unavailable" and self.config.retry
                    and deadline - time.monotonic() >= self.config.min_retry_budget_ms / 1000):
                query, texts, model = calls[i]
                try:
                    results[i] = self._attempt(build_request(query, texts, model), len(texts), deadline, tried[i])
                except SidecarUnavailable as exc:
                    results[i] = exc
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._channels.close()
