"""Latency the HTTP rerank API adds over gRPC, same sidecar process, same request, p50 and p99.

Starts one real sidecar (tiny seeded cross-encoder, or `--model DIR`) with both ports, then for a
20-document and a 100-document request and for 1 and 4 concurrent keep-alive clients runs rounds
that alternate gRPC (grpc.aio, one channel per client) and HTTP (`POST /v1/rerank`, aiohttp, one
session per client), so both sides see the same machine load. The model's compute is in both
sides; "added" is what the HTTP transport (JSON, aiohttp) costs over gRPC (protobuf, grpc.aio).

    .venv/bin/python bench/http_vs_grpc.py [--requests 400] [--rounds 8] [--model DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time

import aiohttp
import grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.seeded_models import build_model
from rescore_sidecar.tools.sidecar_process import sidecar_process

WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling "
         "cylinder laminar turbulent jet nozzle slender body hypersonic viscous").split()


def documents(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80))) for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def phase(call, clients: int, n: int) -> list[float]:
    latencies: list[float] = []
    left = [n]

    async def worker(i: int) -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies


async def measure(address: str, http_url: str, n_docs: int, clients: int, requests: int, rounds: int,
                  warmup: int) -> dict[str, list[float]]:
    query = "supersonic flow over a slender wing"
    docs = documents(n_docs)
    grpc_request = pb.RerankRequest(query=query, documents=[pb.Document(text=t) for t in docs])
    body = {"query": query, "documents": docs}
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    stubs = [rescore_pb2_grpc.RerankerStub(c) for c in channels]
    sessions = [aiohttp.ClientSession() for _ in range(clients)]

    async def call_grpc(i: int) -> None:
        reply = await stubs[i].Rerank(grpc_request, timeout=60)
        assert len(reply.results) == n_docs

    async def call_http(i: int) -> None:
        async with sessions[i].post(f"{http_url}/v1/rerank", json=body) as r:
            answer = await r.json()
            assert r.status == 200, answer
            assert len(answer["results"]) == n_docs

    got: dict[str, list[float]] = {"grpc": [], "http": []}
    try:
        await phase(call_grpc, clients, warmup)
        await phase(call_http, clients, warmup)
        for r in range(rounds):
            sides = [("grpc", call_grpc), ("http", call_http)]
            for name, call in (sides if r % 2 == 0 else sides[::-1]):
                got[name] += await phase(call, clients, requests // rounds)
    finally:
        for s in sessions:
            await s.close()
        for c in channels:
            await c.close()
    return got


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu} cpus={os.cpu_count()} load1={load:.2f} python={platform.python_version()} "
            f"grpcio={grpc.__version__} aiohttp={aiohttp.__version__} torch={torch.__version__} {platform.platform()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="per row and side")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=40, help="requests per side and row before measuring")
    parser.add_argument("--docs", default="20,100", help="documents per request, comma separated")
    parser.add_argument("--clients", default="1,4", help="concurrent clients, comma separated")
    parser.add_argument("--model", help="model directory (default: tiny seeded cross-encoder)")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_model(os.path.join(tmp, "tiny"), arch="tiny"))
        with sidecar_process({"bench": model}, http_port=0, extra_args=["--max-documents", "1000"]) as side:
            for n_docs in (int(x) for x in args.docs.split(",")):
                for clients in (int(x) for x in args.clients.split(",")):
                    got = asyncio.run(measure(side.address, side.http_url, n_docs, clients, args.requests,
                                              args.rounds, args.warmup))
                    rows.append((n_docs, clients, got))
    print(f"HTTP /v1/rerank vs gRPC Rerank, one sidecar, {args.requests} requests per row and side in "
          f"{args.rounds} alternating rounds, model {'tiny seeded (2 layers, 32 hidden)' if not args.model else args.model}")
    print(f"{'docs':>5} {'clients':>7} {'gRPC p50':>9} {'gRPC p99':>9} {'HTTP p50':>9} {'HTTP p99':>9}"
          f" {'added p50':>10} {'added p99':>10} {'p50 ratio':>9}")
    for n_docs, clients, got in rows:
        g50, g99 = percentile(got["grpc"], 50), percentile(got["grpc"], 99)
        h50, h99 = percentile(got["http"], 50), percentile(got["http"], 99)
        print(f"{n_docs:>5} {clients:>7} {g50*1e3:>7.2f}ms {g99*1e3:>7.2f}ms {h50*1e3:>7.2f}ms {h99*1e3:>7.2f}ms"
              f" {(h50-g50)*1e3:>8.2f}ms {(h99-g99)*1e3:>8.2f}ms {h50/g50:>9.2f}")
    print(machine())
    return 0


if __name__ == "__main__":
    sys.exit(main())
