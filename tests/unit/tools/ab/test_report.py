"""`ab report`: events written by the feedback log, read back into wins, Δ_AB and split metrics."""
from __future__ import annotations

import json

import pytest

from rescore_sidecar.connectors._core.interleave import TEAM_A, team_draft
from rescore_sidecar.connectors.feedback_log import FeedbackLog, JsonLinesFile
from rescore_sidecar.tools.ab.report import delta_ab, main

ARMS = ("bm25", "model")


def interleaved(log: FeedbackLog, i: int, winner: str | None) -> None:
    """One interleaved impression whose clicks make `winner` ("bm25", "model", "tie", None) win it."""
    a, b = [f"d{k}" for k in range(6)], [f"d{k}" for k in reversed(range(6))]
    merged = team_draft(a, b, f"imp-{i}")
    teams = {doc: ARMS[0] if team == TEAM_A else ARMS[1] for doc, team in zip(merged.doc_ids, merged.teams)}
    shown = log.impression("exp-i", ARMS, merged.doc_ids, teams=teams, impression_id=f"imp-{i}")
    by_arm = {arm: [d for d in shown.doc_ids if teams[d] == arm] for arm in ARMS}
    if winner in ARMS:
        log.feedback(shown.id, by_arm[winner][:1])
        log.feedback(shown.id, by_arm[winner][:1])  # a repeated click changes nothing
    elif winner == "tie":
        log.feedback(shown.id, [by_arm[ARMS[0]][0], by_arm[ARMS[1]][0]])


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.jsonl"
    with FeedbackLog(JsonLinesFile(path)) as log:
        outcomes = ["bm25"] * 10 + ["model"] * 30 + ["tie"] * 5 + [None] * 5
        for i, winner in enumerate(outcomes):
            interleaved(log, i, winner)
        for arm, first_clicks in (("bm25", [1, None, 2, None]), ("model", [1, 1, 3])):
            for j, rank in enumerate(first_clicks):
                shown = log.impression("exp-s", ARMS, ["x1", "x2", "x3"], arm=arm, impression_id=f"s-{arm}-{j}")
                if rank:
                    log.feedback(shown.id, [f"x{rank}", "x3"])
    return path


def test_log_to_report_json(events, capsys):
    assert main([str(events), "--json"]) == 0
    inter_exp, split_exp = sorted(json.loads(capsys.readouterr().out), key=lambda r: r["experiment"])
    s = inter_exp["interleave"]
    assert (s["impressions"], s["clicked"], s["wins"], s["ties"]) == (50, 45, {"bm25": 10, "model": 30}, 5)
    assert s["delta_ab"] == pytest.approx(delta_ab(10, 30, 5)) == pytest.approx(12.5 / 45 - 0.5)
    assert s["delta_ci"]["low"] < s["delta_ab"] < s["delta_ci"]["high"] < 0
    assert s["preferred"] == "model" and s["sign_test_p"] < 0.01
    arms = {a["arm"]: a for a in split_exp["split"]}
    assert (arms["bm25"]["impressions"], arms["bm25"]["clicked"], arms["bm25"]["ctr"]) == (4, 2, 0.5)
    assert arms["bm25"]["mrr_of_clicks"] == pytest.approx((1 + 0.5) / 4)
    assert arms["model"]["mrr_of_clicks"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert arms["bm25"]["ctr_ci"]["low"] < 0.5 < arms["bm25"]["ctr_ci"]["high"]
    assert arms["bm25"]["mrr_ci"]["low"] == 0.0 and arms["model"]["mrr_ci"]["high"] == 1.0  # clipped to [0, 1]
    assert split_exp["interleave"] is None and inter_exp["split"] == []


def test_report_text_names_the_preferred_arm(events, capsys):
    assert main([str(events)]) == 0
    out = capsys.readouterr().out
    assert "wins: bm25 10, model 30; ties 5" in out and "preferred: model" in out
    assert "| bm25 | 4 | 2 | 0.500" in out


def test_too_few_clicks_make_no_decision(tmp_path, capsys):
    path = tmp_path / "e.jsonl"
    with FeedbackLog(JsonLinesFile(path)) as log:
        for i in range(3):  # three wins out of three: the bootstrap interval excludes 0, the sign test does not
            interleaved(log, i, "bm25")
    main([str(path), "--json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert report["interleave"]["delta_ci"]["low"] > 0 and report["interleave"]["sign_test_p"] == 0.25
    assert report["interleave"]["preferred"] is None


def test_feedback_without_its_impression_is_counted(tmp_path, capsys):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps({"v": 1, "type": "feedback", "impression_id": "gone", "experiment": "old",
                                "clicked": ["d1"], "ts": 1.0}) + "\n")
    assert main([str(path), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["experiment"] == "old" and report["orphan_feedback"] == 1


@pytest.mark.parametrize("content, message", [
    ('{"type": "impression"\n', "e.jsonl:1: not JSON"),
    ('\n{"type": "click"}\n', "e.jsonl:2: not an impression or feedback event"),
    ('{"type": "feedback", "impression_id": "x"}\n', "lacks clicked"),
])
def test_unreadable_events_name_file_and_line(tmp_path, capsys, content, message):
    (tmp_path / "e.jsonl").write_text(content)
    assert main([str(tmp_path / "e.jsonl")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_file_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_plot_draws_the_running_preference(events, tmp_path, capsys):
    from rescore_sidecar.tools.ab.plot import preference_curve

    assert main([str(events), "--plot", str(tmp_path / "ab.png")]) == 0
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    n, mean, half = preference_curve([0.5, -0.5, 0.0, -0.5])
    assert list(n) == [1, 2, 3, 4] and mean[-1] == pytest.approx(delta_ab(1, 2, 1))
    scores = [0.5, -0.5, 0.0, -0.5]
    mean_, sd = sum(scores) / 4, (sum((x + 0.125) ** 2 for x in scores) / 3) ** 0.5
    assert half[-1] == pytest.approx(1.959963984540054 * sd / 2) and mean_ == pytest.approx(mean[-1])
