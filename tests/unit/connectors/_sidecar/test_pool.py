"""The endpoint pool: round-robin, outlier ejection with growing times and a cap,
probation, retry exclusion, re-resolution. A fake clock and resolver; no network."""
from __future__ import annotations

import collections
import time

import pytest

from rescore_sidecar.connectors.config import OutlierConfig
from rescore_sidecar.connectors._sidecar.pool import EJECTED, FAILING, HEALTHY, EndpointPool

A, B, C = "10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"
STATIC = f"ipv4:{A},{B},{C}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(target: str = STATIC, clock: Clock | None = None, events: list | None = None, **outlier) -> EndpointPool:
    listener = (lambda e, a: events.append((e, a))) if events is not None else None
    return EndpointPool(target, OutlierConfig(**outlier), clock=clock or Clock(), listener=listener)


def states(p: EndpointPool) -> dict[str, str]:
    return {s.address: s.state for s in p.status()}



def test_round_robin_spreads_evenly():
    p = pool()
    counts = collections.Counter(p.pick() for _ in range(300))
    assert counts == {A: 100, B: 100, C: 100}


def test_consecutive_failures_eject_for_a_growing_time_then_probation():
    clock, events = Clock(), []
    p = pool(clock=clock, events=events, consecutive_failures=3, base_ejection_seconds=2, max_ejection_seconds=5)
    for _ in range(2):
        p.record(B, False)
    assert states(p)[B] == HEALTHY
    p.record(B, False)
    assert states(p)[B] == EJECTED and ("ejected", B) in events
    assert B not in {p.pick() for _ in range(30)}
    clock.now += 2.0  # base time: back, on probation
    assert B in {p.pick() for _ in range(3)} and ("returned", B) in events
    p.record(B, False)  # one failure on probation ejects again, for twice as long
    assert states(p)[B] == EJECTED
    clock.now += 3.9
    assert B not in {p.pick() for _ in range(30)}
    clock.now += 0.1
    assert B in {p.pick() for _ in range(3)}
    p.record(B, False)
    clock.now += 5.0  # capped at max_ejection_seconds (would be 6)
    assert B in {p.pick() for _ in range(3)}
    assert [s.ejections for s in p.status() if s.address == B] == [3]


def test_success_resets_the_consecutive_count():
    p = pool(consecutive_failures=3)
    for ok in (False, False, True, False, False):
        p.record(A, ok)
    assert states(p)[A] == HEALTHY


def test_failure_rate_ejects():
    p = pool(consecutive_failures=100, failure_rate=0.5, window_size=10, minimum_calls=10)
    for i in range(10):
        p.record(A, i % 2 == 0)  # 50 % failures, never two in a row
    assert states(p)[A] == EJECTED


def test_ejection_cap_keeps_a_failing_endpoint_in_rotation_behind_healthy_ones():
    p = pool(consecutive_failures=1, max_ejected_percent=34)  # 1 of 3 at most
    p.record(A, False)
    p.record(B, False)
    assert states(p) == {A: EJECTED, B: FAILING, C: HEALTHY}
    assert {p.pick() for _ in range(10)} == {C}  # failing ones only when no healthy one is left
    assert p.others_healthy(B) and not p.others_healthy(C)
    p.record(C, False)
    assert states(p)[C] == FAILING
    assert {p.pick() for _ in range(10)} == {B, C}  # no healthy one: the failing ones, not the ejected


def test_at_least_one_ejection_even_with_a_zero_percent_cap():
    p = pool(consecutive_failures=1, max_ejected_percent=0)
    p.record(A, False)
    assert states(p)[A] == EJECTED


def test_retry_excludes_the_endpoint_that_failed():
    p = pool()
    for _ in range(50):
        first = p.pick()
        assert p.pick(exclude=[first]) != first


def test_exclusion_yields_when_nothing_else_is_left():
    p = pool("127.0.0.1:9")
    assert p.pick(exclude=["127.0.0.1:9"]) == "127.0.0.1:9"


def test_all_ejected_still_picks_one_for_the_breaker_to_judge():
    p = pool(consecutive_failures=1, max_ejected_percent=100)
    for a in (A, B, C):
        p.record(a, False)
    assert set(states(p).values()) == {EJECTED}
    assert not p.others_healthy(A)
    assert p.pick() in (A, B, C)


def test_multiplier_starts_again_after_a_long_healthy_stretch():
    clock = Clock()
    p = pool(clock=clock, consecutive_failures=1, base_ejection_seconds=1, max_ejection_seconds=4)
    p.record(A, False)
    clock.now += 1
    p.pick()
    p.record(A, False)  # second ejection: 2 s
    clock.now += 2
    p.pick()
    clock.now += 10  # healthy for longer than max_ejection_seconds
    p.record(A, False)
    assert [s.ejected_for_s for s in p.status() if s.address == A] == [1.0]


def test_dns_changes_add_and_drop_endpoints_and_failures_keep_the_last_answer():
    answers = [[A], [A, B], [], [B]]
    clock, events = Clock(), []
    p = EndpointPool("sidecar.test:50051", OutlierConfig(resolve_seconds=5), clock=clock,
                     resolve=lambda: answers.pop(0), listener=lambda e, a: events.append((e, a)))
    assert p.addresses() == [A]
    generation = p.generation
    clock.now += 5
    p.pick()  # due: resolves in the background
    _wait(lambda: p.addresses() == [A, B])
    assert p.generation == generation + 1 and ("added", B) in events
    clock.now += 5
    p.pick()
    _wait(lambda: len(answers) == 1)  # the empty answer was taken ...
    time.sleep(0.05)
    assert p.addresses() == [A, B]  # ... and ignored
    clock.now += 5
    p.pick()
    _wait(lambda: p.addresses() == [B])
    assert ("removed", A) in events


def test_an_ejection_asks_for_a_resolution_soon():
    calls = []
    clock = Clock()
    p = EndpointPool("sidecar.test:1", OutlierConfig(consecutive_failures=1, resolve_seconds=60), clock=clock,
                     resolve=lambda: calls.append(1) or [A, B])
    p.record(A, False)
    clock.now += 1.0
    p.pick()
    _wait(lambda: len(calls) == 2)


def test_unresolvable_name_is_the_target_itself_until_a_resolution_works():
    answers: list = [OSError("NXDOMAIN"), [A, B]]

    def resolve():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = Clock()
    p = EndpointPool("nowhere.test:1", OutlierConfig(resolve_seconds=1), clock=clock, resolve=resolve)
    assert p.pick() == "nowhere.test:1"  # gRPC's resolver tries it; its error is the call's
    clock.now += 1
    p.pick()
    _wait(lambda: p.addresses() == [A, B])


def test_outlier_config_is_checked():
    with pytest.raises(ValueError):
        OutlierConfig(base_ejection_seconds=10, max_ejection_seconds=1)
    with pytest.raises(ValueError):
        OutlierConfig(failure_rate=0)


def _wait(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
