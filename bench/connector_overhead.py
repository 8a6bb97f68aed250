"""Connector overhead: time a search spends in the connector besides the engine and sidecar calls.

Runs `Rescorer.search` with an engine call that returns a prepared 100-hit response and a sidecar
call that returns prepared scores, both timed and subtracted; what is left is planning, text
extraction, reordering, slicing and stripping. Prints p50/p99 and the machine.

    .venv/bin/python bench/connector_overhead.py [--hits 100] [--iterations 2000]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from rescore_sidecar.connectors.config import ConnectorConfig, RerankOptions  # noqa: E402
from rescore_sidecar.connectors.rescoring import Rescorer  # noqa: E402
from rescore_sidecar.connectors._sidecar.calls import RerankResult  # noqa: E402


def response(n: int) -> dict:
    hits = [{"_index": "docs", "_id": str(i), "_score": float(n - i),
             "_source": {"title": f"title {i}", "body": "lorem ipsum dolor sit amet " * 40, "tag": i}}
            for i in range(n)]
    return {"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": 1000, "relation": "gte"}, "max_score": float(n), "hits": hits}}


class PreparedSidecar:
    def __init__(self) -> None:
        self.seconds = 0.0

    def rerank(self, query, texts, *, model=""):
        t0 = time.perf_counter()
        result = RerankResult(scores=[((i * 7919) % 101) / 101 for i in range(len(texts))], model="m", took_ms=1.0)
        self.seconds += time.perf_counter() - t0
        return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hits", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    n = args.hits
    config = ConnectorConfig(default=RerankOptions(window=n, fields=("title", "body")))
    sidecar = PreparedSidecar()
    rescorer = Rescorer(config, sidecar=sidecar)
    prepared = response(n)
    cases = {
        "replace, full _source": ({"query": {"match": {"body": "lorem"}}, "size": 10}, {}),
        "replace, _source: false": ({"query": {"match": {"body": "lorem"}}, "size": 10, "_source": False}, {}),
        "rrf, page 3, includes": ({"query": {"match": {"body": "lorem"}}, "from": 20, "size": 10,
                                   "_source": ["tag"]}, {}),
    }
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python={platform.python_version()} {platform.platform()}")
    print(f"hits per search: {n}, window: {n}, iterations: {args.iterations}\n")
    print(f"{'case':<28} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (body, params) in cases.items():
        rerank = {"policy": "rrf"} if name.startswith("rrf") else None
        samples = []
        for i in range(args.iterations + 200):
            engine_seconds = [0.0]

            def engine(b, p):
                t0 = time.perf_counter()
                r = prepared  # the engine's work is outside the connector
                engine_seconds[0] += time.perf_counter() - t0
                return r

            sidecar.seconds = 0.0
            t0 = time.perf_counter()
            out = rescorer.search(engine, body, params, rerank=rerank)
            total = time.perf_counter() - t0
            assert out["_rescore"]["reranked"], out["_rescore"]
            if i >= 200:  # warm-up
                samples.append((total - engine_seconds[0] - sidecar.seconds) * 1000)
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[int(0.99 * (len(samples) - 1))]
        print(f"{name:<28} {p50:>8.3f} {p99:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
