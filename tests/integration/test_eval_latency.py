"""`rescore-sidecar eval` measures compute latency even when configurations share pairs: two
configurations that score the same (query, document) pairs, on a sidecar whose every forward pass
takes a known time (the null runtime with a delay), both show that time; the cache-served figure,
asked for, is reported apart and is the small one."""
from __future__ import annotations

import json

import pytest

from rescore_sidecar.tools.eval import cli
from rescore_sidecar.tools.null_backend import DELAY_ENV, null_sidecar_process

pytestmark = pytest.mark.integration

DELAY_MS = 150.0  # per forward pass; a window of 5 documents is one pass
QUERIES = 3


def test_configurations_sharing_pairs_both_pay_compute(opensearch_node, tiny_cross_encoder, tmp_path):
    with null_sidecar_process({"null": str(tiny_cross_encoder)}, env={DELAY_ENV: str(DELAY_MS)}) as sidecar:
        rc = cli.main([
            "sample", "--engine-url", opensearch_node.url, "--index", "rescore-eval-latency",
            "--sidecar", sidecar.address, "--queries", str(QUERIES), "--warmup", "1", "--depth", "10",
            "--window", "5", "--no-progress", "--out", str(tmp_path), "--cached-latency",
            "--config", "policy=replace", "--config", "policy=rrf,rrf_k=5"])
    assert rc == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert "bypassed" in data["latency_method"] and "bypassed" in (tmp_path / "report.md").read_text()
    replace, rrf = data["configurations"]
    p50 = {c["name"]: c["added_latency_ms"]["p50_ms"] for c in (replace, rrf)}
    assert all(c["added_latency_ms"]["count"] == QUERIES and c["fallbacks"] == 0 for c in (replace, rrf))
    # Both computed every pair: neither is near zero, and they are of the same order.
    assert min(p50.values()) >= DELAY_MS, p50
    assert max(p50.values()) < 3 * min(p50.values()), p50
    # The repeated search is served from the cache: well under one forward pass.
    for c in (replace, rrf):
        assert c["cache_served_latency_ms"]["count"] == QUERIES
        assert c["cache_served_latency_ms"]["p50_ms"] < DELAY_MS / 2, c["cache_served_latency_ms"]
