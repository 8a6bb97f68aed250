"""Sidecar throughput vs. sentence-transformers' CrossEncoder.predict, side by side in one run.

Workload: requests of 100 Cranfield abstracts (~150-200 tokens each) with Cranfield
queries, on a cross-encoder of the MiniLM-L6-H384 shape (cross-encoder/ms-marco-MiniLM-L6-v2;
random weights, since no model hub is reachable; speed does not depend on the weights).

    make bench                                    # = .venv/bin/python bench/sidecar_throughput.py (CPU)
    .venv/bin/python bench/sidecar_throughput.py --device cuda --arch xlmr-large --configs torch:bf16 \\
        --baseline-dtype bfloat16 --doc-tokens 480 510          # GPU, bge-reranker-v2-m3 shape, ~512-token pairs

Rows: the baseline (CrossEncoder.predict(batch_size=32), one request at a time, in this
process) and the sidecar (a real `rescore-sidecar serve` process per dtype, N concurrent
gRPC clients), then the peers (--peers, bench/peers/): sentence-transformers' CrossEncoder
on OpenVINO (its default precision), ONNX Runtime dynamic int8 and OpenVINO static int8, one
request at a time like the baseline, each in a worker process; and an infinity-emb server
(torch engine) with N concurrent clients on /rerank. The peers run from their own cached venvs
(~/.cache/rescore-sidecar/bench-peers/, built on first use from bench/peers/requirements-*.txt),
never from .venv, whose versions they clash with; a peer that fails to build or load is skipped.

The systems take turns within each round, so background load hits them alike; "vs baseline" is
the median over rounds of the per-round throughput ratio. pairs/s = documents scored per second
of wall time; latency is per request. The last lines compare the sidecar with the issue's targets.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
import grpc  # noqa: E402

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb  # noqa: E402
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc  # noqa: E402
from rescore_sidecar.tools.seeded_models import SMOKE_SIZES, build_model  # noqa: E402
from rescore_sidecar.tools.sidecar_process import SidecarProcess  # noqa: E402

from peers.report import round_ratio, target_lines  # noqa: E402  (bench/peers/, beside this file)
from peers.systems import PEERS, PeerError, start_peer  # noqa: E402

DEFAULT_DATA = next((p for p in (ROOT.parent / "shared" / "data" / "cranfield", pathlib.Path("/work/shared/data/cranfield"))
                     if p.is_dir()), ROOT.parent / "shared" / "data" / "cranfield")


def cranfield_texts(data_dir: pathlib.Path) -> tuple[list[str], list[str]]:
    """(abstracts, queries) from the raw Cranfield files."""
    def records(path: pathlib.Path) -> list[str]:
        out, current, in_text = [], [], False
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(".I"):
                if current:
                    out.append(" ".join(current))
                current, in_text = [], False
            elif line.startswith("."):
                in_text = line.startswith(".W")
            elif in_text:
                current.append(line.strip())
        if current:
            out.append(" ".join(current))
        return out

    return records(data_dir / "cran.all.1400"), records(data_dir / "cran.qry")


def fit_documents(texts: list[str], tokenizer, lo: int, hi: int, count: int) -> list[str]:
    """Documents of lo..hi tokens: abstracts in range, longer ones cut, short ones joined."""
    docs, carry = [], ""
    for text in texts:
        text = (carry + " " + text).strip()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < lo:
            carry = text
            continue
        carry = ""
        docs.append(tokenizer.decode(ids[:hi]))
        if len(docs) == count:
            break
    return docs


class Baseline:
    """sentence-transformers' CrossEncoder.predict, one request at a time, in this process."""

    def __init__(self, model_dir, batch_size: int, device: str, dtype: str) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self.encoder = CrossEncoder(str(model_dir), device=device, num_labels=1,
                                    model_kwargs={"dtype": getattr(torch, dtype)})
        self.batch_size = batch_size

    def run(self, requests) -> tuple[list[float], float]:
        latencies = []
        started = time.perf_counter()
        for query, docs in requests:
            t0 = time.perf_counter()
            self.encoder.predict([(query, d) for d in docs], batch_size=self.batch_size, show_progress_bar=False)
            latencies.append(time.perf_counter() - t0)
        return latencies, time.perf_counter() - started


class SidecarClients:
    """`clients` concurrent gRPC clients against a running sidecar."""

    def __init__(self, address: str, clients: int) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub = rescore_pb2_grpc.RerankerStub(self.channel)
        self.clients = clients

    def _call(self, item) -> float:
        query, docs = item
        request = pb.RerankRequest(query=query, documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(docs)])
        t0 = time.perf_counter()
        self.stub.Rerank(request, timeout=600)
        return time.perf_counter() - t0

    def run(self, requests) -> tuple[list[float], float]:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(self.clients) as pool:
            latencies = list(pool.map(self._call, requests))
        return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def machine() -> str:
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores | GPU: {gpu} | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--arch", default="minilm-l6-h384")
    parser.add_argument("--smoke", action="store_true",
                        help="the --arch model type, tokenizer and vocabulary at test size (2 layers of 32): "
                             "checks that a command runs, e.g. the GPU one on a CPU; its figures mean nothing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+",
                        default=["torch:fp32", "torch:bf16", "openvino:fp32", "openvino:bf16", "openvino:int8"],
                        help="sidecar backend:precision configurations to measure (one process each)")
    parser.add_argument("--baseline-dtype", default="float32")
    parser.add_argument("--requests", type=int, default=8, help="requests per system per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; systems take turns within a round")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--doc-tokens", type=int, nargs=2, default=[150, 200], metavar=("MIN", "MAX"))
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--baseline-batch", type=int, default=32)
    parser.add_argument("--sidecar-args", default="", help="extra flags for `serve`, e.g. '--max-batch-tokens 8192'")
    parser.add_argument("--peers", nargs="+", choices=[*PEERS, "none"],
                        help="peer systems to measure beside the sidecar (default: all on CPU, none on "
                             "another device: the peers run on CPU); 'none' skips them")
    parser.add_argument("--no-peers", action="store_const", const=["none"], dest="peers", help="= --peers none")
    parser.add_argument("--peers-python", default=None,
                        help="interpreter that makes the peer venvs (default: the one .venv was made from)")
    args = parser.parse_args()
    if args.peers is None:
        args.peers = list(PEERS) if args.device == "cpu" else ["none"]
    peer_names = [] if "none" in args.peers else list(dict.fromkeys(args.peers))
    if not (args.data / "cran.all.1400").exists():
        print(f"Cranfield data not found under {args.data} (pass --data)", file=sys.stderr)
        return 2

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model_dir = build_model(pathlib.Path(tmp) / "model", arch=args.arch, sizes=SMOKE_SIZES if args.smoke else None)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        abstracts, queries = cranfield_texts(args.data)
        docs = fit_documents(abstracts, tokenizer, args.doc_tokens[0], args.doc_tokens[1], 1400)
        requests = []
        for r in range(args.requests):
            start = (r * args.docs) % max(len(docs) - args.docs, 1)
            requests.append((queries[r % len(queries)], docs[start:start + args.docs]))
        lengths = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for _, ds in requests for d in ds]

        systems: dict[tuple[str, str, int], object] = {
            (f"CrossEncoder.predict(batch_size={args.baseline_batch})", args.baseline_dtype, 1):
                Baseline(model_dir, args.baseline_batch, args.device, args.baseline_dtype)}
        artefacts = pathlib.Path(tmp) / "artefacts"
        for config in args.configs:
            backend, _, precision = config.partition(":")
            # Score cache off: throughput on distinct pairs (rounds repeat the same requests).
            proc = SidecarProcess({"bench": f"{model_dir},backend={backend},precision={precision}"},
                                  extra_args=["--device", args.device, "--cache-bytes", "0",
                                              "--model-cache-dir", str(artefacts), *args.sidecar_args.split()])
            proc.start(timeout=600)
            stack.callback(proc.close)
            systems[(f"rescore-sidecar {backend}", precision, args.clients)] = SidecarClients(proc.address, args.clients)
            systems[(f"rescore-sidecar {backend}", precision, 1)] = SidecarClients(proc.address, 1)
        # Peers calibrate (static int8) on pairs from the bench's own documents, the end of the pool.
        calibration = [(queries[-1 - i % len(queries)], docs[-1 - i]) for i in range(min(64, len(docs)))]
        peer_versions: dict[str, dict[str, str]] = {}  # per peer venv
        for name in peer_names:
            try:
                peer, precision, clients, found = start_peer(
                    name, model_dir, pathlib.Path(tmp) / "peers", batch_size=args.baseline_batch,
                    clients=args.clients, calibration=calibration, python=args.peers_python)
            except PeerError as exc:
                print(f"peer {name}: skipped, {exc}", file=sys.stderr, flush=True)
                continue
            stack.callback(peer.close)
            systems[(PEERS[name].label, precision, clients)] = peer
            peer_versions.setdefault(PEERS[name].requirements.stem.removeprefix("requirements-"), {}).update(found)
        for key, system in list(systems.items()):  # warm-up
            try:
                system.run(requests[:1])
            except PeerError as exc:
                print(f"peer {key[0]}: skipped, warm-up failed: {exc}", file=sys.stderr, flush=True)
                del systems[key]

        latencies = {key: [] for key in systems}
        walls = {key: [] for key in systems}
        for _ in range(args.rounds):  # take turns, so load from elsewhere hits every system alike
            for key, system in list(systems.items()):
                try:
                    lat, wall = system.run(requests)
                except PeerError as exc:  # only peers raise it: drop that one, keep the run
                    print(f"peer {key[0]}: dropped, {exc}", file=sys.stderr, flush=True)
                    del systems[key], latencies[key], walls[key]
                    continue
                latencies[key] += lat
                walls[key].append(wall)

    pairs_per_round = sum(len(d) for _, d in requests)
    base_key = next(iter(systems))
    print(f"\nmachine: {machine()}")
    if peer_versions:  # the peers' own venvs, not .venv
        print("peers (own venvs, bench/peers/requirements-*.txt): " + " | ".join(
            f"{venv}: " + ", ".join(f"{p} {v}" for p, v in sorted(found.items()))
            for venv, found in peer_versions.items()))
    print(f"model: {args.arch}{' (--smoke: test size)' if args.smoke else ''} cross-encoder (random weights) | {args.rounds} rounds x {args.requests} requests x "
          f"{args.docs} docs | document tokens min/median/max {min(lengths)}/{int(statistics.median(lengths))}/"
          f"{max(lengths)}\n")
    header = (f"| {'system':<36} | {'dtype':<8} | clients | pairs/s | vs baseline (median of rounds) "
              f"| p50 ms | p99 ms |")
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for key in systems:
        name, dtype, clients = key
        rate = pairs_per_round * len(walls[key]) / sum(walls[key])
        ratio = round_ratio(walls, key, base_key)
        print(f"| {name:<36} | {dtype:<8} | {clients:>7} | {rate:>7.1f} | {ratio:>29.2f}x "
              f"| {statistics.median(latencies[key]) * 1000:>6.0f} | {percentile(latencies[key], 99) * 1000:>6.0f} |")
    print()
    print("\n".join(target_lines(walls, pairs_per_round, base_key)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
