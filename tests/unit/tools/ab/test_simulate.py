"""`ab simulate` on a tiny synthetic collection where the better ranker is known by construction."""
from __future__ import annotations

import json
import random

import pytest

from rescore_sidecar.tools.ab.runs import write_qrels, write_run
from rescore_sidecar.tools.ab.simulate import main


@pytest.fixture
def collection(tmp_path):
    """30 queries of 12 docs: `ideal` orders them by gain; `worse` is `ideal` with a few docs swapped."""
    rnd = random.Random(1)
    qrels, ideal, worse = {}, {}, {}
    for q in map(str, range(30)):
        docs = [f"q{q}d{i}" for i in range(12)]
        qrels[q] = {d: rnd.choice([0, 0, 0, 1, 2, 4]) for d in docs}
        ideal[q] = sorted(docs, key=lambda d: -qrels[q][d])
        worse[q] = list(ideal[q])
        for _ in range(3):
            i, j = rnd.randrange(12), rnd.randrange(12)
            worse[q][i], worse[q][j] = worse[q][j], worse[q][i]
    for name, data, write in (("ideal.run", ideal, write_run), ("worse.run", worse, write_run)):
        with open(tmp_path / name, "w") as f:
            write(f, data, name)
    with open(tmp_path / "qrels.txt", "w") as f:
        write_qrels(f, qrels)
    return tmp_path


def test_interleaving_reaches_the_right_decision_with_fewer_impressions(collection, capsys):
    argv = [str(collection / "worse.run"), str(collection / "ideal.run"), "--qrels", str(collection / "qrels.txt"),
            "--repetitions", "300", "--max-impressions", "100000", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ndcg_b"] == pytest.approx(1.0) and result["ndcg_a"] < 0.95
    interleaving, ctr, mrr = result["methods"]
    assert interleaving["p_right"][-1] == 1.0 and interleaving["unsettled"] == 0.0
    assert interleaving["n_95"] is not None
    for split in (ctr, mrr):
        assert split["n_95"] is None or interleaving["n_95"] < split["n_95"]
    assert mrr["n_95"] is not None  # the split test gets there too, later


def test_markdown_table_and_bad_input(collection, capsys):
    argv = [str(collection / "worse.run"), str(collection / "ideal.run"), "--qrels", str(collection / "qrels.txt"),
            "--repetitions", "50", "--max-impressions", "1000", "--name-a", "worse", "--name-b", "ideal"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "right decision: ideal" in out and "| interleaving (team-draft) |" in out
    assert main(argv[:2] + ["--qrels", str(collection / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main(argv[:1] * 2 + argv[2:]) == 2  # the same run twice: no right decision
    assert "same nDCG@10" in capsys.readouterr().err


def test_ab_is_a_rescore_sidecar_command(capsys):
    from rescore_sidecar.tools.cli import main as cli

    assert cli(["ab", "--help"]) == 0 and "simulate" in capsys.readouterr().out
    assert cli(["ab", "nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
