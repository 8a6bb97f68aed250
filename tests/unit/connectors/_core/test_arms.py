"""Options resolution and A/B assignment."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core import arms
from rescore_sidecar.connectors.config import Arm, ConnectorConfig, RerankOptions

CFG = ConnectorConfig(arms=(Arm("control", 0.3), Arm("treatment", 0.7, RerankOptions(model="big", window=20))))


def test_split_is_near_ratio_over_10000_keys_and_deterministic():
    picks = [arms.resolve(CFG, None, f"user-{i}").arm for i in range(10_000)]
    share = picks.count("treatment") / len(picks)
    assert 0.68 < share < 0.72
    assert picks == [arms.resolve(CFG, None, f"user-{i}").arm for i in range(10_000)]


def test_salt_reshuffles():
    other = ConnectorConfig(arms=CFG.arms, ab_salt="v2")
    picks = [(arms.resolve(CFG, None, str(i)).arm, arms.resolve(other, None, str(i)).arm) for i in range(2000)]
    assert sum(a != b for a, b in picks) > 500


def test_control_arm_disables_and_treatment_uses_its_options():
    control_key = next(f"k{i}" for i in range(1000) if arms.resolve(CFG, None, f"k{i}").arm == "control")
    treat_key = next(f"k{i}" for i in range(1000) if arms.resolve(CFG, None, f"k{i}").arm == "treatment")
    assert arms.resolve(CFG, None, control_key).options.enabled is False
    assert arms.resolve(CFG, None, treat_key).options.model == "big"
    # A per-request override wins and the arm is still recorded.
    choice = arms.resolve(CFG, {"window": 5}, treat_key)
    assert (choice.options.window, choice.options.model, choice.arm) == (5, "big", "treatment")


def test_toggle_without_arms():
    assert arms.resolve(ConnectorConfig(), False).options.enabled is False
    assert arms.resolve(ConnectorConfig(), None) == arms.Choice(RerankOptions(), None)
    with pytest.raises(TypeError, match="rerank="):
        arms.resolve(ConnectorConfig(), "yes")
    with pytest.raises(ValueError, match="unknown rerank option"):
        arms.resolve(ConnectorConfig(), {"modle": "x"})


def test_bad_arm_config():
    with pytest.raises(ValueError, match="unique"):
        ConnectorConfig(arms=(Arm("a", 1), Arm("a", 1)))
