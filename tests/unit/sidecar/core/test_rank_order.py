"""The order sent is the order of the scores as sent (float32), equal scores by lower index."""
import numpy as np

from rescore_sidecar.sidecar.core.service import rank_order


def test_scores_equal_in_float32_rank_by_lower_index():
    low = 0.7
    high = float(np.nextafter(low, 1.0))  # above `low` in float64, the same float32
    assert high > low and np.float32(high) == np.float32(low)
    assert rank_order([low, high]) == [0, 1]
    assert rank_order([0.1, low, high, 0.9]) == [3, 1, 2, 0]


def test_scores_distinct_in_float32_rank_by_score():
    assert rank_order([0.2, 0.5, 0.3]) == [1, 2, 0]
