"""Scores by policy, directly: hits without a model score (no text) under each policy."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors._core.fuse import fused_scores
from rescore_sidecar.connectors.config import RerankOptions


def test_replace_gives_a_hit_without_text_the_lowest_model_score():
    assert fused_scores([3.0, 2.0, 1.0], [0.5, None, 0.9], RerankOptions(policy="replace")) == [0.5, 0.5, 0.9]


def test_linear_mixes_min_max_normalised_scores():
    out = fused_scores([2.0, 1.0], [0.0, 1.0], RerankOptions(policy="linear", model_weight=0.25))
    assert out == pytest.approx([0.75, 0.25])


def test_rrf_gives_no_model_term_without_a_model_score():
    out = fused_scores([9.0, 8.0], [None, 1.0], RerankOptions(policy="rrf", rrf_k=1))
    assert out == pytest.approx([1 / 2, 1 / 3 + 1 / 2])
