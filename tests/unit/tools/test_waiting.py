"""The one readiness-wait helper: returns when ready, stops by its deadline with jittered backoff,
stops at once when its check raises, and lets a probe's own error through."""
from __future__ import annotations

import time

import pytest

from rescore_sidecar.tools.waiting import WaitTimeout, wait_until


def test_returns_as_soon_as_ready_and_backs_off_between_polls():
    answers, sleeps = iter([False, False, False, True]), []
    wait_until(lambda: next(answers), timeout=10, first=0.1, longest=0.3, sleep=sleeps.append)
    assert len(sleeps) == 3
    # 0.1, 0.2, then the cap 0.3, each plus up to 0.1 of jitter
    for wait, base in zip(sleeps, (0.1, 0.2, 0.3)):
        assert base - 1e-9 <= wait <= base + 0.1 + 1e-9


def test_backoff_is_jittered():
    def waits() -> list[float]:
        answers, sleeps = iter([False] * 3 + [True]), []
        wait_until(lambda: next(answers), timeout=10, first=0.05, longest=10, sleep=sleeps.append)
        return sleeps

    assert waits() != waits()  # two waits started together do not poll in lockstep


def test_stops_by_the_deadline_and_names_what_it_waited_for():
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="proxy health: not ready after 0.3 s"):
        wait_until(lambda: False, timeout=0.3, what="proxy health", first=0.05, longest=0.1)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.5  # polled up to the deadline, no sleep past it


def test_a_failing_check_stops_at_once_and_a_probe_error_is_not_swallowed():
    polls = []

    def check():
        if len(polls) == 2:
            raise RuntimeError("process exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(lambda: polls.append(1), timeout=30, check=check, sleep=lambda s: None)
    assert len(polls) == 2

    with pytest.raises(ValueError):
        wait_until(lambda: int("x"), timeout=30, sleep=lambda s: None)
