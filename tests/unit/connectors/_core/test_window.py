"""The brownout window controller, driven by a fake clock (no sleeping)."""
from __future__ import annotations

import asyncio
import threading

import pytest

from rescore_sidecar.connectors._core.window import (REASON_LATENCY, REASON_QUEUE, REASON_TIMEOUTS,
                                                      WindowController, WindowPolicy)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def slow(ctl: WindowController, clock: Clock, target: str = "a", calls: int = 5, ratio: float = 1.2) -> None:
    for _ in range(calls):
        ctl.observe(target, latency_ms=ratio * 250, budget_ms=250)
        clock.advance(0.3)


def fast(ctl: WindowController, clock: Clock, target: str = "a", seconds: float = 6.0) -> None:
    for _ in range(int(seconds / 0.5)):
        ctl.observe(target, latency_ms=20, budget_ms=250)
        clock.advance(0.5)


def test_full_window_until_the_sidecar_slows_down():
    clock = Clock()
    ctl = WindowController(clock=clock)
    fast(ctl, clock)
    choice = ctl.window("a", 50)
    assert (choice.window, choice.reason) == (50, None)


def test_shrinks_one_step_at_a_time_then_turns_off_at_floor_zero():
    clock = Clock()
    ctl = WindowController(WindowPolicy(steps=(30, 20, 10), floor=0, shrink_every_s=1.0), clock=clock)
    seen = []
    for _ in range(5):
        slow(ctl, clock, calls=4)  # 1.2 s of slow calls: at most one step per second
        seen.append(ctl.window("a", 50).window)
    assert seen == [30, 20, 10, 0, 0]
    assert ctl.window("a", 50).reason == REASON_LATENCY


def test_one_slow_call_does_not_shrink():
    clock = Clock()
    ctl = WindowController(clock=clock)
    fast(ctl, clock)
    ctl.observe("a", latency_ms=400, budget_ms=250)  # smoothed: 0.3 * 1.6 < 0.8
    assert ctl.window("a", 50).window == 50


def test_holds_then_widens_after_quiet_period():
    clock = Clock()
    policy = WindowPolicy(steps=(30, 20, 10), floor=10, widen_after_s=5.0)
    ctl = WindowController(policy, clock=clock)
    slow(ctl, clock, calls=12)
    assert ctl.window("a", 50).window == 10
    fast(ctl, clock, seconds=3.0)  # quiet, but not for long enough since the last change
    assert ctl.window("a", 50).window == 10
    fast(ctl, clock, seconds=3.0)
    assert ctl.window("a", 50).window == 20
    fast(ctl, clock, seconds=12.0)
    assert ctl.window("a", 50) .window == 50
    assert ctl.window("a", 50).reason is None


def test_floor_is_never_crossed_and_no_off_state_with_a_floor():
    clock = Clock()
    ctl = WindowController(WindowPolicy(steps=(30, 20, 10), floor=20), clock=clock)
    slow(ctl, clock, calls=40)
    assert ctl.window("a", 50).window == 20


def test_no_step_below_the_window_and_a_floor_means_the_window_never_moves():
    clock = Clock()
    ctl = WindowController(WindowPolicy(steps=(), floor=10), clock=clock)
    slow(ctl, clock, calls=40)
    assert ctl.window("a", 10).window == 10 and ctl.level("a") == 0


def test_one_timeout_never_turns_reranking_off_sustained_ones_do():
    clock = Clock()
    ctl = WindowController(WindowPolicy(steps=()), clock=clock)
    ctl.observe("a", latency_ms=250, budget_ms=250, timed_out=True)
    assert ctl.window("a", 10).window == 10
    clock.advance(1.0)
    ctl.observe("a", latency_ms=250, budget_ms=250, timed_out=True)
    assert ctl.window("a", 10).window == 0


def test_timeouts_shrink_at_once_and_say_so():
    clock = Clock()
    ctl = WindowController(clock=clock)
    ctl.observe("a", latency_ms=250, budget_ms=250, timed_out=True)
    choice = ctl.window("a", 50)
    assert (choice.window, choice.reason) == (30, REASON_TIMEOUTS)


def test_queue_wait_counts_as_pressure():
    clock = Clock()
    ctl = WindowController(clock=clock)
    for _ in range(6):
        ctl.observe("a", latency_ms=150, budget_ms=250, queue_ms=120)
        clock.advance(0.3)
    assert ctl.window("a", 50).reason == REASON_QUEUE


def test_off_target_probes_with_the_smallest_window_after_a_pause():
    clock = Clock()
    ctl = WindowController(WindowPolicy(steps=(20, 10), floor=0, off_probe_s=5.0), clock=clock)
    slow(ctl, clock, calls=20)
    assert ctl.window("a", 50).window == 0
    clock.advance(5.0)
    assert ctl.window("a", 50).window == 10  # a probe
    fast(ctl, clock, seconds=6.0)
    assert ctl.window("a", 50).window == 20


def test_requested_window_is_never_enlarged():
    clock = Clock()
    ctl = WindowController(clock=clock)
    slow(ctl, clock, calls=4)
    assert ctl.window("a", 50).window == 30
    choice = ctl.window("a", 25)
    assert (choice.window, choice.reason) == (25, None)


def test_state_is_per_target():
    clock = Clock()
    ctl = WindowController(clock=clock)
    slow(ctl, clock, target="slow", calls=8)
    fast(ctl, clock, target="quick")
    assert ctl.window("slow", 50).window < 50
    assert ctl.window("quick", 50).window == 50
    assert ctl.snapshot()["quick"] == -1 and ctl.snapshot()["slow"] in (30, 20)


def test_thread_and_async_callers_keep_state_consistent():
    clock = Clock()
    ctl = WindowController(WindowPolicy(shrink_every_s=0.0), clock=clock)

    def worker():
        for _ in range(500):
            ctl.window("a", 50)
            ctl.observe("a", latency_ms=400, budget_ms=250)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()

    async def coro():
        for _ in range(500):
            ctl.window("a", 50)
            ctl.observe("a", latency_ms=400, budget_ms=250)
            await asyncio.sleep(0)

    asyncio.run(coro())
    for t in threads:
        t.join()
    assert ctl.level("a") == len(ctl.policy.levels())  # stepped down to off, never past it
    assert ctl.window("a", 50).window == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": (10, 20)}, "strictly decreasing"),
    ({"steps": (30, 30)}, "strictly decreasing"),
    ({"steps": (30, 0)}, "positive integers"),
    ({"floor": -1}, "floor"),
    ({"widen_below": 0.9, "shrink_above": 0.8}, "widen_below"),
    ({"smoothing": 0}, "smoothing"),
])
def test_bad_policy_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WindowPolicy(**kwargs)
