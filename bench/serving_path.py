"""The sidecar's own cost: a model that does no compute, beside the tokenizer's own rate.

    .venv/bin/python bench/serving_path.py            # 20- and 100-document requests, 1 and 8 clients

A real `rescore-sidecar serve` process runs with the null model of
`rescore_sidecar.tools.null_backend` (real tokenizer, no forward pass; a benchmark-only
loader, not a user option) on a 2-layer, 32-wide cross-encoder checkpoint's tokenizer, with
the score cache off, so every request pays tokenization, queueing, batching and gRPC. Its
pairs/s and per-request p50 are measured beside the tokenizer alone turning the same
(query, abstract) pairs into truncated model inputs (`encode_batch` of the pairs, in this
process) in the same run. Documents: the bundled Cranfield sample's abstracts.

Targets (issue 16): at 8 clients >= 70% of the tokenizer's rate; at 1 client a 100-document
request's p50 <= 2x the tokenizer's time for those 100 pairs.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import tempfile
import time

import grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.tools.eval.sample import load_sample
from rescore_sidecar.tools.null_backend import null_sidecar_process
from rescore_sidecar.tools.seeded_models import build_model

RERANK = "/rescore.v1.Reranker/Rerank"


def machine() -> str:
    import grpc as grpc_module
    import tokenizers

    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores | Python {platform.python_version()} | "
            f"grpcio {grpc_module.__version__} | tokenizers {tokenizers.__version__} | no GPU used")


def build_requests(docs: int, count: int, texts: list[str], queries: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for n in range(count):
        start = (n * 37) % len(texts)
        window = [texts[(start + i) % len(texts)] for i in range(docs)]
        out.append((queries[n % len(queries)], window))
    return out


def tokenizer_times(model_dir: str, requests, max_length: int) -> list[float]:
    """Seconds the tokenizer alone takes per request to turn its pairs into truncated model inputs."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(max_length, strategy="only_second")
    tokenizer.no_padding()
    times = []
    for query, docs in requests:
        t0 = time.perf_counter()
        tokenizer.encode_batch([(query, d) for d in docs])
        times.append(time.perf_counter() - t0)
    return times


def sidecar_run(address: str, requests, clients: int) -> tuple[list[float], float]:
    """Sends each request once from `clients` threads; returns (per-request seconds, wall seconds)."""
    bodies = [pb.RerankRequest(query=q, documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(docs)],
                               top_n=10).SerializeToString() for q, docs in requests]
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(RERANK, request_serializer=None, response_deserializer=None)  # raw bytes

    def one(body: bytes) -> float:
        t0 = time.perf_counter()
        call(body, timeout=120)
        return time.perf_counter() - t0

    for body in bodies[:3]:
        one(body)  # warm the channel
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, bodies))
    wall = time.perf_counter() - started
    channel.close()
    return latencies, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, nargs="+", default=[20, 100], help="documents per request")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--pairs", type=int, default=4000, help="pairs sent per (docs, clients) cell")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)

    sample = load_sample()
    texts = [doc.full_text() for doc in sample.documents.values()]
    queries = list(sample.queries.values())
    extra = ["--max-batch-pairs", "128", "--log-level", "WARNING"]
    if "cache_bytes" in SidecarConfig.model_fields:
        extra += ["--cache-bytes", "0"]  # every request pays the whole path
    print(f"machine: {machine()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_model(os.path.join(tmp, "tiny"), arch="tiny", max_length=args.max_length))
        with null_sidecar_process({"null": model_dir}, extra_args=extra) as sidecar:
            for docs in args.docs:
                for clients in args.clients:
                    requests = build_requests(docs, max(args.pairs // docs, clients * 4), texts, queries)
                    tok = tokenizer_times(model_dir, requests, args.max_length)
                    latencies, wall = sidecar_run(sidecar.address, requests, clients)
                    tok2 = tokenizer_times(model_dir, requests, args.max_length)  # before and after: fair to drift
                    tok_total = (sum(tok) + sum(tok2)) / 2
                    pairs = docs * len(requests)
                    tok_rate = pairs / tok_total
                    tok_p50 = statistics.median(tok + tok2)
                    rate = pairs / wall
                    rows.append((docs, clients, len(requests), tok_rate, tok_p50 * 1000, rate,
                                 statistics.median(latencies) * 1000, rate / tok_rate,
                                 statistics.median(latencies) / tok_p50))
                    print(f"  docs={docs} clients={clients}: {rate:,.0f} pairs/s", file=sys.stderr, flush=True)
    header = ("docs/request", "clients", "requests", "tokenizer pairs/s", "tokenizer ms/request",
              "sidecar pairs/s", "sidecar p50 ms", "sidecar/tokenizer rate", "p50 / tokenizer time")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for d, c, n, tr, tp, r, p, ratio, lat in rows:
        print(f"| {d} | {c} | {n} | {tr:,.0f} | {tp:.1f} | {r:,.0f} | {p:.1f} | {ratio:.0%} | {lat:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
