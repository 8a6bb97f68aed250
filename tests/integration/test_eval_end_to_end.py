"""`rescore-sidecar eval` end to end on a slice of the shipped sample: a real engine node (both
kinds), a real sidecar subprocess started by the command, all three report files written."""
from __future__ import annotations

import json
import socket

import pytest

from rescore_sidecar.tools.eval import cli
from rescore_sidecar.tools.eval.metrics import per_query_scores
from rescore_sidecar.tools.eval.runner import bm25_body
from rescore_sidecar.tools.eval.sample import load_sample

pytestmark = pytest.mark.integration

QUERIES = 6


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


@pytest.fixture(scope="module")
def eval_run(engine_node, tiny_cross_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"eval-{engine_node.engine}")
    index = f"rescore-eval-test-{engine_node.engine}"
    rc = cli.main([
        "sample", "--engine-url", engine_node.url, "--index", index, "--model", f"tiny={tiny_cross_encoder}",
        "--queries", str(QUERIES), "--depth", "20", "--window", "10", "--no-progress", "--out", str(out),
        "--config", "policy=replace",
        "--config", "policy=rrf,rrf_k=5",
        "--config", "policy=linear,weight=0,label=linear weight 0",
        "--config", "policy=replace,window=1,label=window 1",
    ])
    assert rc == 0
    return out, index, json.loads((out / "report.json").read_text())


def test_writes_all_three_outputs(eval_run) -> None:
    out, _, data = eval_run
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for name in ("engine order (BM25)", "tiny · window 10 · replace", "tiny · window 10 · rrf k=5", "window 1"):
        assert name in md
    assert data["queries"] == QUERIES and data["depth"] == 20
    assert data["metrics"] == ["ndcg@10", "mrr@10", "recall@10"]


def test_engine_order_equals_a_plain_bm25_search(eval_run, engine_node) -> None:
    _, index, data = eval_run
    sample = load_sample()
    queries = sample.judged_queries()[:QUERIES]
    client = engine_node.client()
    try:
        rankings = {q: [h["_id"] for h in client.search(index=index, body=bm25_body(sample.queries[q], 20))["hits"]["hits"]]
                    for q in queries}
    finally:
        client.close()
    expected = per_query_scores(sample.qrels, rankings, ["ndcg@10", "mrr@10", "recall@10"], queries)
    for metric, values in expected.items():
        assert data["engine_order"]["per_query"][metric] == pytest.approx(values)


def test_rescoring_changes_order_and_records_latency(eval_run) -> None:
    _, _, data = eval_run
    replace = data["configurations"][0]
    assert replace["fallbacks"] == 0
    assert replace["added_latency_ms"]["count"] == QUERIES
    assert 0 < replace["added_latency_ms"]["p50_ms"] <= replace["added_latency_ms"]["p99_ms"]
    vs = replace["vs_engine"]["ndcg@10"]
    assert vs["wins"] + vs["losses"] > 0  # a random-weight model does reorder the window
    assert replace["per_query"]["ndcg@10"] != data["engine_order"]["per_query"]["ndcg@10"]


@pytest.mark.parametrize("label", ["linear weight 0", "window 1"])
def test_configs_that_cannot_reorder_match_engine_order(eval_run, label) -> None:
    _, _, data = eval_run
    config = next(c for c in data["configurations"] if c["name"] == label)
    assert config["per_query"] == data["engine_order"]["per_query"]
    assert all(v["ties"] == QUERIES and v["delta"] == 0 for v in config["vs_engine"].values())
    assert config["fallbacks"] == 0


def test_started_sidecar_is_stopped(eval_run) -> None:
    _, _, data = eval_run
    assert data["context"]["sidecar_models"] == {"tiny": "cross-encoder"}
    assert not _port_open(data["context"]["sidecar_address"])
