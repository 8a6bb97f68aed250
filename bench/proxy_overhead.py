"""Latency the HTTP proxy adds over going to the engine directly, p50 and p99.

Starts a real engine node (rescore_sidecar.tools.localnode), a real sidecar (tiny seeded cross-encoder, or
`--model DIR`) and the proxy as a subprocess, indexes a small corpus, then runs C concurrent
keep-alive clients in rounds that alternate direct and proxied requests, so both see the same
machine load. Rows:
  get      GET /{index}/_doc/{id}           pass-through
  search   POST /{index}/_search, X-Rescore: off   the search path with rescoring off
  rescored POST /{index}/_search            reranked through the sidecar (window 20)

    .venv/bin/python bench/proxy_overhead.py [--engine opensearch] [--clients 4] [--requests 2000]
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

import aiohttp

from rescore_sidecar.tools.localnode import local_node  # noqa: E402
from rescore_sidecar.tools.seeded_models import build_model  # noqa: E402
from rescore_sidecar.tools.proxy_process import proxy_process  # noqa: E402
from rescore_sidecar.tools.sidecar_process import sidecar_process  # noqa: E402

INDEX = "bench-proxy"
WORDS = "apple banana cherry river mountain engine cloud stone paper glass".split()
QUERY = {"query": {"match": {"body": "common"}}, "size": 10}


def _doc(i: int) -> dict:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 4 + i % 5))
    return {"id": i, "title": f"doc {i}", "body": f"{'common ' * (1 + i % 7)}{words}"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: the proxy's cost per request, whatever the load."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def run_phase(session: aiohttp.ClientSession, make_request, clients: int, n: int) -> list[float]:
    latencies: list[float] = []
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            method, url, kwargs = make_request()
            t0 = time.perf_counter()
            async with session.request(method, url, **kwargs) as r:
                await r.read()
                assert r.status == 200, (r.status, await r.text())
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


async def measure(direct: str, proxy: str, proxy_pid: int, clients: int, requests: int,
                  rounds: int, warmup: int) -> list[tuple]:
    search_body = json.dumps(QUERY).encode()
    headers = {"Content-Type": "application/json"}
    kinds = {
        "get": lambda base: ("GET", f"{base}/{INDEX}/_doc/7", {}),
        "search": lambda base: ("POST", f"{base}/{INDEX}/_search",
                                {"data": search_body, "headers": {**headers, "X-Rescore": "off"}}),
        "rescored": lambda base: ("POST", f"{base}/{INDEX}/_search",
                                  {"data": search_body, "headers": headers}),
    }
    rows = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up of every kind before any row: the engine's JIT, caches, pooled connections.
        # (Without it the first row measures a colder engine than the later ones.)
        for make in kinds.values():
            for base in (direct, proxy):
                await run_phase(session, lambda: make(base), clients, warmup)
        for name, make in kinds.items():
            got: dict[str, list[float]] = {"direct": [], "proxy": []}
            per_round = max(1, requests // rounds)
            cpu = 0.0
            for _ in range(rounds):
                got["direct"] += await run_phase(session, lambda: make(direct), clients, per_round)
                c0 = cpu_seconds(proxy_pid)
                got["proxy"] += await run_phase(session, lambda: make(proxy), clients, per_round)
                cpu += cpu_seconds(proxy_pid) - c0
            d50, d99 = percentile(got["direct"], 50), percentile(got["direct"], 99)
            p50, p99 = percentile(got["proxy"], 50), percentile(got["proxy"], 99)
            rows.append((name, len(got["proxy"]), d50, d99, p50, p99, cpu / len(got["proxy"])))
    return rows


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu} cpus={os.cpu_count()} load1={load:.2f} python={platform.python_version()} "
            f"aiohttp={aiohttp.__version__} {platform.platform()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="opensearch", choices=("opensearch", "elasticsearch"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000, help="per row and side")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1000, help="requests per kind and side before measuring")
    parser.add_argument("--model", help="model directory for the sidecar (default: tiny seeded model)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_model(os.path.join(tmp, "tiny"), arch="tiny"))
        with local_node(args.engine) as node, sidecar_process({"bench": model}) as side, \
                proxy_process(node.url, "--sidecar", side.address, "--rescore",
                              '{"window": 20, "fields": ["title", "body"]}') as proxy:
            lines = "".join(json.dumps({"index": {"_index": INDEX, "_id": str(i)}}) + "\n" + json.dumps(_doc(i)) + "\n"
                            for i in range(200))
            import httpx

            httpx.post(f"{node.url}/_bulk?refresh=true", content=lines.encode(),
                       headers={"Content-Type": "application/x-ndjson"}, timeout=60).raise_for_status()
            rows = asyncio.run(measure(node.url, proxy.url, proxy.process.pid, args.clients, args.requests, args.rounds,
                                       args.warmup))
            engine = f"{node.engine} {node.version}"
    print(f"proxy overhead: {engine}, {args.clients} concurrent keep-alive clients, "
          f"{args.requests} requests per row and side, window 20, sidecar model "
          f"{'tiny (2 layers, 32 hidden)' if not args.model else args.model}")
    print(f"{'request':<10} {'n':>6} {'direct p50':>11} {'direct p99':>11} {'proxy p50':>10} {'proxy p99':>10}"
          f" {'added p50':>10} {'added p99':>10} {'proxy CPU/req':>14}")
    for name, n, d50, d99, p50, p99, cpu in rows:
        print(f"{name:<10} {n:>6} {d50*1e3:>9.2f}ms {d99*1e3:>9.2f}ms {p50*1e3:>8.2f}ms {p99*1e3:>8.2f}ms"
              f" {(p50-d50)*1e3:>8.2f}ms {(p99-d99)*1e3:>8.2f}ms {cpu*1e6:>12.0f}us")
    print(machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
