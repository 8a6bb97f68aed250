"""Selective reranking's predictor: the top hit's score gap over the window's score range."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from rescore_sidecar.connectors._core.selective import engine_confident, top_gap


def test_a_clear_winner_is_confident_and_a_close_race_is_not():
    assert top_gap([20.0, 8.0, 7.5, 7.0]) == pytest.approx(12 / 13)
    assert engine_confident([20.0, 8.0, 7.5, 7.0], 0.5)
    assert not engine_confident([10.0, 9.9, 5.0, 1.0], 0.5)


def test_fewer_than_two_hits_is_confident_and_ties_are_not():
    assert top_gap([3.0]) == 1.0 and top_gap([]) == 1.0
    assert top_gap([2.0, 2.0, 2.0]) == 0.0


def test_off_by_default_and_missing_scores_ignored():
    assert not engine_confident([20.0, 1.0], None)
    assert top_gap([None, 5.0, float("nan"), 1.0]) == 1.0


def test_threshold_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="selective threshold"):
        engine_confident([1.0, 0.5], 1.5)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=60))
def test_gap_is_a_share_of_the_range(scores):
    assert 0.0 <= top_gap(scores) <= 1.0
