"""Circuit breaker per sidecar target.

pybreaker, aiobreaker, purgatory and circuitbreaker all open on a count of consecutive
failures; none keeps a sliding window with a failure-*rate* and a slow-call-rate threshold, a
minimum number of calls and a fixed number of half-open probes, so this is a small one of our
own. It only does bookkeeping (no I/O), so the sync and async clients share it.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

from rescore_sidecar.connectors.config import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, config: BreakerConfig = BreakerConfig(), *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str], None] | None = None):
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = CLOSED
        self._calls: collections.deque[tuple[bool, bool]] = collections.deque(maxlen=config.window_size)
        self._opened_at = 0.0
        self._probes_started = 0
        self._probe_results: list[tuple[bool, bool]] = []

    @property
    def state(self) -> str:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def allow(self) -> bool:
        """Whether a call may go out now. In half-open, each True reserves one probe."""
        with self._lock:
            self._maybe_half_open()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and self._probes_started < self.config.half_open_calls:
                self._probes_started += 1
                return True
            return False

    def record(self, ok: bool, seconds: float) -> None:
        """Outcome of a call that `allow()` let through."""
        slow = seconds >= self.config.slow_call_seconds
        with self._lock:
            if self._state == HALF_OPEN:
                self._probe_results.append((not ok, slow))
                if not ok:
                    self._transition(OPEN)
                elif len(self._probe_results) >= self.config.half_open_calls:
                    slow_rate = sum(s for _, s in self._probe_results) / len(self._probe_results)
                    self._transition(OPEN if slow_rate >= self.config.slow_call_rate else CLOSED)
                return
            if self._state == OPEN:
                return  # a call that started before the breaker opened
            self._calls.append((not ok, slow))
            if len(self._calls) >= self.config.minimum_calls:
                n = len(self._calls)
                failure_rate = sum(f for f, _ in self._calls) / n
                slow_rate = sum(s for _, s in self._calls) / n
                if failure_rate >= self.config.failure_rate or slow_rate >= self.config.slow_call_rate:
                    self._transition(OPEN)

    def _maybe_half_open(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.config.open_seconds:
            self._transition(HALF_OPEN)

    def _transition(self, state: str) -> None:
        self._state = state
        if state == OPEN:
            self._opened_at = self._clock()
        self._calls.clear()
        self._probes_started = 0
        self._probe_results = []
        if self._on_change is not None:
            self._on_change(state)
