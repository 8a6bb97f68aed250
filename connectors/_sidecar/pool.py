"""The endpoints of one sidecar target: every address it resolves to and health per address
(the clients open one gRPC channel per address).

Why not gRPC's own `round_robin` (a service config on one channel): it spreads calls over the
addresses and re-resolves DNS, but from Python a call does not say which address served it, so
one sick pod cannot be ejected for a growing time, a retry cannot be sent to another pod than the
one that failed, calls cannot be counted per pod, and "one pod is sick" cannot be told from "the
service is sick" (when the breaker should turn reranking off). One channel per address plus
this pool can. The pool does bookkeeping only (plus a background thread for DNS), so the sync and
async clients share it.

Targets are parsed and names resolved in `dns` (gRPC target syntax). Names are resolved again
every `resolve_seconds` and soon after an ejection; a failed or empty resolution keeps the last
known addresses (before the first answer: the target itself, one endpoint, as a plain gRPC channel
would use it).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Callable, Iterable, Sequence

from rescore_sidecar.connectors._sidecar.dns import parse_target, resolver_for
from rescore_sidecar.connectors.config import OutlierConfig

log = logging.getLogger("connectors")

HEALTHY, FAILING, EJECTED = "healthy", "failing", "ejected"
# Soonest a name is resolved again after an ejection asked for it (rate limit).
_MIN_RESOLVE_SECONDS = 1.0


class NoEndpoint(Exception):
    """The target resolved to no address (yet)."""


@dataclasses.dataclass
class _Endpoint:
    address: str
    window_size: int
    calls: int = 0
    failures: int = 0
    ejections: int = 0
    consecutive: int = 0
    failing: bool = False
    ejected_until: float = 0.0
    multiplier: int = 0
    last_return: float = float("-inf")
    window: collections.deque = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.window = collections.deque(maxlen=self.window_size)


@dataclasses.dataclass(frozen=True)
class EndpointStatus:
    address: str
    state: str  # healthy | failing (over a threshold, kept by the ejection cap) | ejected
    calls: int
    failures: int
    ejections: int
    ejected_for_s: float


# Events for metrics: ("added" | "removed" | "ejected" | "returned", address).
Listener = Callable[[str, str], None]


class EndpointPool:
    """Round-robin over the healthy endpoints of one target, with outlier ejection."""

    def __init__(self, target: str, config: OutlierConfig = OutlierConfig(), *,
                 clock: Callable[[], float] = time.monotonic, resolve: Callable[[], list[str]] | None = None,
                 listener: Listener | None = None):
        self.target = target
        self.spec = parse_target(target)
        self.config = config
        self._clock = clock
        self._resolve = resolve or resolver_for(self.spec)
        self._listener = listener or (lambda event, addr: None)
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._next = 0
        self._resolved_at = float("-inf")
        self._resolving = False
        # Bumped when the set of addresses changes (channel caches close what left).
        self.generation = 0
        self.refresh()

    # ------------------------------------------------------------------ resolution

    @property
    def authority(self) -> str | None:
        """The name TLS certificates carry, for a target that is a DNS name."""
        return self.spec.host or None

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def refresh(self) -> None:
        """Resolves now (blocking); a failure or an empty answer keeps what is known."""
        try:
            found = list(dict.fromkeys(self._resolve()))
        except Exception as exc:  # noqa: BLE001 - DNS trouble must not break searches
            log.warning("rescore: resolving sidecar target %s failed: %s", self.target, exc)
            found = []
        with self._lock:
            self._resolved_at = self._clock()
            self._resolving = False
            if not found and not self._endpoints:
                # Nothing known yet: the target itself, for gRPC's own resolver to try at call time
                # (its error becomes the call's); replaced by the addresses once a resolution works.
                found = [self.target]
            if not found:
                return
            added = [a for a in found if a not in self._endpoints]
            removed = [a for a in self._endpoints if a not in found]
            for a in removed:
                del self._endpoints[a]
            for a in added:
                self._endpoints[a] = _Endpoint(a, self.config.window_size)
            if added or removed:
                self.generation += 1
        for a in added:
            self._listener("added", a)
        for a in removed:
            self._listener("removed", a)

    def _maybe_refresh(self, now: float) -> None:
        """Starts a background resolution when one is due (never blocks a search on DNS)."""
        if self.spec.static or self._resolving or now - self._resolved_at < self.config.resolve_seconds:
            return
        self._resolving = True
        threading.Thread(target=self.refresh, name=f"resolve {self.target}", daemon=True).start()

    def _refresh_soon(self, now: float) -> None:
        # An ejection may mean the pod is gone: look again within about a second.
        self._resolved_at = min(self._resolved_at, now - self.config.resolve_seconds + _MIN_RESOLVE_SECONDS)

    # ------------------------------------------------------------------ picking

    def _return_expired(self, now: float) -> list[str]:
        returned = []
        for ep in self._endpoints.values():
            if ep.ejected_until and ep.ejected_until <= now:
                # Probation: back in rotation; one more failure ejects it again, for longer.
                ep.ejected_until, ep.last_return = 0.0, now
                ep.consecutive, ep.failing = self.config.consecutive_failures - 1, False
                returned.append(ep.address)
        return returned

    def _state(self, ep: _Endpoint) -> str:
        return EJECTED if ep.ejected_until else FAILING if ep.failing else HEALTHY

    def pick(self, exclude: Iterable[str] = ()) -> str:
        """The next endpoint: healthy ones round-robin; failing ones only when no healthy one is
        left; ejected ones only when nothing else is (the breaker decides whether to call at all).
        `exclude` (the endpoint that just failed) is taken only when it is the only one."""
        excluded = set(exclude)
        with self._lock:
            now = self._clock()
            self._maybe_refresh(now)
            returned = self._return_expired(now)
            order = list(self._endpoints.values())
            if not order:
                raise NoEndpoint(f"{self.target}: no address resolved")
            choice = None
            for wanted in ((HEALTHY,), (FAILING,), (EJECTED,), (HEALTHY, FAILING, EJECTED)):
                for i in range(len(order)):
                    ep = order[(self._next + i) % len(order)]
                    if self._state(ep) in wanted and (ep.address not in excluded or len(wanted) == 3):
                        choice = ep
                        self._next = (self._next + i + 1) % len(order)
                        break
                if choice is not None:
                    break
            assert choice is not None
        for a in returned:
            self._listener("returned", a)
        return choice.address

    def record(self, address: str, ok: bool) -> None:
        """Outcome of a call to `address`: ok, or a failure that says the endpoint is sick
        (timeout, refused, overloaded; not a bad request)."""
        ejected = False
        with self._lock:
            ep = self._endpoints.get(address)
            if ep is None:  # removed from DNS meanwhile
                return
            now = self._clock()
            ep.calls += 1
            ep.window.append(not ok)
            if ok:
                ep.consecutive, ep.failing = 0, False
                return
            ep.failures += 1
            ep.consecutive += 1
            c = self.config
            rate_over = len(ep.window) >= c.minimum_calls and sum(ep.window) / len(ep.window) >= c.failure_rate
            if ep.ejected_until or not (ep.consecutive >= c.consecutive_failures or rate_over):
                return
            ep.failing = True
            cap = max(1, int(len(self._endpoints) * c.max_ejected_percent / 100))
            if sum(1 for e in self._endpoints.values() if e.ejected_until) >= cap:
                return  # stays in rotation as `failing`: ejecting more would overload the rest
            if now - ep.last_return > c.max_ejection_seconds:
                ep.multiplier = 0  # healthy for long enough: start again from the base time
            ep.multiplier += 1
            ep.ejected_until = now + min(c.base_ejection_seconds * ep.multiplier, c.max_ejection_seconds)
            ep.ejections += 1
            ep.window.clear()
            ejected = True
            self._refresh_soon(now)
        if ejected:
            self._listener("ejected", address)

    def others_healthy(self, address: str) -> bool:
        """Whether an endpoint other than `address` is healthy (the breaker counts a failure only
        when none is: one sick pod is the pool's business, not a reason to stop reranking)."""
        with self._lock:
            now = self._clock()
            return any(a != address and (not ep.ejected_until or ep.ejected_until <= now) and not ep.failing
                       for a, ep in self._endpoints.items())

    def status(self) -> list[EndpointStatus]:
        with self._lock:
            now = self._clock()
            return [EndpointStatus(ep.address, self._state(ep), ep.calls, ep.failures, ep.ejections,
                                   round(max(ep.ejected_until - now, 0.0), 3) if ep.ejected_until else 0.0)
                    for ep in self._endpoints.values()]


# ---------------------------------------------------------------------- channels

def channel_options_for(pool: EndpointPool, options: Sequence[tuple[str, str]], tls: bool) -> list[tuple[str, str]]:
    """Options of a per-address channel: with TLS, the certificate is checked against the
    target's name, not the IP address it resolved to (unless a server name is configured)."""
    opts = list(options)
    if tls and pool.authority and not any(k == "grpc.ssl_target_name_override" for k, _ in opts):
        opts.append(("grpc.ssl_target_name_override", pool.authority))
    return opts
