"""One call's retry rule as tenacity runs it (`retry_policy`): which failures, how many attempts, the budget."""
from __future__ import annotations

import asyncio
import time

import pytest
from tenacity import AsyncRetrying, Retrying

from rescore_sidecar.connectors._sidecar.calls import Call, deadline_for, retry_policy
from rescore_sidecar.connectors._sidecar.errors import RequestRejected, SidecarOverloaded, SidecarUnavailable
from rescore_sidecar.connectors.config import SidecarClientConfig


def call(**config) -> Call:
    cfg = SidecarClientConfig(targets=("a:1",), **config)
    return Call.start(cfg, "q", ["x"], "", deadline_for(cfg, None))


def attempts(c: Call, *failures: Exception) -> tuple[list[int], object]:
    """Runs the policy over a function that raises `failures` in turn, then answers 'ok'."""
    seen: list[int] = []

    def attempt() -> str:
        seen.append(len(seen) + 1)
        if len(seen) <= len(failures):
            raise failures[len(seen) - 1]
        return "ok"

    try:
        return seen, Retrying(**retry_policy(c))(attempt)
    except Exception as exc:  # noqa: BLE001 - what the caller would get
        return seen, exc


def test_unavailable_is_retried_once():
    seen, out = attempts(call(), SidecarUnavailable("unavailable"))
    assert (seen, out) == ([1, 2], "ok")
    down = SidecarUnavailable("unavailable")
    seen, out = attempts(call(), down, down, down)
    assert seen == [1, 2] and out is down  # the last failure itself, not a tenacity RetryError


@pytest.mark.parametrize("failure", [SidecarOverloaded("overloaded"), RequestRejected("too_large"),
                                     SidecarUnavailable("timeout"), SidecarUnavailable("breaker_open"),
                                     ValueError("a bug")])
def test_other_failures_are_not_retried(failure):
    seen, out = attempts(call(), failure)
    assert seen == [1] and out is failure


def test_no_retry_when_off_or_the_budget_is_too_small():
    assert attempts(call(retry=False), SidecarUnavailable("unavailable"))[0] == [1]
    assert attempts(call(budget_ms=50, min_retry_budget_ms=10_000), SidecarUnavailable("unavailable"))[0] == [1]
    spent = call(budget_ms=100, min_retry_budget_ms=10)
    spent.deadline = time.monotonic() - 1
    assert attempts(spent, SidecarUnavailable("unavailable"))[0] == [1]


def test_async_runs_the_same_policy():
    seen: list[int] = []

    async def attempt() -> str:
        seen.append(1)
        if len(seen) == 1:
            raise SidecarUnavailable("unavailable")
        return "ok"

    assert asyncio.run(AsyncRetrying(**retry_policy(call()))(attempt)) == "ok" and len(seen) == 2
