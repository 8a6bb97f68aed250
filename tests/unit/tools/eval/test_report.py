"""Reports: the JSON holds every number, the Markdown table shows them, the PNG is a real image."""
from __future__ import annotations

import json
import pathlib
import random

import pytest

from rescore_sidecar.tools.eval.metrics import latency_summary
from rescore_sidecar.tools.eval.report import Report, SystemRun, markdown, to_json, write_all

METRICS = ("ndcg@10", "mrr@10", "recall@100")


def _report(num_candidates: int = 2) -> Report:
    rng = random.Random(3)
    queries = [str(i) for i in range(1, 41)]
    base = {m: {q: rng.random() * 0.6 for q in queries} for m in METRICS}
    cands = []
    for i in range(num_candidates):
        lift = 0.15 if i == 0 else 0.0
        per_query = {m: {q: min(1.0, v + lift * (1 if int(q) % 5 else -1)) for q, v in base[m].items()}
                     for m in METRICS}
        cands.append(SystemRun(f"config-{i}", per_query, {"window": 50, "policy": "replace"},
                               latency_summary([10.0 + i + j for j in range(40)]), fallbacks=i))
    return Report("tiny", "gain = grade", "opensearch 2.19.6", 100, METRICS,
                  SystemRun("engine order (BM25)", base), tuple(cands), {"machine": "test"})


def test_json_has_means_deltas_latency_and_per_query() -> None:
    data = to_json(_report())
    assert data["queries"] == 40 and data["metrics"] == list(METRICS)
    first = data["configurations"][0]
    assert first["means"]["ndcg@10"] > data["engine_order"]["means"]["ndcg@10"]
    vs = first["vs_engine"]["ndcg@10"]
    assert vs["wins"] + vs["losses"] + vs["ties"] == 40 and vs["losses"] > 0
    assert vs["ci_low"] < vs["delta"] < vs["ci_high"] and vs["p_value"] < 0.05
    assert first["added_latency_ms"]["p50_ms"] == pytest.approx(29.5)
    assert len(first["per_query"]["mrr@10"]) == 40
    assert data["configurations"][1]["vs_engine"]["ndcg@10"]["p_value"] == 1.0  # identical to baseline
    json.dumps(data)  # serialisable


def test_markdown_marks_significance_and_lists_every_system() -> None:
    text = markdown(_report())
    lines = text.splitlines()
    assert any(line.startswith("| engine order (BM25)") for line in lines)
    row0 = next(line for line in lines if line.startswith("| config-0") and "29.5" in line)
    assert "*)" in row0                         # significant gain is starred
    row1 = next(line for line in lines if line.startswith("| config-1") and "30.5" in line)
    assert "(+0.0000)" in row1                  # no change, no star
    assert "wins/losses/ties" in text and "40 judged queries" in text
    table_lines = [line for line in lines if line.startswith("|")]
    assert len({len(line) for line in table_lines[:4]}) == 1  # summary columns aligned


@pytest.mark.parametrize("num_candidates", [0, 1, 3])
def test_write_all_writes_three_files(tmp_path: pathlib.Path, num_candidates: int) -> None:
    paths = write_all(_report(num_candidates), tmp_path / "out")
    assert json.loads(paths["json"].read_text())["collection"] == "tiny"
    assert paths["markdown"].read_text().startswith("**tiny**")
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_json_is_strict_when_nothing_was_reranked(tmp_path: pathlib.Path) -> None:
    import dataclasses

    report = _report(1)
    never = dataclasses.replace(report.candidates[0], latency=latency_summary([]), fallbacks=40)
    report = dataclasses.replace(report, candidates=(never,))
    paths = write_all(report, tmp_path)
    data = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["configurations"][0]["added_latency_ms"]["p50_ms"] is None
    assert "| config-0" in paths["markdown"].read_text() and "–" in paths["markdown"].read_text()


def test_cache_served_latency_appears_only_when_measured_and_the_method_is_stated(tmp_path: pathlib.Path) -> None:
    import dataclasses

    method = "Added latency: ... with the sidecar's score cache bypassed ..."
    plain = dataclasses.replace(_report(2), latency_method=method)
    assert "cache-served" not in markdown(plain)
    assert all("cache_served_latency_ms" not in c for c in to_json(plain)["configurations"])
    assert to_json(plain)["latency_method"] == method and method in markdown(plain)
    cached = dataclasses.replace(plain, candidates=tuple(
        dataclasses.replace(c, cached_latency=latency_summary([1.0, 2.0, 3.0])) for c in plain.candidates))
    text = markdown(cached)
    assert "cache-served p50 ms" in text
    row0 = next(line for line in text.splitlines() if line.startswith("| config-0"))
    assert row0.rstrip(" |").endswith("3.0")  # the cache-served p99 is the last cell
    assert to_json(cached)["configurations"][0]["cache_served_latency_ms"]["p50_ms"] == 2.0
    assert write_all(cached, tmp_path)["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
