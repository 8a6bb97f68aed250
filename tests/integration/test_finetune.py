"""`rescore-sidecar finetune` end to end on the shipped sample: a real OpenSearch node mines the
negatives, a few training steps on a tiny seeded model, and `--eval` serves the result in a real
sidecar next to the start model and scores the held-out queries."""
from __future__ import annotations

import json

import pytest

from rescore_sidecar.tools.finetune import cli

pytestmark = pytest.mark.integration


def test_finetune_trains_writes_a_servable_model_and_evaluates_it(opensearch_node, tiny_cross_encoder, tmp_path, capsys):
    out = tmp_path / "tuned"
    rc = cli.main(["sample", "--engine-url", opensearch_node.url, "--index", "rescore-finetune-test",
                   "--start", str(tiny_cross_encoder), "--out", str(out), "--steps", "6", "--batch-size", "8",
                   "--negatives", "3", "--depth", "10", "--max-length", "64", "--device", "cpu",
                   "--eval", "--eval-window", "10", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "18 training queries, 12 held out" in err and "trained 6 steps" in err
    assert json.loads((out / "config.json").read_text())["architectures"][0].endswith("ForSequenceClassification")
    report = json.loads((tmp_path / "tuned.eval" / "report.json").read_text())
    systems = {c["name"]: c for c in report["configurations"]}
    assert set(systems) == {f"start ({tiny_cross_encoder})", "fine-tuned"}
    assert all(s["fallbacks"] == 0 for s in systems.values())  # the sidecar loaded and served both
    assert report["context"]["held_out_queries"] == 12


def test_qrels_naming_unknown_documents_fail_at_start(tmp_path, capsys):
    (tmp_path / "corpus.jsonl").write_text('{"id": "d1", "text": "a"}\n')
    (tmp_path / "queries.jsonl").write_text('{"id": "q1", "text": "x"}\n{"id": "q2", "text": "y"}\n')
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d9 1\n")
    rc = cli.main([str(tmp_path), "--out", str(tmp_path / "m"), "--engine-url", "http://127.0.0.1:9"])
    assert rc == 2 and "d9" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_teacher_the_sidecar_does_not_serve_fails_before_training(opensearch_node, tiny_cross_encoder, tmp_path, capsys):
    rc = cli.main(["sample", "--engine-url", opensearch_node.url, "--index", "rescore-finetune-test",
                   "--start", str(tiny_cross_encoder), "--out", str(tmp_path / "m"), "--loss", "margin-mse",
                   "--teacher", "bge-m3", "--teacher-model", f"small={tiny_cross_encoder}", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "teacher model 'bge-m3' is not served" in err and "small" in err
    assert not (tmp_path / "m").exists()
