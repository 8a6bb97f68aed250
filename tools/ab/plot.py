"""`ab report --plot FILE.png`: how each interleaved experiment's Δ_AB settled as clicks came in."""
from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from rescore_sidecar.tools.ab.report import Z95


def preference_curve(scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per clicked impression in time order (+1/2 first arm won, −1/2 second, 0 tie): the running
    Δ_AB and its normal 95% band, (n, Δ, half width)."""
    s = np.asarray(scores, dtype=float)
    n = np.arange(1, len(s) + 1)
    mean = np.cumsum(s) / n
    var = np.maximum(np.cumsum(s * s) / n - mean ** 2, 0.0) * n / np.maximum(n - 1, 1)
    return n, mean, Z95 * np.sqrt(var / n)


def write_plot(curves: dict[str, tuple[tuple[str, str], Sequence[float]]], path: str | pathlib.Path) -> pathlib.Path:
    """`curves`: experiment -> ((arm A, arm B), scores in time order). One panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 2.6 * len(curves)), squeeze=False)
    for ax, (experiment, ((arm_a, arm_b), scores)) in zip(axes[:, 0], curves.items()):
        n, mean, half = preference_curve(scores)
        ax.plot(n, mean, color="C0", label="Δ_AB")
        ax.fill_between(n, mean - half, mean + half, color="C0", alpha=0.2, label="95% (normal)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{experiment}: > 0 favours {arm_a}, < 0 favours {arm_b}", fontsize=9)
        ax.set_xlabel("impressions with clicks")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
