"""Readiness waits of the tools (local engine nodes, sidecar and proxy subprocesses): one tenacity
policy instead of a polling loop each.

    wait_until(node_is_healthy, timeout=180, what="opensearch health", check=raise_if_exited)

polls `ready()` until it returns true, with a jittered exponential backoff (`first` seconds, then
doubling up to `longest`, each plus up to `first` of jitter: many waits started together do not poll in lockstep) and stops by the
deadline: no sleep runs past it, and the last poll is at the deadline. `check()` runs before every poll and raises to stop at once
(a process that already exited will never become ready). An exception from `ready()` is not
swallowed: a probe turns its "not yet" errors (connection refused) into False itself.
"""
from __future__ import annotations

import time
from typing import Callable

from tenacity import RetryCallState, RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential, wait_random


class WaitTimeout(TimeoutError):
    """`ready()` was still false at the deadline."""


def wait_until(ready: Callable[[], object], *, timeout: float, what: str = "the condition",
               first: float = 0.1, longest: float = 1.0, check: Callable[[], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Returns once `ready()` is true; raises WaitTimeout when `timeout` seconds pass first."""
    def poll() -> bool:
        if check is not None:
            check()
        return bool(ready())

    # first, 2*first, 4*first ... up to `longest`, each plus up to `first` of jitter
    backoff = wait_exponential(multiplier=first, max=longest) + wait_random(0, first)

    def wait(state: RetryCallState) -> float:
        # The last sleep ends at the deadline, so the last poll happens there: never later, never
        # giving up a whole interval early.
        return max(0.0, min(backoff(state), timeout - state.seconds_since_start))

    retrying = Retrying(stop=stop_after_delay(timeout), wait=wait, retry=retry_if_result(lambda ok: not ok),
                        sleep=sleep)
    try:
        retrying(poll)
    except RetryError:
        raise WaitTimeout(f"{what}: not ready after {timeout:g} s") from None
