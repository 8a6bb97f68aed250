"""Brownout: controllers per policy and target, the smallest window among targets, pinned windows,
what is observed (and what is not), the window gauge. Fake clock; no sidecar."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors import metrics
from rescore_sidecar.connectors._core.brownout import Brownout
from rescore_sidecar.connectors.config import Arm, ConnectorConfig, RerankOptions, SidecarClientConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(targets=("a:1",), **options):
    clock = Clock()
    config = ConnectorConfig(default=RerankOptions(window=50, **options),
                             sidecar=SidecarClientConfig(targets=targets, budget_ms=100.0))
    return Brownout(config, clock=clock), config.default, clock


def press(brownout, clock, target, times):
    """`times` timeouts on `target`, each after the controller's 1 s hold."""
    for _ in range(times):
        brownout.observe(target, latency_ms=100.0, failure="timeout")
        clock.now += 1.0


def test_timeouts_step_down_to_off_and_the_reason_says_why():
    brownout, options, clock = make(targets=("bt1:1",))
    assert brownout.choose(options).window == 50
    sizes = []
    for _ in range(4):
        press(brownout, clock, "bt1:1", 1)
        sizes.append(brownout.choose(options).window)
    assert sizes == [30, 20, 10, 0]
    assert brownout.choose(options).reason == "timeouts"
    assert metrics.WINDOW.labels("bt1:1")._value.get() == 0


def test_latency_and_queue_pressure_name_their_reason():
    brownout, options, _ = make(targets=("bt2:1",))
    for _ in range(8):  # smoothed: one slow call is not enough
        brownout.observe("bt2:1", latency_ms=95.0)  # 0.95 of the budget
    assert brownout.choose(options).window == 30 and brownout.choose(options).reason == "latency"
    brownout, options, _ = make(targets=("bt3:1",))
    for _ in range(5):
        brownout.observe("bt3:1", latency_ms=10.0, queue_ms=60.0)
    assert brownout.choose(options).reason == "queue"


def test_failures_that_say_nothing_about_load_are_not_observed():
    brownout, options, clock = make(targets=("bt4:1",))
    for reason in ("too_large", "error", "breaker_open", "unauthenticated", "unavailable"):
        brownout.observe("bt4:1", latency_ms=100.0, failure=reason)
        clock.now += 1.0
    assert brownout.choose(options).window == 50


def test_the_smallest_window_among_targets_and_state_per_target():
    brownout, options, clock = make(targets=("bt5:1", "bt6:1"))
    press(brownout, clock, "bt5:1", 2)
    assert brownout.choose(options).window == 20
    assert metrics.WINDOW.labels("bt5:1")._value.get() == 20
    brownout.observe("bt6:1", latency_ms=1.0)
    assert metrics.WINDOW.labels("bt6:1")._value.get() == 50
    # A failure with no target (the budget ran out before a send) counts for every target.
    brownout.observe(None, latency_ms=100.0, failure="timeout")
    assert metrics.WINDOW.labels("bt6:1")._value.get() == 30


def test_a_pinned_window_is_honoured_whatever_the_load():
    brownout, options, clock = make(targets=("bt7:1",))
    press(brownout, clock, "bt7:1", 4)
    pinned = options.replace({"window": 40, "adaptive": False})
    choice = brownout.choose(pinned)
    assert (choice.window, choice.reason) == (40, "pinned")


def test_floor_and_steps_per_options_share_the_observations():
    brownout, options, clock = make(targets=("bt8:1",))
    floor = options.replace({"window_steps": [25, 15], "window_floor": 15})
    brownout.choose(floor)  # its controller exists from here on
    press(brownout, clock, "bt8:1", 5)
    assert brownout.choose(options).window == 0
    assert brownout.choose(floor).window == 15
    # A requested window below a step is never enlarged.
    assert brownout.choose(options.replace({"window": 5, "window_floor": 10})).window == 5


def test_arms_policies_are_built_at_start():
    config = ConnectorConfig(arms=(Arm("small", 1, RerankOptions(window_steps=(20,), window_floor=20)),),
                             sidecar=SidecarClientConfig(targets=("bt9:1",)))
    brownout = Brownout(config, clock=Clock())
    assert len(brownout._controllers) == 2


@pytest.mark.parametrize("options, message", [
    ({"window_floor": -1}, "floor"), ({"window_steps": (10, 20)}, "strictly decreasing"),
    ({"window_steps": (30, 0)}, "positive"), ({"selective_threshold": 1.5}, "selective_threshold"),
    ({"adaptive": "yes"}, "adaptive"),
])
def test_bad_configuration_is_a_clear_error_at_start(options, message):
    with pytest.raises(ValueError, match=message):
        ConnectorConfig(default=RerankOptions(**options))


def test_steps_at_or_above_the_requested_window_do_not_delay_the_first_real_step():
    brownout, options, clock = make(targets=("bt10:1",))
    ten, twenty_five = options.replace({"window": 10}), options.replace({"window": 25})
    brownout.choose(ten), brownout.choose(twenty_five)  # their controllers exist from here on
    press(brownout, clock, "bt10:1", 1)
    assert brownout.choose(twenty_five).window == 20  # 30 would not have shrunk it
    assert brownout.choose(ten).window == 10  # one timeout never turns reranking off ...
    press(brownout, clock, "bt10:1", 1)
    assert brownout.choose(ten).window == 0  # ... sustained ones do: 10 -> off, no idle steps at 30/20
    assert brownout.choose(twenty_five).window == 10
