"""What an interleaved experiment costs per search, next to a single-arm search, p50 and p99.

Starts a real engine node (rescore_sidecar.tools.localnode) and a real sidecar serving two models
(tiny seeded cross-encoders `a` and `b`, or `--model DIR` twice), indexes a small corpus, then
runs the searches below one after another through the sync and the async OpenSearch wrappers,
the rows taking turns search by search so they share the machine's load. The sidecar's score
cache is bypassed (every call computes), the window is pinned (no brownout) and the budget is
large (no fallbacks; any are counted).

  engine only               rerank=False: no sidecar call (reference)
  single arm                reranked by model a (one sidecar call)
  interleave engine|model   experiment: engine order vs model a (one sidecar call + the merge)
  interleave model|model    experiment: model a vs model b (two sidecar calls, issued together)

    .venv/bin/python bench/interleave_overhead.py [--searches 300] [--window 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time

import httpx

from rescore_sidecar.connectors import (Arm, AsyncRescoringOpenSearch, ConnectorConfig, Experiment, RerankOptions,
                                        RescoringOpenSearch, SidecarClientConfig)
from rescore_sidecar.tools.localnode import local_node
from rescore_sidecar.tools.seeded_models import build_model
from rescore_sidecar.tools.sidecar_process import sidecar_process

INDEX = "bench-interleave"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
QUERIES = ["common apple", "common river", "common stone paper", "common cloud"]


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}"}


def configs(address: str, window: int) -> dict[str, tuple[ConnectorConfig, object]]:
    """Row -> (connector config, the `rerank=` each search passes)."""
    a = RerankOptions(window=window, fields=("title", "body"), model="a", adaptive=False)
    b = RerankOptions(window=window, fields=("title", "body"), model="b", adaptive=False)
    sidecar = SidecarClientConfig(targets=(address,), budget_ms=5000, bypass_cache=True)

    def experiment(arms: tuple[Arm, Arm]) -> ConnectorConfig:
        return ConnectorConfig(default=a, sidecar=sidecar, experiment=Experiment("bench", arms, events=os.devnull))
    return {
        "engine only": (ConnectorConfig(default=a, sidecar=sidecar), False),
        "single arm": (ConnectorConfig(default=a, sidecar=sidecar), None),
        "interleave engine|model": (experiment((Arm("engine", 1, None), Arm("a", 1, a))), None),
        "interleave model|model": (experiment((Arm("a", 1, a), Arm("b", 1, b))), None),
    }


def check(out: dict, row: str, fallbacks: dict[str, int]) -> None:
    mark = out["_rescore"]
    if mark.get("fallback"):
        fallbacks[row] += 1
    elif row.startswith("interleave"):
        assert mark["interleaved"], mark


def run_sync(url: str, rows: dict, searches: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    from opensearchpy import OpenSearch

    clients = {row: (RescoringOpenSearch(OpenSearch(url), config), rerank) for row, (config, rerank) in rows.items()}
    got: dict[str, list[float]] = {row: [] for row in rows}
    fallbacks = {row: 0 for row in rows}
    for i in range(warmup + searches):
        body = {"query": {"match": {"body": QUERIES[i % len(QUERIES)]}}, "size": 10}
        for row, (client, rerank) in clients.items():
            t0 = time.perf_counter()
            out = client.search(index=INDEX, body=body, rerank=rerank)
            took = time.perf_counter() - t0
            check(out, row, fallbacks)
            if i >= warmup:
                got[row].append(took)
    for client, _ in clients.values():
        client.close()
    return got, fallbacks


async def run_async(url: str, rows: dict, searches: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    from opensearchpy import AsyncOpenSearch

    clients = {row: (AsyncRescoringOpenSearch(AsyncOpenSearch(url), config), rerank)
               for row, (config, rerank) in rows.items()}
    got: dict[str, list[float]] = {row: [] for row in rows}
    fallbacks = {row: 0 for row in rows}
    for i in range(warmup + searches):
        body = {"query": {"match": {"body": QUERIES[i % len(QUERIES)]}}, "size": 10}
        for row, (client, rerank) in clients.items():
            t0 = time.perf_counter()
            out = await client.search(index=INDEX, body=body, rerank=rerank)
            took = time.perf_counter() - t0
            check(out, row, fallbacks)
            if i >= warmup:
                got[row].append(took)
    for client, _ in clients.values():
        await client.close()
    return got, fallbacks


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"machine: {cpu} cpus={os.cpu_count()} load1={load:.2f} python={platform.python_version()} {platform.platform()}"


def table(shell: str, got: dict[str, list[float]], fallbacks: dict[str, int]) -> list[str]:
    single = percentile(got["single arm"], 50)
    call = single - percentile(got["engine only"], 50)  # what one sidecar call adds, median
    lines = []
    for row, values in got.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        lines.append(f"{shell:<6} {row:<24} {len(values):>5} {p50*1e3:>8.2f}ms {p99*1e3:>8.2f}ms "
                     f"{p50/single:>9.2f}x {(p50-single)*1e3:>+10.2f}ms {fallbacks[row]:>9}")
    lines.append(f"{shell:<6} one sidecar call adds (single arm - engine only, p50): {call*1e3:.2f}ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=300, help="measured searches per row and shell")
    parser.add_argument("--warmup", type=int, default=50, help="searches per row and shell before measuring")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--model", help="model directory served as both a and b (default: two tiny seeded models)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        models = ({"a": args.model, "b": args.model} if args.model else
                  {"a": str(build_model(os.path.join(tmp, "a"), arch="tiny", seed=0)),
                   "b": str(build_model(os.path.join(tmp, "b"), arch="tiny", seed=1))})
        with local_node("opensearch") as node, sidecar_process(models) as side:
            lines = "".join(json.dumps({"index": {"_index": INDEX, "_id": str(i)}}) + "\n" + json.dumps(_doc(i)) + "\n"
                            for i in range(200))
            httpx.post(f"{node.url}/_bulk?refresh=true", content=lines.encode(),
                       headers={"Content-Type": "application/x-ndjson"}, timeout=60).raise_for_status()
            rows = configs(side.address, args.window)
            sync = run_sync(node.url, rows, args.searches, args.warmup)
            async_ = asyncio.run(run_async(node.url, rows, args.searches, args.warmup))
            engine = f"{node.engine} {node.version}"
    print(f"interleave overhead: {engine}, one client, searches one after another, window {args.window}, "
          f"sidecar models {'tiny seeded (2 layers, 32 hidden)' if not args.model else args.model}, cache bypassed")
    print(f"{'shell':<6} {'search':<24} {'n':>5} {'p50':>10} {'p99':>10} {'p50/single':>10} {'vs single':>12} "
          f"{'fallbacks':>9}")
    for line in table("sync", *sync) + table("async", *async_):
        print(line)
    print(machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
