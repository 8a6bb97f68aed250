"""Which sidecar address takes the next call, and what each call's outcome does to it.

The ONE place of endpoint choice, used alike by the sync and async clients: `pick(exclude=...)`
before a call, `record(address, failure, seconds)` after it. Today a round-robin over the
configured targets with a circuit breaker each; per-endpoint balancing plugs in here.
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Collection, NamedTuple

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._sidecar.errors import RequestRejected, SidecarUnavailable
from rescore_sidecar.connectors.breaker import CircuitBreaker
from rescore_sidecar.connectors.config import SidecarClientConfig


class Endpoint(NamedTuple):
    """Where one call goes: the configured `target` (breaker, metrics) and the `address` its
    channel connects to (today the same; one of the target's resolved addresses with a pool)."""

    target: str
    address: str


class Endpoints:
    """Round-robin over sidecar addresses, skipping those whose breaker refuses calls. Thread-safe."""

    def __init__(self, config: SidecarClientConfig, clock: Callable[[], float]):
        if not config.targets:
            raise ValueError("at least one sidecar target (host:port) is needed")
        self.addresses = tuple(config.targets)
        self.breakers = {t: CircuitBreaker(config.breaker, clock=clock, on_change=metrics.breaker_listener(t))
                         for t in self.addresses}
        self._cycle = itertools.cycle(self.addresses)
        self._lock = threading.Lock()

    def pick(self, exclude: Collection[str] = ()) -> Endpoint:
        """The next endpoint whose breaker allows a call, preferring addresses not in `exclude`
        (already tried for this request); raises SidecarUnavailable('breaker_open') if none."""
        with self._lock:
            fallback = None
            for _ in range(len(self.addresses)):
                address = next(self._cycle)
                if address in exclude:
                    fallback = fallback or address
                    continue
                if self.breakers[address].allow():
                    return Endpoint(address, address)
            if fallback is not None and self.breakers[fallback].allow():
                return Endpoint(fallback, fallback)
        raise SidecarUnavailable("breaker_open")

    def record(self, endpoint: Endpoint, failure: SidecarUnavailable | None, seconds: float, code: str = "OK") -> None:
        """One call's outcome: `failure` None for a reply, else what the call raised."""
        address = endpoint.target
        metrics.SIDECAR_CALLS.labels(address, code).inc()
        metrics.SIDECAR_SECONDS.observe(seconds)
        if isinstance(failure, RequestRejected):
            # Says nothing about the sidecar's health, nor does its duration (a 10,000-document
            # request is slow to send and then refused): a fast success for the breaker.
            self.breakers[address].record(True, 0.0)
            return
        self.breakers[address].record(failure is None, seconds)


Targets = Endpoints  # the name before 0.x; kept one release
