"""Which sidecar address takes the next call, and what each call's outcome does to it.

The ONE place of endpoint choice, used alike by the sync and async clients: `pick(exclude=...)`
before a call, `record(endpoint, failure, seconds)` after it. A round-robin over the
configured targets with a circuit breaker each; within a target, over the healthy endpoints of its
`EndpointPool` (every address it resolves to, outlier ejection: `connectors/_sidecar/pool.py`). The
addresses handed out are the endpoints' own (`10.0.0.7:50051`), one channel each.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Collection, NamedTuple

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._sidecar.errors import RequestRejected, SidecarOverloaded, SidecarUnavailable
from rescore_sidecar.connectors._sidecar.breaker import CircuitBreaker
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.connectors._sidecar.pool import EndpointPool, NoEndpoint, channel_options_for


class Endpoint(NamedTuple):
    """Where one call goes: the configured `target` (breaker, metrics) and the resolved `address`
    of one of its endpoints (its own channel)."""

    target: str
    address: str


class Endpoints:
    """Round-robin over sidecar targets whose breaker allows a call, and within one over its
    healthy endpoints. Thread-safe."""

    def __init__(self, config: SidecarClientConfig, clock: Callable[[], float]):
        if not config.targets:
            raise ValueError("at least one sidecar target (host:port) is needed")
        self.addresses = tuple(config.targets)  # the configured targets
        self.breakers = {t: CircuitBreaker(config.breaker, clock=clock, on_change=metrics.breaker_listener(t))
                         for t in self.addresses}
        self.pools = {t: EndpointPool(t, config.outlier, clock=clock, listener=metrics.endpoint_listener(t))
                      for t in self.addresses}
        self._owner: dict[str, str] = {}  # endpoint address -> its target (for channel options)
        self._cycle = itertools.cycle(self.addresses)
        # Set by the rescorer (`Brownout.can_bend`): True while a target's window can still shrink;
        # then pressure (timeouts, overload, slow calls) is the window's business, not the breaker's.
        self.defer_to_window: Callable[[str], bool] | None = None
        self._lock = threading.Lock()

    def pick(self, exclude: Collection[str] = ()) -> Endpoint:
        """The next endpoint: of the next target whose breaker allows a call, a healthy
        endpoint not in `exclude` (already tried for this request) when there is one; raises
        SidecarUnavailable('breaker_open') if every breaker refuses."""
        with self._lock:
            for _ in range(len(self.addresses)):
                target = next(self._cycle)
                if self.breakers[target].allow():
                    break
            else:
                raise SidecarUnavailable("breaker_open")
        try:
            address = self.pools[target].pick(exclude)
        except NoEndpoint as exc:
            self.breakers[target].record(False, 0.0)  # frees a half-open probe the breaker granted
            raise SidecarUnavailable("unavailable", str(exc)) from None
        self._owner[address] = target
        return Endpoint(target, address)

    def current_addresses(self) -> set[str]:
        """Every endpoint address the targets resolve to now: a client closes its channels to others
        (pods that left the name), so channels do not pile up as pods come and go."""
        return {address for pool in self.pools.values() for address in pool.addresses()}

    def channel_options(self, address: str, options: list[tuple[str, str]], tls: bool) -> list[tuple[str, str]]:
        """Options of the channel to one endpoint: with TLS, its certificate is checked against the
        target's name, not the IP address the name resolved to."""
        pool = self.pools.get(self._owner.get(address, address))
        return channel_options_for(pool, options, tls) if pool is not None else list(options)

    def others_healthy(self, endpoint: Endpoint) -> bool:
        """Whether another endpoint of `endpoint`'s target is healthy now."""
        pool = self.pools.get(endpoint.target)
        return pool is not None and pool.others_healthy(endpoint.address)

    def record(self, endpoint: Endpoint, failure: SidecarUnavailable | None, seconds: float, code: str = "OK") -> None:
        """One call's outcome: `failure` None for a reply, else what the call raised."""
        target, address = endpoint
        metrics.SIDECAR_CALLS.labels(target, code).inc()
        metrics.SIDECAR_SECONDS.observe(seconds)
        pool, breaker = self.pools.get(target), self.breakers.get(target)
        if pool is None or breaker is None:
            return
        if isinstance(failure, RequestRejected):
            # Says nothing about the sidecar's health, nor does its duration (a 10,000-document
            # request is slow to send and then refused): a fast success for the breaker.
            metrics.ENDPOINT_CALLS.labels(target, address, "request_error").inc()
            pool.record(address, True)
            breaker.record(True, 0.0)
            return
        ok = failure is None
        metrics.ENDPOINT_CALLS.labels(target, address, "ok" if ok else "failed").inc()
        pool.record(address, ok)
        pressed = ok or isinstance(failure, SidecarOverloaded) or failure.reason == "timeout"
        if pressed and breaker.state == "closed" and self.defer_to_window is not None \
                and self.defer_to_window(target):
            if ok:
                breaker.record(True, 0.0)  # a slow reply is the window's to answer, not a slow call
            return
        # One sick endpoint is the pool's business (ejection); the breaker, which turns reranking
        # off for the whole target, counts a failure only when no other endpoint is healthy (and
        # always while it is not closed, so its half-open probes resolve).
        if ok or breaker.state != "closed" or not pool.others_healthy(address):
            breaker.record(ok, seconds)

