"""The run's measuring rules that need no engine: turn order and the stated latency method."""
from __future__ import annotations

import collections

from rescore_sidecar.tools.eval.runner import RescoreConfig, RunSettings, latency_method, turns


def test_configurations_take_turns_going_first():
    configs = [RescoreConfig(name, {}) for name in "abc"]
    orders = [turns(configs, i) for i in range(6)]
    assert all(sorted(c.label for c in order) == ["a", "b", "c"] for order in orders)
    assert collections.Counter(order[0].label for order in orders) == {"a": 2, "b": 2, "c": 2}
    assert turns([], 3) == []


def test_latency_method_says_bypass_turns_warm_up_and_cache_only_when_measured():
    plain = latency_method(RunSettings(), 3)
    assert "bypassed" in plain and "turns" in plain and "3 untimed warm-up queries" in plain
    assert "Cache-served" not in plain
    assert "Cache-served" in latency_method(RunSettings(cached_latency=True), 1)
