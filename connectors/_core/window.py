"""A brownout window: send fewer hits to the sidecar as it slows down, more as it recovers.

Reranking the top 20 hits keeps most of the quality lift of reranking 50, at well under half the
compute; a sidecar that can no longer answer 50 hits within the deadline can often still answer 20.
So instead of all-or-nothing (answer in time, or fall back and let the breaker open), each target
gets a controller that steps the window down (e.g. 50 -> 30 -> 20 -> 10 -> off) while the sidecar's
latency, queue wait or timeouts press against the budget, and back up when they ease. The breaker
stays the last resort.

Sans-I/O: the sync and async shells and the proxy report what each sidecar call took (`observe`)
and ask which window to use (`window`); time comes from an injectable clock, so the behaviour is
unit-tested without sleeping. One lock per controller: calls from threads and from an event loop
are both safe (the critical sections are a few arithmetic operations).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

REASON_LATENCY = "latency"
REASON_QUEUE = "queue"
REASON_TIMEOUTS = "timeouts"


@dataclasses.dataclass(frozen=True)
class WindowPolicy:
    """How the window bends. `steps` are the windows below the full one, largest first; a
    requested window smaller than a step is never enlarged. `floor` is the smallest window the
    controller may choose; 0 lets it turn reranking off for the target (searches get engine order,
    marked) until a probe after `off_probe_s` finds the sidecar fast again."""

    steps: tuple[int, ...] = (30, 20, 10)
    floor: int = 0
    # Pressure = sidecar latency / budget (or 2 x queue wait / budget, whichever is larger),
    # smoothed over calls; a timeout counts as `timeout_pressure`.
    shrink_above: float = 0.8
    widen_below: float = 0.4
    smoothing: float = 0.3  # weight of the newest call in the moving average
    timeout_pressure: float = 2.0
    # Hysteresis in time: at most one step down per `shrink_every_s`, one step up only after
    # `widen_after_s` without a change, so one slow call or one fast one does not flap the window.
    shrink_every_s: float = 1.0
    widen_after_s: float = 5.0
    off_probe_s: float = 5.0

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
            raise ValueError(f"window steps must be positive integers, got {list(steps)}")
        if any(a <= b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"window steps must be strictly decreasing, got {list(steps)}")
        if not isinstance(self.floor, int) or isinstance(self.floor, bool) or self.floor < 0:
            raise ValueError(f"window floor must be an integer >= 0, got {self.floor!r}")
        if not 0 < self.widen_below < self.shrink_above:
            raise ValueError("window thresholds need 0 < widen_below < shrink_above, got "
                             f"widen_below={self.widen_below} shrink_above={self.shrink_above}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"window smoothing must be in (0, 1], got {self.smoothing}")
        if min(self.shrink_every_s, self.widen_after_s, self.off_probe_s) < 0:
            raise ValueError("window hold times must be >= 0")

    def levels(self) -> tuple[int, ...]:
        """The windows the controller steps through below the full one (0 = off), above the floor."""
        allowed = tuple(s for s in self.steps if s >= max(self.floor, 1))
        return allowed + ((0,) if self.floor == 0 else ())


@dataclasses.dataclass
class _Target:
    level: int = 0  # 0 = the full requested window; i = policy.levels()[i - 1]
    pressure: float = 0.0
    changed_at: float = float("-inf")
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class WindowChoice:
    window: int  # 0 = do not call the sidecar (engine order, marked)
    reason: str | None  # why it is below the requested window; None when it is not


class WindowController:
    """Per-target brownout state. `window()` before a sidecar call, `observe()` after it."""

    def __init__(self, policy: WindowPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or WindowPolicy()
        self._levels = self.policy.levels()
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, _Target] = {}

    def window(self, target: str, requested: int) -> WindowChoice:
        with self._lock:
            state = self._targets.setdefault(target, _Target())
            now = self._clock()
            if self._levels and state.level == len(self._levels) and self._levels[-1] == 0 \
                    and now - state.changed_at >= self.policy.off_probe_s:
                # Off: no calls, so no observations; probe with the smallest window instead.
                self._step(state, -1, now, state.reason)
                state.pressure = self.policy.widen_below
            if state.level == 0:
                return WindowChoice(requested, None)
            size = self._levels[state.level - 1]
            if size >= requested:
                return WindowChoice(requested, None)
            return WindowChoice(size, state.reason)

    def observe(self, target: str, *, latency_ms: float, budget_ms: float, queue_ms: float = 0.0,
                timed_out: bool = False) -> None:
        """One sidecar call's outcome. `budget_ms` is the deadline the call had."""
        p = self.policy
        if timed_out:
            sample, reason = p.timeout_pressure, REASON_TIMEOUTS
        else:
            budget = max(budget_ms, 1e-3)
            latency, queue = latency_ms / budget, 2.0 * queue_ms / budget
            sample, reason = (queue, REASON_QUEUE) if queue > latency else (latency, REASON_LATENCY)
        with self._lock:
            state = self._targets.setdefault(target, _Target())
            now = self._clock()
            state.pressure += p.smoothing * (sample - state.pressure)
            held = now - state.changed_at
            # A timeout steps down at once, except into "off": that takes sustained pressure, so
            # one stray timeout does not stop reranking a small window for `off_probe_s`.
            into_off = state.level + 1 == len(self._levels) and self._levels[-1] == 0
            if ((timed_out and not into_off) or state.pressure > p.shrink_above) and held >= p.shrink_every_s \
                    and state.level < len(self._levels):
                self._step(state, +1, now, reason)
            elif state.pressure < p.widen_below and held >= p.widen_after_s and state.level > 0:
                self._step(state, -1, now, state.reason if state.level > 1 else None)

    def level(self, target: str) -> int:
        """How many steps below the full window `target` is (0 = full)."""
        with self._lock:
            return self._targets.get(target, _Target()).level

    def at_floor(self, target: str) -> bool:
        """Whether `target` is at its last level (the floor, or off): the window can bend no further."""
        with self._lock:
            return self._targets.get(target, _Target()).level >= len(self._levels)

    def snapshot(self) -> dict[str, int]:
        """Window in use per target (0 = off, -1 = full): for metrics."""
        with self._lock:
            return {t: (self._levels[s.level - 1] if s.level else -1) for t, s in self._targets.items()}

    @staticmethod
    def _step(state: _Target, direction: int, now: float, reason: str | None) -> None:
        state.level += direction
        state.changed_at = now
        state.reason = reason
