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


def test_two_logits_below_float32_resolution_arrive_equal_and_in_index_order():
    """The service's own path: model rows -> scores -> order -> protobuf, as a client reads them."""
    import types

    from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
    from rescore_sidecar.sidecar.backends import CROSS_ENCODER
    from rescore_sidecar.sidecar.core.service import scores_from_rows

    backend = types.SimpleNamespace(kind=CROSS_ENCODER)
    rows = [np.array([0.3]), np.array([0.3 + 1e-9])]  # document 1 is "better" only below float32 resolution
    scores = scores_from_rows(backend, rows, raw=False)
    assert scores[1] > scores[0]
    order = rank_order(scores)
    wire = pb.RerankResponse.FromString(pb.RerankResponse(
        results=[pb.Result(index=i, score=scores[i]) for i in order]).SerializeToString())
    assert [r.index for r in wire.results] == [0, 1]
    assert wire.results[0].score == wire.results[1].score
    # A client that re-sorts by score (stable, as llama-index's TEI postprocessor does) keeps our order.
    assert [r.index for r in sorted(wire.results, key=lambda r: -r.score)] == [0, 1]
