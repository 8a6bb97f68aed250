"""The GPU serving path measured in one command, as issue 26 asks: one table, one machine line.

    .venv/bin/python bench/gpu.py            # on a CUDA machine: budgeted for < 5 minutes on an H100/H200
    .venv/bin/python bench/gpu.py --smoke    # anywhere, tiny sizes: checks that it runs (figures mean nothing)

Rows: the GPU's bf16 matmul peak (N^3, CUDA-event timed); the model alone (eager, sdpa, full-length rows,
random ids; bf16 and fp8) for the bge-reranker-v2-m3 shape (XLM-R large, 512 tokens) and the
ms-marco-MiniLM-L6 shape (256 tokens) at batch 32/64/128; then, per shape, sentence-transformers'
CrossEncoder.predict(batch_size=32) against a real `rescore-sidecar serve` process (bf16 and fp8
models in one process; 1 and 8 gRPC clients; 100- and 20-document requests; mixed 50-500-token
documents; the CUDA batch budget at 16k/32k/64k tokens). Every system runs each row's requests
once untimed first (every request shape seen before timing); `reqs` is how many timed requests a
figure rests on. "% peak" = useful FLOPs (each pair's real tokens) per second over the measured
matmul peak. Models have random weights (no model hub): speed does not depend on them, and the
fp8-vs-bf16 Spearman column is rank agreement on these weights only. Texts: Cranfield when found
(--data), else generated words. The last lines check the issue's targets.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import pathlib
import random
import statistics
import sys
import tempfile
import time

import grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.seeded_models import ARCHITECTURES, SMOKE_SIZES, build_model
from rescore_sidecar.tools.sidecar_process import SidecarProcess

from sidecar_throughput import DEFAULT_DATA, Baseline, cranfield_texts, machine, percentile  # noqa: E402 (bench/)

WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling cylinder "
         "laminar turbulent jet nozzle slender body hypersonic viscous theory experiment results method").split()
# name -> (seeded architecture, document tokens (min, max), model-alone row length)
SHAPES = {"bge-m3": ("xlmr-large", (480, 510), 512), "minilm": ("minilm-l6-h384", (150, 200), 256)}
MIXED = (50, 500)


def flops_per_pair(params: dict, tokens: float) -> float:
    """Matmul FLOPs of one encoder pass over `tokens` tokens (projections, FFN, attention scores)."""
    d, f, layers = params["hidden_size"], params["intermediate_size"], params["num_hidden_layers"]
    return layers * tokens * (8 * d * d + 4 * d * f + 4 * tokens * d)


def matmul_peak(torch, device, n: int, iters: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(torch, device)
    started = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(torch, device)
    return 2 * n ** 3 * iters / (time.perf_counter() - started)


def sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(torch, device, model_dir, tokens: int, batches, fp8: bool, seconds: float) -> dict[int, float]:
    """pairs/s of the bare model (eager, sdpa) on full-length rows, per batch size."""
    from transformers import AutoModelForSequenceClassification

    from rescore_sidecar.sidecar.backends.fp8 import convert_linears

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.bfloat16)
    if fp8:
        convert_linears(model)
    model = model.to(device).eval()
    out = {}
    with torch.inference_mode():
        for batch in batches:
            ids = torch.randint(5, 1000, (batch, tokens), device=device)
            mask = torch.ones_like(ids)
            for _ in range(2):
                model(input_ids=ids, attention_mask=mask)
            sync(torch, device)
            runs, started = 0, time.perf_counter()
            while runs < 3 or time.perf_counter() - started < seconds:
                model(input_ids=ids, attention_mask=mask)
                runs += 1
                if runs % 4 == 0:
                    sync(torch, device)
            sync(torch, device)
            out[batch] = batch * runs / (time.perf_counter() - started)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def documents(tokenizer, texts: list[str], lo: int, hi: int, count: int, seed: int) -> list[str]:
    """`count` documents of lo..hi tokens (uniform), cut from one token stream of the texts."""
    rng = random.Random(seed)
    stream = tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"]
    docs, pos = [], 0
    for _ in range(count):
        length = rng.randint(lo, hi)
        if pos + length > len(stream):
            pos = 0
        docs.append(tokenizer.decode(stream[pos:pos + length]))
        pos += length
    return docs


class Client:
    """`clients` concurrent gRPC clients calling one model of a sidecar; keeps the raw scores."""

    def __init__(self, address: str, model: str, clients: int) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub, self.model, self.clients = rescore_pb2_grpc.RerankerStub(self.channel), model, clients
        self.scores: list[list[float]] = []

    def _call(self, item) -> tuple[float, list[float]]:
        query, docs = item
        request = pb.RerankRequest(query=query, model=self.model, score_mode=pb.SCORE_MODE_RAW,
                                   documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(docs)])
        started = time.perf_counter()
        reply = self.stub.Rerank(request, timeout=600)
        by_index = {r.index: r.score for r in reply.results}
        return time.perf_counter() - started, [by_index[i] for i in range(len(docs))]

    def run(self, requests) -> tuple[list[float], float]:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(self.clients) as pool:
            done = list(pool.map(self._call, requests))
        self.scores = [scores for _, scores in done]
        return [latency for latency, _ in done], time.perf_counter() - started


def measure(system, requests, warm: int) -> tuple[float, float, float, int]:
    """(pairs/s, p50 ms, p99 ms, timed requests) after running `warm` requests untimed."""
    system.run(requests[:warm])
    latencies, wall = system.run(requests)
    pairs = sum(len(docs) for _, docs in requests)
    return pairs / wall, statistics.median(latencies) * 1e3, percentile(latencies, 99) * 1e3, len(requests)


def spearman_median(a: list[list[float]], b: list[list[float]]) -> float:
    from scipy.stats import spearmanr

    return statistics.median(float(spearmanr(x, y).statistic) for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (CPU): checks it runs")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--requests", type=int, default=16, help="timed 100-document requests per row (x2 for 20)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--no-sweep", action="store_true", help="skip the 16k/32k batch-budget rows")
    parser.add_argument("--profile", type=pathlib.Path, default=None, metavar="DIR", help=(
        "after each shape's timed rows, one more bf16 sidecar with profile_dir=DIR/SHAPE serves the "
        "100-document requests at the most clients (untimed); its op table's top lines are printed"))
    args = parser.parse_args()

    import torch

    from rescore_sidecar.sidecar.backends.fp8 import unsupported_reason

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --smoke (CPU, tiny sizes)", file=sys.stderr)
        return 2
    small = args.smoke
    docs_big, docs_small = (8, 4) if small else (100, 20)
    batches = (2, 4) if small else (32, 64, 128)
    budgets = [] if (small or args.no_sweep) else [16384, 32768]
    fp8_refused = unsupported_reason(device)
    texts = (cranfield_texts(args.data)[0] if (args.data / "cran.all.1400").exists()
             else [" ".join(random.Random(i).choice(WORDS) for _ in range(300)) for i in range(200)])
    queries = [" ".join(random.Random(-i).choice(WORDS) for _ in range(6)) for i in range(64)]
    profiles: list[pathlib.Path] = []
    rows: list[tuple] = []  # (section, workload, system, clients, docs, pairs/s, p50, p99, reqs, note)
    started = time.perf_counter()

    peak = matmul_peak(torch, device, 512 if small else 8192, 5 if small else 50)
    rows.append(("peak", f"bf16 matmul {512 if small else 8192}^3", "torch", "", "", "", "", "", "",
                 f"{peak / 1e12:.3g} TFLOP/s"))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for shape in args.shapes:
            arch, (lo, hi), alone_tokens = SHAPES[shape]
            params = {**ARCHITECTURES[arch], **(SMOKE_SIZES if small else {})}
            if small:
                lo, hi, alone_tokens = 40, 60, 64
            model_dir = build_model(pathlib.Path(tmp) / shape, arch=arch, sizes=SMOKE_SIZES if small else None)
            for precision in ("bf16", "fp8"):
                if precision == "fp8" and fp8_refused:
                    rows.append(("alone", f"{shape} {alone_tokens} tok", "model alone fp8", "", "", "", "", "", "",
                                 f"refused: {fp8_refused[:60]}"))
                    continue
                for batch, rate in model_alone(torch, device, model_dir, alone_tokens, batches, precision == "fp8",
                                               0.3 if small else 2.0).items():
                    share = rate * flops_per_pair(params, alone_tokens) / peak
                    rows.append(("alone", f"{shape} {alone_tokens} tok", f"model alone {precision}", "", batch,
                                 rate, "", "", "", f"{share:.0%} peak"))

            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            pool = documents(tokenizer, texts, lo, hi, docs_big * args.requests, seed=1)
            mixed_range = (20, 120) if small else MIXED
            mixed = documents(tokenizer, texts, *mixed_range, docs_big * args.requests, seed=2)

            def requests(docs_per: int, source: list[str], count: int) -> list[tuple[str, list[str]]]:
                return [(queries[i % len(queries)], source[(i * docs_per) % (len(source) - docs_per + 1):][:docs_per])
                        for i in range(count)]

            big, short = requests(docs_big, pool, args.requests), requests(docs_small, pool, 2 * args.requests)
            mixed_requests = requests(docs_big, mixed, args.requests)
            tokens = statistics.mean(len(tokenizer(q, d)["input_ids"]) for q, ds in big for d in ds)
            flops = flops_per_pair(params, tokens)

            def add(workload, system, clients, docs, result, note=""):
                rate, p50, p99, count = result
                rows.append(("serve", f"{shape} {workload}", system, clients, docs, rate, p50, p99, count,
                             note or f"{rate * flops / peak:.0%} peak"))

            baseline = Baseline(model_dir, 32, str(device), "bfloat16")
            add(f"{lo}-{hi} tok", "CrossEncoder.predict(32) bf16", 1, docs_big, measure(baseline, big, 2))
            del baseline
            models = {"bf16": f"{model_dir},backend=torch,precision=bf16"}
            if not fp8_refused:
                models["fp8"] = f"{model_dir},backend=torch,precision=fp8"
            proc = SidecarProcess(models, extra_args=["--device", str(device), "--cache-bytes", "0"])
            proc.start(timeout=600)
            stack.callback(proc.close)
            bf16_scores: list[list[float]] = []
            for clients in args.clients:
                client = Client(proc.address, "bf16", clients)
                add(f"{lo}-{hi} tok", "sidecar bf16", clients, docs_big, measure(client, big, 2 * clients))
                bf16_scores = client.scores
                add(f"{lo}-{hi} tok", "sidecar bf16", clients, docs_small, measure(client, short, 2 * clients))
                add(f"mixed {mixed_range[0]}-{mixed_range[1]} tok", "sidecar bf16", clients, docs_big,
                    measure(client, mixed_requests, 2 * clients), note="mixed lengths")
            for clients in args.clients:
                if fp8_refused:
                    rows.append(("serve", f"{shape} {lo}-{hi} tok", "sidecar fp8", clients, docs_big, "", "", "", "",
                                 f"refused: {fp8_refused[:60]}"))
                    continue
                client = Client(proc.address, "fp8", clients)
                result = measure(client, big, 2 * clients)
                add(f"{lo}-{hi} tok", "sidecar fp8", clients, docs_big, result,
                    note=f"{result[0] * flops / peak:.0%} peak, Spearman vs bf16 "
                         f"{spearman_median(bf16_scores, client.scores):.3f}")
            proc.close()
            for budget in budgets if shape == "bge-m3" else []:
                sweep = SidecarProcess({"bf16": models["bf16"]}, extra_args=[
                    "--device", str(device), "--cache-bytes", "0", "--max-batch-tokens", str(budget)])
                sweep.start(timeout=600)
                stack.callback(sweep.close)
                clients = max(args.clients)
                add(f"{lo}-{hi} tok", f"sidecar bf16 max_batch_tokens={budget}", clients, docs_big,
                    measure(Client(sweep.address, "bf16", clients), big, 2 * clients))
                sweep.close()
            if args.profile:
                profiles.append(profile_shape(args.profile / shape, models["bf16"], device, big, max(args.clients),
                                              skip=1 if small else 4))

    print(f"\nmachine: {machine()}")
    print(f"run: {time.perf_counter() - started:.0f} s{' | --smoke: test sizes, figures mean nothing' if small else ''}"
          f" | texts: {'Cranfield' if (args.data / 'cran.all.1400').exists() else 'generated words'}\n")
    header = ["section", "workload", "system", "clients", "docs", "pairs/s", "p50 ms", "p99 ms", "reqs", "note"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [f"{c:.1f}" if isinstance(c, float) else str(c) for c in row]
        print("| " + " | ".join(cells) + " |")
    print()
    print("\n".join(target_lines(rows, peak, max(args.clients), min(args.clients), docs_big, docs_small)))
    for ops in profiles:
        print(f"\n{ops}:\n" + "\n".join(ops.read_text().splitlines()[:25]) if ops.exists() else f"\nmissing: {ops}")
    return 0


def profile_shape(directory: pathlib.Path, model: str, device, requests, clients: int, skip: int) -> pathlib.Path:
    """A sidecar with profile_dir serving `requests` twice at `clients` (the window opens after `skip`
    batches); returns its op table (written once 20 batches filled the window, or at shutdown)."""
    proc = SidecarProcess({"bf16": model}, extra_args=[
        "--device", str(device), "--cache-bytes", "0", "--profile-dir", str(directory),
        "--profile-skip-batches", str(skip), "--profile-batches", "20"])
    proc.start(timeout=600)
    try:
        client = Client(proc.address, "bf16", clients)
        for _ in range(2):
            client.run(requests)
    finally:
        proc.close()
    return directory / "bf16.ops.txt"


def target_lines(rows, peak, many: int, one: int, docs_big: int, docs_small: int) -> list[str]:
    """Issue 26's targets, from this run's rows."""
    def find(shape, system, clients, docs):  # the shape's own document lengths, not the mixed ones
        for row in rows:
            if row[0] == "serve" and row[1].startswith(shape + " ") and "mixed" not in row[1] and row[2] == system \
                    and row[3] == clients and row[4] == docs and isinstance(row[5], float):
                return row
        return None

    lines = []
    bge_many = find("bge-m3", "sidecar bf16", many, docs_big)
    if bge_many:
        lines.append(f"bge-m3 shape, {many} clients: {bge_many[9]} (target >= 70% of the matmul peak)")
    mini_many, mini_one = find("minilm", "sidecar bf16", many, docs_big), find("minilm", "sidecar bf16", one,
                                                                                  docs_big)
    if mini_many and mini_one:
        lines.append(f"MiniLM shape: {mini_many[5]:.0f} pairs/s at {many} clients (target >= 8000), "
                     f"{mini_one[5]:.0f} at {one} ({'not ' if mini_many[5] < mini_one[5] else ''}>= 1 client's)")
    bge_short = find("bge-m3", "sidecar bf16", one, docs_small)
    if bge_short:
        lines.append(f"bge-m3 shape, {docs_small}-document request at {one} client: p50 {bge_short[6]:.1f} ms "
                     "(target <= 20 ms)")
    bge_fp8 = find("bge-m3", "sidecar fp8", many, docs_big)
    if bge_fp8 and bge_many:
        lines.append(f"fp8 / bf16, bge-m3 shape, {many} clients: {bge_fp8[5] / bge_many[5]:.2f}x (target >= 1.5x, "
                     f"Spearman median >= 0.99: {bge_fp8[9].rsplit(' ', 1)[-1]})")
    return lines


if __name__ == "__main__":
    sys.exit(main())
