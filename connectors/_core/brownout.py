"""The brownout window of one connector (or proxy): which window a search sends, fed by what its
sidecar calls took. Sans-I/O; the search steps (`_core.steps`) ask and report, the shells only own it.

One `WindowController` per window policy in use (the default options', each arm's, a request's own
steps/floor), each keeping state per sidecar target; every call's outcome is reported to all of them,
since the sidecar's load does not depend on which options asked. A search is planned before its call
is routed, so it uses the smallest window among the configured targets (with one target, the usual
deployment where one address resolves to every replica, that is exactly that target's window).
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._core.window import WindowChoice, WindowController, WindowPolicy
from rescore_sidecar.connectors.config import ConnectorConfig, RerankOptions

REASON_PINNED = "pinned"  # adaptive=False: the requested window, whatever the load
# Failures that say the sidecar is pressed (a timeout, a full queue): the strongest shrink signal.
PRESSED = ("timeout", "overloaded")
MAX_POLICIES = 32  # per-request policies beyond this share the default's controller


class Brownout:
    """Thread-safe; one per `Rescorer` / `AsyncRescorer` (the proxy uses its rescorer's)."""

    def __init__(self, config: ConnectorConfig, clock: Callable[[], float] | None = None) -> None:
        self.targets = tuple(config.sidecar.targets)
        self.budget_ms = config.sidecar.budget_ms
        self._kwargs = {"clock": clock} if clock is not None else {}
        self._lock = threading.Lock()
        self._controllers: dict[WindowPolicy, WindowController] = {}
        self._default = self._controller(self.policy_for(config.default))
        self._default_window = config.default.window
        self._adaptive = config.default.adaptive
        for arm in config.arms:  # built now, so each starts observing from the first call
            if arm.options is not None:
                self._controller(self.policy_for(arm.options))

    def _controller(self, policy: WindowPolicy) -> WindowController:
        with self._lock:
            found = self._controllers.get(policy)
            if found is None:
                if len(self._controllers) >= MAX_POLICIES:
                    return self._default
                found = self._controllers[policy] = WindowController(policy, **self._kwargs)
            return found

    @staticmethod
    def policy_for(options: RerankOptions) -> WindowPolicy:
        """The options' policy without the steps at or above the requested window: they would not
        shrink it, only delay the first real step (a window of 10 with steps 30/20/10 goes 10 -> off)."""
        policy = options.window_policy()
        return WindowPolicy(steps=tuple(s for s in policy.steps if s < options.window), floor=policy.floor)

    def can_bend(self, target: str) -> bool:
        """Whether the default options' window for `target` can still shrink: while it can, the
        sidecar client leaves timeouts, overload refusals and slow calls to the window instead of
        counting them for the breaker, so the breaker stays the last resort (without this it opens
        within a fraction of a second of an overload, before the window takes its first step)."""
        return self._adaptive and not self._default.at_floor(target)

    def choose(self, options: RerankOptions) -> WindowChoice:
        """The window a search with `options` sends now (0 = none: engine order, marked)."""
        if not options.adaptive:
            return WindowChoice(options.window, REASON_PINNED)
        controller = self._controller(self.policy_for(options))
        choices = [controller.window(t, options.window) for t in self.targets]
        return min(choices, key=lambda c: c.window)

    def observe(self, target: str | None, *, latency_ms: float, queue_ms: float = 0.0,
                failure: str | None = None) -> None:
        """One sidecar call's outcome; `target` None (not known, e.g. the budget ran out before a
        send) counts for every target. Failures other than timeouts and overload say nothing
        about load and are not observed."""
        if failure is not None and failure not in PRESSED:
            return
        targets: Iterable[str] = (target,) if target in self.targets else self.targets
        with self._lock:
            controllers = list(self._controllers.values())
        for controller in controllers:
            for t in targets:
                controller.observe(t, latency_ms=latency_ms, budget_ms=self.budget_ms, queue_ms=queue_ms,
                                   timed_out=failure is not None)
        in_use = self._default.snapshot()  # -1 = full
        for t in targets:
            size = in_use.get(t, -1)
            metrics.WINDOW.labels(t).set(self._default_window if size < 0 else min(size, self._default_window))
