"""Tracing overhead (#22): connector and sidecar p50 with tracing off, on with sampling 0, on with
sampling 1, in one run, 100-document requests. Target: under 3 % added p50 at sampling 1.

- connector: `Rescorer.search` over a prepared 100-hit engine answer, with the real sync
  `SidecarClient` on `MockSidecar` (no network, prepared scores): the connector's own work only,
  where tracing's share is the largest (3 spans and two `traceparent` injections per search).
- sidecar: gRPC Rerank of 100 documents (score cache off, so every request computes) to a `Sidecar`
  served in this process on loopback, with the bundled all-MiniLM-L6-v2 (`--model tiny`: the
  seeded 2-layer test model, a far cheaper forward pass, so a worst case for the ratio). Spans per
  request: rescore.rerank, tokenize, queue, one per forward pass.

Modes: off = `RESCORE_TRACING=0` (no span objects at all; the same as no extra installed, but for
one failed import); sampling 0 / 1 = the SDK's TracerProvider with TraceIdRatioBased(0) / ALWAYS_ON
and a BatchSpanProcessor whose exporter encodes each batch to OTLP protobuf and drops it (the
client-side cost of the OTLP exporter without a collector on this machine). The mode changes with
every request, in turn, so that a shared machine's drift hits all three alike; the table gives the
median over rounds of each round's p50 per mode, the ratio to off, and the spread of the rounds' p50s.
The last line puts the connector's added time at sampling 1 against a whole search's p50 (its own
time plus this sidecar's 100-document call, engine time left out).

    .venv/bin/python bench/tracing_overhead.py [--rounds 5] [--searches 2000] [--reranks 100] [--model tiny]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import grpc

from rescore_sidecar.connectors import tracing
from rescore_sidecar.connectors.config import ConnectorConfig, RerankOptions, SidecarClientConfig
from rescore_sidecar.connectors.rescoring import Rescorer
from rescore_sidecar.connectors._sidecar.client import SidecarClient
from rescore_sidecar.connectors.testing import MockSidecar
from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb

N = 100
MODES = ("off", "sampling 0", "sampling 1")
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".split()


def _text(i: int, words: int = 40) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words))


def engine_answer(n: int) -> dict:
    hits = [{"_index": "docs", "_id": str(i), "_score": float(n - i), "_source": {"title": f"title {i}",
                                                                                  "body": _text(i)}}
            for i in range(n)]
    return {"took": 3, "timed_out": False, "hits": {"total": {"value": 1000, "relation": "gte"},
                                                    "max_score": float(n), "hits": hits}}


class EncodeAndDrop:
    """A SpanExporter: OTLP-encodes each batch (the exporter's CPU work) and sends it nowhere."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        self._encode, self.spans, self.seconds = encode_spans, 0, 0.0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        t0 = time.thread_time()
        self._encode(spans).SerializeToString()
        self.seconds += time.thread_time() - t0
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def providers() -> dict[str, Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased

    out = {}
    for mode, sampler in (("sampling 0", TraceIdRatioBased(0.0)), ("sampling 1", ALWAYS_ON)):
        provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "bench"}))
        provider.exporter = EncodeAndDrop()
        provider.add_span_processor(BatchSpanProcessor(provider.exporter))
        out[mode] = provider
    return out


def switch(mode: str, provs: dict[str, Any]) -> None:
    tracing.reset()
    if mode == "off":
        os.environ[tracing.ENV_SWITCH] = "0"
    else:
        os.environ.pop(tracing.ENV_SWITCH, None)
        tracing.install(provs[mode])


def connector_search(provs: dict[str, Any]) -> Callable[[str], float]:
    """One timed search in a given mode: seconds."""
    config = ConnectorConfig(default=RerankOptions(window=N, fields=("title", "body")),
                             sidecar=SidecarClientConfig(targets=("127.0.0.1:1",), budget_ms=10000))
    scores = [((i * 7919) % 101) / 101 for i in range(N)]
    rescorer = Rescorer(config, sidecar=SidecarClient(config.sidecar, transport=MockSidecar(lambda a, q, t: scores)))
    answer = engine_answer(N)
    body = {"query": {"match": {"body": "lorem"}}, "size": 10}

    def run(mode: str) -> float:
        switch(mode, provs)
        t0 = time.perf_counter()
        result = rescorer.search(lambda b, p: answer, body)
        seconds = time.perf_counter() - t0
        assert result["_rescore"]["reranked"], result["_rescore"]
        return seconds

    return run


async def measure(model: str, provs: dict[str, Any], rounds: int, count: int, searches: int, warmup: int,
                  connector: Callable[[str], float]) -> dict[str, dict[str, list[float]]]:
    from rescore_sidecar.sidecar.app import Sidecar
    from rescore_sidecar.sidecar.config import SidecarConfig

    models = [f"bench={model}"] if model else []
    sidecar = Sidecar(SidecarConfig(models=models, host="127.0.0.1", port=0, metrics_port=0, device="cpu",
                                    cache_bytes=0, drain_seconds=0))
    drain = asyncio.create_task(sidecar.wait_and_drain())
    await sidecar.start()
    request = pb.RerankRequest(query="lorem ipsum tempor", documents=[pb.Document(id=str(i), text=_text(i))
                                                                      for i in range(N)])
    p50s: dict[str, dict[str, list[float]]] = {"connector": {m: [] for m in MODES}, "sidecar": {m: [] for m in MODES}}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
            call = channel.unary_unary("/rescore.v1.Reranker/Rerank", request_serializer=pb.RerankRequest.SerializeToString,
                                       response_deserializer=pb.RerankResponse.FromString)
            for mode in MODES:  # warm-up of every mode before any measurement
                switch(mode, provs)
                for _ in range(warmup):
                    await call(request, timeout=60)
                for _ in range(200):
                    connector(mode)
            # The mode changes with every request (in turn, the order shifting each round): a shared
            # machine's drift, which moves p50s by more than tracing does, hits the three alike.
            for r in range(rounds):
                got: dict[str, dict[str, list[float]]] = {"connector": {m: [] for m in MODES},
                                                          "sidecar": {m: [] for m in MODES}}
                for i in range(count * len(MODES)):
                    mode = MODES[(i + r) % len(MODES)]
                    switch(mode, provs)
                    t0 = time.perf_counter()
                    await call(request, timeout=60)
                    got["sidecar"][mode].append(time.perf_counter() - t0)
                for i in range(searches * len(MODES)):
                    mode = MODES[(i + r) % len(MODES)]
                    got["connector"][mode].append(connector(mode))
                for path in got:
                    for mode in MODES:
                        p50s[path][mode].append(statistics.median(got[path][mode]) * 1000)
                print(f"round {r + 1}/{rounds}: " + ", ".join(
                    f"{m}: sidecar {p50s['sidecar'][m][-1]:.3f} ms, connector {p50s['connector'][m][-1]:.4f} ms"
                    for m in MODES), file=sys.stderr)
    finally:
        sidecar.request_stop()
        await drain
    return p50s


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    import opentelemetry.sdk.version as otel_version

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {platform.node()} | {cpu} | {os.cpu_count()} cpus | load1 at start {load:.2f} | "
            f"python {platform.python_version()} | grpcio {grpc.__version__} | "
            f"opentelemetry-sdk {otel_version.__version__} | no GPU")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--searches", type=int, default=2000, help="connector searches per round and mode")
    parser.add_argument("--reranks", type=int, default=100, help="sidecar requests per round and mode")
    parser.add_argument("--warmup", type=int, default=20, help="sidecar requests per mode before measuring")
    parser.add_argument("--model", default="", help="model directory, or 'tiny' (default: bundled all-MiniLM-L6-v2)")
    args = parser.parse_args(argv)
    try:
        provs = providers()
    except ImportError:
        print("tracing_overhead needs the otel extra: pip install 'rescore-sidecar[otel]'", file=sys.stderr)
        return 2
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        model, model_name = args.model, args.model or "all-MiniLM-L6-v2 (bundled)"
        if model == "tiny":
            from rescore_sidecar.tools.seeded_models import build_model

            model, model_name = str(build_model(os.path.join(tmp, "tiny"), kind="cross-encoder", arch="tiny")), \
                "seeded tiny cross-encoder"
        p50s = asyncio.run(measure(model, provs, args.rounds, args.reranks, args.searches, args.warmup,
                                   connector_search(provs)))
    for provider in provs.values():
        provider.shutdown()
    exporter = provs["sampling 1"].exporter
    exported = exporter.spans
    print(f"{N} documents per request; {args.rounds} rounds, the mode changing with every request; per round and mode "
          f"{args.searches} connector searches, {args.reranks} sidecar requests; sidecar model: {model_name}, "
          f"CPU, score cache off; spans exported at sampling 1: {exported}\n")
    print(f"| path | tracing | p50 ms (median of rounds) | vs off | added µs | rounds' p50 spread ms |")
    print("|---|---|---:|---:|---:|---|")
    for path, by_mode in p50s.items():
        base = statistics.median(by_mode["off"])
        for mode in MODES:
            value = statistics.median(by_mode[mode])
            spread = f"{min(by_mode[mode]):.3f}-{max(by_mode[mode]):.3f}"
            print(f"| {path} | {mode} | {value:.3f} | {value / base:.3f} | {(value - base) * 1000:+.0f} | {spread} |")
    c_off, c_on = statistics.median(p50s["connector"]["off"]), statistics.median(p50s["connector"]["sampling 1"])
    s_off = statistics.median(p50s["sidecar"]["off"])
    print(f"\nbackground export at sampling 1 (the BatchSpanProcessor's thread, not in the p50s above, which it "
          f"slows only through the GIL and the CPUs): {exporter.seconds / max(exported, 1) * 1e6:.1f} µs CPU per span")
    print(f"connector's added p50 at sampling 1 against a search's p50 (connector + this sidecar call, "
          f"no engine): {(c_on - c_off) / (c_off + s_off) * 100:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
