"""The issue's two throughput targets, computed from the same rounds the table shows.

(a) the sidecar's best configuration >= 1.2x the fastest peer (every non-sidecar row counts as a
peer, the CrossEncoder torch baseline included); (b) the sidecar at fp32 (torch, openvino) >= 1.3x
CrossEncoder torch fp32. Ratios are the median over rounds of per-round pairs/s ratios, as in
the table's "vs baseline" column: every system scored the same pairs in a round, so the pairs/s
ratio of A over B is B's wall time over A's.
"""
from __future__ import annotations

import statistics

Key = tuple[str, str, int]  # (system, dtype, clients), the table's row key

BEST_VS_FASTEST_PEER = 1.2
FP32_VS_CROSSENCODER = 1.3


def round_ratio(walls: dict[Key, list[float]], faster: Key, slower: Key) -> float:
    return statistics.median(b / a for a, b in zip(walls[faster], walls[slower], strict=True))


def _rate(walls: dict[Key, list[float]], key: Key, pairs_per_round: int) -> float:
    return pairs_per_round * len(walls[key]) / sum(walls[key])


def _name(key: Key) -> str:
    name, dtype, clients = key
    return f"{name} {dtype} x{clients} client{'s' if clients > 1 else ''}"


def _verdict(ratio: float, target: float) -> str:
    return f"target >= {target}x: {'met' if ratio >= target else 'NOT met'}"


def target_lines(walls: dict[Key, list[float]], pairs_per_round: int, baseline: Key) -> list[str]:
    """Lines for the end of the bench's output; a side with no rows says so instead of a figure."""
    sidecar = [k for k in walls if k[0].startswith("rescore-sidecar")]
    peers = [k for k in walls if k not in sidecar]
    lines = ["targets (median over rounds of per-round pairs/s ratios):"]
    if sidecar and peers:
        best = max(sidecar, key=lambda k: _rate(walls, k, pairs_per_round))
        fastest = max(peers, key=lambda k: _rate(walls, k, pairs_per_round))
        ratio = round_ratio(walls, best, fastest)
        lines.append(f"- (a) best sidecar {_name(best)} ({_rate(walls, best, pairs_per_round):.1f} pairs/s) vs "
                     f"fastest peer {_name(fastest)} ({_rate(walls, fastest, pairs_per_round):.1f} pairs/s): "
                     f"{ratio:.2f}x ({_verdict(ratio, BEST_VS_FASTEST_PEER)})")
    else:
        lines.append("- (a) best sidecar vs fastest peer: not measured (no sidecar or no peer rows)")
    fp32 = [k for k in sidecar if k[1] == "fp32"]
    if baseline[1] not in ("float32", "fp32"):
        lines.append(f"- (b) not measured: the baseline ran {baseline[1]}, the target is against fp32")
    elif not fp32:
        lines.append("- (b) not measured: no sidecar fp32 configuration in --configs")
    for key in fp32:
        ratio = round_ratio(walls, key, baseline)
        lines.append(f"- (b) {_name(key)} vs {baseline[0]} fp32: {ratio:.2f}x "
                     f"({_verdict(ratio, FP32_VS_CROSSENCODER)})")
    return lines
