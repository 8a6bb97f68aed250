"""Breaker state machine with a fake clock."""
from __future__ import annotations

from rescore_sidecar.connectors._sidecar.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from rescore_sidecar.connectors.config import BreakerConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CFG = BreakerConfig(window_size=10, minimum_calls=4, failure_rate=0.5, slow_call_rate=0.75,
                    slow_call_seconds=0.1, open_seconds=5.0, half_open_calls=2)


def test_stays_closed_below_minimum_calls_then_opens_on_failure_rate():
    clock = FakeClock()
    b = CircuitBreaker(CFG, clock=clock)
    for _ in range(3):
        assert b.allow()
        b.record(False, 0.01)
    assert b.state == CLOSED  # 3 failures < minimum_calls
    b.allow()
    b.record(False, 0.01)
    assert b.state == OPEN and not b.allow()


def test_failure_rate_under_threshold_stays_closed():
    b = CircuitBreaker(CFG, clock=FakeClock())
    for ok in [True, True, False, True, True, False, True, True, True, True]:
        b.allow()
        b.record(ok, 0.01)
    assert b.state == CLOSED


def test_slow_calls_open_it():
    b = CircuitBreaker(CFG, clock=FakeClock())
    for _ in range(4):
        b.allow()
        b.record(True, 0.2)
    assert b.state == OPEN


def test_half_open_probes_close_or_reopen():
    clock = FakeClock()
    changes = []
    b = CircuitBreaker(CFG, clock=clock, on_change=changes.append)
    for _ in range(4):
        b.allow()
        b.record(False, 0.01)
    clock.now = 4.9
    assert not b.allow()
    clock.now = 5.0
    assert b.state == HALF_OPEN
    assert b.allow() and b.allow() and not b.allow()  # exactly half_open_calls probes
    b.record(True, 0.01)
    b.record(True, 0.01)
    assert b.state == CLOSED
    for _ in range(4):
        b.allow()
        b.record(False, 0.01)
    clock.now = 20.0
    assert b.allow()
    b.record(False, 0.01)  # a failed probe reopens
    assert b.state == OPEN and not b.allow()
    assert changes == [OPEN, HALF_OPEN, CLOSED, OPEN, HALF_OPEN, OPEN]
