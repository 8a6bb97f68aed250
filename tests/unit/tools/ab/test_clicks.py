"""The cascade click model's exact outcome distributions, checked against clicking it out by hand."""
from __future__ import annotations

import random

import numpy as np
import pytest

from rescore_sidecar.connectors._core.interleave import TEAM_A, TEAM_B, credit, Outcome
from rescore_sidecar.tools.ab.clicks import (
    NO_CLICK, TIE, WIN_A, WIN_B, CascadeModel, first_click_distribution, ndcg_at, read_run,
    team_outcome_distribution)
from rescore_sidecar.tools.ab.runs import write_run

MODEL = CascadeModel()


def click_through(gains, model, rnd) -> list[int]:
    """The cascade user, literally: positions clicked in one reading of the list."""
    clicked = []
    for i, gain in enumerate(gains):
        if rnd.random() < model.p_click(gain):
            clicked.append(i)
            if rnd.random() < model.p_stop(gain):
                break
    return clicked


def test_team_outcomes_match_simulated_users():
    gains = [0, 4, 1, 0, 2, 3, 0, 1]
    teams = [TEAM_A, TEAM_B, TEAM_B, TEAM_A, TEAM_A, TEAM_B, TEAM_B, TEAM_A]
    exact = team_outcome_distribution(gains, teams, MODEL)
    rnd, counts, n = random.Random(3), np.zeros(4), 40_000
    column = {Outcome.WIN_A: WIN_A, Outcome.WIN_B: WIN_B, Outcome.TIE: TIE, Outcome.NO_CLICK: NO_CLICK}
    docs = {f"d{i}": t for i, t in enumerate(teams)}
    for _ in range(n):
        counts[column[credit(docs, [f"d{i}" for i in click_through(gains, MODEL, rnd)])]] += 1
    assert exact.sum() == pytest.approx(1.0)
    assert np.abs(counts / n - exact).max() < 0.01  # ~4 standard errors at n = 40k


def test_first_click_distribution_matches_simulated_users():
    gains = [0, 0, 3, 1, 4]
    exact = first_click_distribution(gains, MODEL, depth=6)
    rnd, counts, n = random.Random(5), np.zeros(7), 40_000
    for _ in range(n):
        clicks = click_through(gains, MODEL, rnd)
        counts[clicks[0] if clicks else 6] += 1
    assert exact[5] == 0.0 and exact.sum() == pytest.approx(1.0)
    assert np.abs(counts / n - exact).max() < 0.01


def test_ndcg_uses_linear_gains():
    judged = {"a": 2, "b": 1, "c": 0}
    assert ndcg_at(["a", "b", "c"], judged) == pytest.approx(1.0)
    assert ndcg_at(["b", "a"], judged) == pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3)))
    assert ndcg_at(["c"], {"c": 0}) == 0.0


def test_run_files_round_trip(tmp_path):
    rankings = {"1": ["d3", "d1", "d2"], "2": ["d9"]}
    with open(tmp_path / "x.run", "w") as f:
        write_run(f, rankings, "tag")
    assert read_run(tmp_path / "x.run") == rankings
    (tmp_path / "bad.run").write_text("1 Q0 d1 one 2.0 t\n")
    with pytest.raises(ValueError, match="bad.run:1"):
        read_run(tmp_path / "bad.run")


def test_probabilities_outside_0_1_are_refused():
    with pytest.raises(ValueError):
        CascadeModel(click=(0.1, 1.5))
