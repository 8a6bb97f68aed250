"""Overload ramp (chaos phase `overload_ramp`): the search rate rises stepwise past what one sidecar
serves at the full window; each step runs with the brownout window off (fixed window) and on, in the
same run against the same sidecar. Per step and mode: searches reranked (any window), mean window,
fallbacks, searches the brownout turned off, p50/p99 search latency.

    .venv/bin/python bench/overload_ramp.py                         # rates 2,4,8,16/s, 10 s a step
    .venv/bin/python bench/overload_ramp.py --rates 4,8,16,32 --step-s 20 --model PATH
    .venv/bin/python bench/chaos.py --phases overload_ramp           # the same, from the chaos harness

The engine is an in-process function answering at once (`--engine-ms` adds a delay) with 50 hits of
the bundled Cranfield sample (real passage lengths), so the table isolates the sidecar path: "p99 within
the budget plus engine time" reads as p99 <= budget + engine ms + scheduling slack. Load is open-loop
(a search starts every 1/rate s whether or not earlier ones finished), through the async connector.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Any, Sequence

from rescore_sidecar.connectors import (AsyncRescorer, BreakerConfig, ConnectorConfig, RerankOptions,
                                        SidecarClientConfig)
from rescore_sidecar.tools.sidecar_process import SidecarProcess

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import load_corpus, machine, percentile  # noqa: E402

MODES = ("fixed", "adaptive")


@dataclasses.dataclass(frozen=True)
class RampSettings:
    rates: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)  # searches per second, one step each
    step_s: float = 10.0
    window: int = 50
    budget_ms: float = 250.0
    engine_ms: float = 0.0
    model: str | None = None  # sidecar model directory; None = a seeded tiny cross-encoder
    torch_threads: int = 1
    breaker: tuple[tuple[str, Any], ...] = ()  # BreakerConfig overrides (default: the production defaults)


@dataclasses.dataclass
class StepRow:
    rate: float
    mode: str
    sent: int
    reranked: int
    mean_window: float  # over reranked searches
    fallbacks: dict[str, int]
    off: int  # brownout turned reranking off (engine order)
    failed: int  # exceptions: a search failed
    p50_ms: float
    p99_ms: float
    windows: dict[int, int]  # window used -> searches (reranked ones)


class Engine:
    """Hits for a query: 50 Cranfield passages, chosen by the query's hash, descending scores."""

    def __init__(self, docs: list[dict], delay_s: float):
        self.docs, self.delay_s = docs, delay_s

    async def __call__(self, body: dict, params: dict) -> dict:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = body["query"]["match"]["text"]
        start = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % len(self.docs)
        size = body.get("size", 10)
        hits = [{"_index": "ramp", "_id": str(i), "_score": 30.0 - i * 0.4,
                 "_source": {"text": self.docs[(start + i) % len(self.docs)]["text"]}} for i in range(size)]
        return {"took": 1, "hits": {"total": {"value": size, "relation": "eq"}, "max_score": 30.0, "hits": hits}}


async def run_step(rescorer: AsyncRescorer, engine: Engine, queries: list[str], rate: float, seconds: float,
                   mode: str, first: int) -> StepRow:
    marks: list[tuple[dict | None, float]] = []

    async def one(query: str) -> None:
        sent = time.monotonic()
        try:
            out = await rescorer.search(engine, {"query": {"match": {"text": query}}, "size": 10}, {})
            marks.append((out["_rescore"], (time.monotonic() - sent) * 1000))
        except Exception:  # noqa: BLE001 - counted as failed
            marks.append((None, (time.monotonic() - sent) * 1000))

    tasks, start, n = [], time.monotonic(), 0
    while time.monotonic() - start < seconds:
        tasks.append(asyncio.create_task(one(queries[(first + n) % len(queries)])))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    ok = [m for m, _ in marks if m is not None]
    reranked = [m for m in ok if m["reranked"]]
    fallbacks: dict[str, int] = {}
    for m in ok:
        if m["fallback"]:
            fallbacks[m["fallback"]] = fallbacks.get(m["fallback"], 0) + 1
    windows: dict[int, int] = {}
    for m in reranked:
        windows[m["window"]] = windows.get(m["window"], 0) + 1
    latencies = [ms for _, ms in marks]
    return StepRow(rate, mode, len(marks), len(reranked),
                   sum(m["window"] for m in reranked) / len(reranked) if reranked else 0.0, fallbacks,
                   sum(m["skipped"] == "brownout" for m in ok), len(marks) - len(ok),
                   percentile(latencies, 50), percentile(latencies, 99), windows)


async def ramp(settings: RampSettings, address: str, docs: list[dict], queries: list[str]) -> list[StepRow]:
    engine = Engine(docs, settings.engine_ms / 1000)
    rows: list[StepRow] = []
    for mode in MODES:
        config = ConnectorConfig(default=RerankOptions(window=settings.window, adaptive=mode == "adaptive"),
                                 sidecar=SidecarClientConfig(targets=(address,), budget_ms=settings.budget_ms,
                                                             breaker=BreakerConfig(**dict(settings.breaker))))
        async with AsyncRescorer(config) as rescorer:
            for k, rate in enumerate(settings.rates):
                rows.append(await run_step(rescorer, engine, queries, rate, settings.step_s, mode, k * 1000))
                print(f"[{time.strftime('%H:%M:%S')}] {mode} {rate:g}/s: {rows[-1].reranked}/{rows[-1].sent} "
                      f"reranked", file=sys.stderr, flush=True)
        await asyncio.sleep(2.0)  # let the sidecar's queue drain between modes
    return rows


def run_ramp(settings: RampSettings) -> list[StepRow]:
    import tempfile

    docs, queries = load_corpus()
    with tempfile.TemporaryDirectory(prefix="ramp-") as tmp:
        model = settings.model
        if model is None:
            from rescore_sidecar.tools.seeded_models import build_model

            model = str(build_model(os.path.join(tmp, "tiny-ce"), kind="cross-encoder", arch="tiny", seed=0))
        proc = SidecarProcess({"m": model}, extra_args=["--torch-threads", str(settings.torch_threads),
                                                        "--log-level", "WARNING"])
        proc.start()
        try:
            return asyncio.run(ramp(settings, proc.address, docs, queries))
        finally:
            proc.close()


def table(rows: Sequence[StepRow]) -> str:
    head = ("rate/s", "mode", "sent", "reranked", "reranked %", "mean window", "windows", "fallbacks", "off",
            "failed", "p50 ms", "p99 ms")
    body = [(f"{r.rate:g}", r.mode, str(r.sent), str(r.reranked), f"{100 * r.reranked / max(r.sent, 1):.0f}",
             f"{r.mean_window:.1f}", " ".join(f"{w}:{c}" for w, c in sorted(r.windows.items(), reverse=True)) or "-",
             " ".join(f"{k}={v}" for k, v in sorted(r.fallbacks.items())) or "-", str(r.off), str(r.failed),
             f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}") for r in sorted(rows, key=lambda r: (r.rate, r.mode))]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c.ljust(w) for c, w in zip(b, widths)) + " |" for b in body])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = RampSettings()
    p.add_argument("--rates", default=",".join(f"{r:g}" for r in d.rates), help="searches/s per step")
    p.add_argument("--step-s", type=float, default=d.step_s)
    p.add_argument("--window", type=int, default=d.window)
    p.add_argument("--budget-ms", type=float, default=d.budget_ms)
    p.add_argument("--engine-ms", type=float, default=d.engine_ms)
    p.add_argument("--model", default=None, help="sidecar model directory (default: seeded tiny cross-encoder)")
    p.add_argument("--torch-threads", type=int, default=d.torch_threads)
    p.add_argument("--breaker", default="{}", help='BreakerConfig overrides as JSON, e.g. {"minimum_calls": 1000}')
    return p


def settings_from(args: argparse.Namespace) -> RampSettings:
    return RampSettings(rates=tuple(float(r) for r in args.rates.split(",") if r.strip()), step_s=args.step_s,
                        window=args.window, budget_ms=args.budget_ms, engine_ms=args.engine_ms, model=args.model,
                        torch_threads=args.torch_threads, breaker=tuple(json.loads(args.breaker).items()))


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from(build_parser().parse_args(argv))
    started, load = time.time(), os.getloadavg()[0]
    rows = run_ramp(settings)
    print(f"machine: {machine()}; 1-min load average at the start: {load:.1f} (shared machine)")
    print(f"run: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {time.time() - started:.0f}s; "
          f"window {settings.window}, budget {settings.budget_ms:g} ms, engine {settings.engine_ms:g} ms, "
          f"{settings.step_s:g} s per step and mode, model {settings.model or 'seeded tiny cross-encoder'}, "
          f"torch threads {settings.torch_threads}, breaker {dict(settings.breaker) or 'defaults'}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
