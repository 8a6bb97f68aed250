"""Chaos / soak harness: searches under load through the Python connector and the proxy while
faults hit the sidecar and the engine; one table row per phase and path.

    .venv/bin/python bench/chaos.py                       # every phase, 20 s each (about 3 minutes)
    .venv/bin/python bench/chaos.py --duration 300        # soak: 5 minutes per phase
    .venv/bin/python bench/chaos.py --phases sigkill,sigstop --rate 40 --clients 8

Everything is real: an OpenSearch node (rescore_sidecar.tools.localnode, started here), sidecar processes
(`python -m rescore_sidecar.tools serve`, a seeded tiny cross-encoder unless --model), a proxy process per
phase, and asyncio search clients at a fixed rate per client (latency measured from the send;
a client that falls behind does not burst to catch up). Phases, each with its own fault:

    baseline       no fault
    sigkill        sidecar SIGKILLed, then restarted on the same port
    sigstop        sidecar SIGSTOPped for longer than the deadline budget, then SIGCONT
    overload       sidecar queue full (started with a small --max-queue-pairs, flooded directly)
    drain          one of two replicas SIGTERMed (drains), a replacement started on its port
    replica_dies   one of two replicas SIGKILLed while the clients balance over both
    replica_stalls three replicas on 127.0.0.1/2/3 sharing a port behind one target
                   (ipv4:a:p,b:p,c:p); one SIGSTOPped for half the phase, then SIGCONT
    engine_restart the engine node restarted (searches may fail: counted as engine failures)
    overload_ramp  (only with --phases) the rate rises stepwise past one sidecar's capacity, brownout
                   window off vs on: bench/overload_ramp.py, its own table (--duration = seconds a step)

Goals checked per phase: no search fails that would have succeeded without rescoring
(`failed` = 0; `engine_failed` = 0 outside engine_restart); the time rescoring adds to a search
(`_rescore.took_ms`) stays within the budget + --slack-ms + the worst scheduling delay measured
in the process that ran it (the harness's event-loop lag for the in-process connector, the round
trip of the proxy's no-op health endpoint for the proxy: a starved process is late whatever the
sidecar does); reranking is back within
breaker open_seconds + 5 s after the fault ends. Exit status 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import json
import os
import pathlib
import platform
import re
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Sequence

import grpc  # noqa: E402
import httpx  # noqa: E402

from rescore_sidecar.connectors import metrics as connector_metrics  # noqa: E402
from rescore_sidecar.connectors.config import BreakerConfig, ConnectorConfig, RerankOptions, SidecarClientConfig  # noqa: E402
from rescore_sidecar.tools.localnode import LocalNode, restart_node, start_node  # noqa: E402
from rescore_sidecar.connectors.wrappers import RescoringOpenSearch  # noqa: E402
from rescore_sidecar.connectors._async.wrappers import AsyncRescoringOpenSearch  # noqa: E402
from rescore_sidecar.proto.rescore.v1 import rescore_pb2, rescore_pb2_grpc  # noqa: E402
from rescore_sidecar.tools.proxy_process import ProxyProcess  # noqa: E402
from rescore_sidecar.tools.sidecar_process import SidecarProcess  # noqa: E402
from rescore_sidecar.tools.eval.sample import SAMPLE_DIR as SAMPLE  # noqa: E402

PHASES = ("baseline", "sigkill", "sigstop", "overload", "drain", "replica_dies", "replica_stalls", "engine_restart")
# Run only when asked for (--phases): their own table (bench/overload_ramp.py), not in the default run.
EXTRA_PHASES = ("overload_ramp",)
REPLICAS = ("r1", "r2", "r3")  # replica_stalls: hosts 127.0.0.1/2/3, one port
# replica_stalls goal: the stalled replica costs at most a few searches (the calls before it is
# ejected, then one probe per ejection), and the breaker never turns reranking off.
STALL_MAX_FALLBACKS = 10
INDEX = "chaos"


@dataclasses.dataclass(frozen=True)
class ChaosSettings:
    phases: tuple[str, ...] = PHASES
    duration: float = 20.0  # seconds of load per phase (a phase runs longer while waiting to recover)
    # Sized for a 2-core machine: one sidecar scores ~13 searches of 20 hits/s there (tiny model,
    # Cranfield texts), so 2 x 5 searches/s of 10 hits leaves headroom outside the faults.
    rate: float = 5.0  # searches per second per path (connector, proxy)
    clients: int = 2  # concurrent search clients per path
    budget_ms: float = 250.0
    open_seconds: float = 5.0  # breaker open time; recovery goal = this + 5 s
    window: int = 10
    max_queue_pairs: int = 256  # every sidecar's queue; the overload phase floods past it
    drain_seconds: float = 3.0
    slack_ms: float = 100.0  # scheduling slack on top of the budget (2-core machines)
    model: str | None = None  # sidecar model directory; None = a seeded tiny cross-encoder
    engine_version: str | None = None
    # The in-process connector path: the asyncio wrapper, or the sync one called from threads.
    connector: str = "async"
    verbose: bool = True

    @property
    def recovery_goal_s(self) -> float:
        return self.open_seconds + 5.0


@dataclasses.dataclass
class Search:
    path: str
    sent: float  # monotonic
    latency_ms: float
    status: str  # reranked | fallback | skipped | engine_failed | failed
    reason: str = ""
    rescore_ms: float | None = None


@dataclasses.dataclass
class PathReport:
    phase: str
    path: str
    sent: int
    succeeded: int
    failed: int
    engine_failed: int
    reranked: int
    fallbacks: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    max_rescore_ms: float
    breaker_changes: dict[str, int]
    rss_start_mb: dict[str, float]
    rss_end_mb: dict[str, float]
    recovery_s: float | None  # None: reranking never came back
    fault_s: float  # how long the fault lasted
    failures: list[str]
    goals: dict[str, bool]
    # Worst scheduling delay: the harness's event-loop lag (connector rows), the round trip of
    # the proxy's no-op health endpoint (proxy rows).
    loop_lag_ms: float = 0.0
    fallback_details: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.goals.values())


# --------------------------------------------------------------------------- helpers

def rss_mb(pid: int | None) -> float:
    """Resident memory of a process from /proc (0 when gone)."""
    if not pid:
        return 0.0
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = f"{int(open('/proc/meminfo').readline().split()[1]) / 1024 / 1024:.0f} GiB"
    return (f"{platform.node()} {platform.machine()} {cpu} cpus={os.cpu_count()} mem={mem} "
            f"python={platform.python_version()} {platform.system()} {platform.release()}")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def load_corpus() -> tuple[list[dict], list[str]]:
    with gzip.open(SAMPLE / "corpus.jsonl.gz", "rt") as f:
        docs = [json.loads(line) for line in f]
    with gzip.open(SAMPLE / "queries.jsonl.gz", "rt") as f:
        queries = [json.loads(line)["text"] for line in f]
    return docs, queries


def index_corpus(node: LocalNode, docs: list[dict]) -> None:
    client = node.client()
    try:
        if client.indices.exists(index=INDEX):
            return
        ops: list[dict] = []
        for d in docs:
            ops += [{"index": {"_index": INDEX, "_id": d["id"]}}, {"title": d.get("title", ""), "text": d["text"]}]
        client.bulk(body=ops, refresh=True)
    finally:
        client.close()


def breaker_counts_local() -> dict[str, float]:
    """Breaker transitions of this process's connector (Prometheus counters), by state, and
    endpoint ejections (`ejections`)."""
    out: dict[str, float] = {}
    for metric in connector_metrics.BREAKER_TRANSITIONS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["state"]] = out.get(sample.labels["state"], 0) + sample.value
    for metric in connector_metrics.ENDPOINT_EJECTIONS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out["ejections"] = out.get("ejections", 0) + sample.value
    return out


def breaker_counts_proxy(proxy: ProxyProcess) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = httpx.get(proxy.url + "/_rescore/metrics", timeout=5).text
    except httpx.HTTPError:
        return out
    for match in re.finditer(r'rescore_connector_breaker_transitions_total\{[^}]*state="(\w+)"[^}]*\} ([\d.e+]+)',
                             text):
        out[match.group(1)] = out.get(match.group(1), 0) + float(match.group(2))
    for match in re.finditer(r'rescore_connector_endpoint_ejections_total\{[^}]*\} ([\d.e+]+)', text):
        out["ejections"] = out.get("ejections", 0) + float(match.group(1))
    return out


def diff_counts(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in sorted(after) if after.get(k, 0) > before.get(k, 0)}


# --------------------------------------------------------------------------- load

def search_body(query: str) -> dict:
    return {"query": {"match": {"text": query}}, "size": 10, "_source": ["title"]}


async def run_clients(one: Callable[[str], Awaitable[Search]], queries: list[str], settings: ChaosSettings,
                      stop: asyncio.Event, out: list[Search]) -> None:
    """`settings.clients` clients, each sending every clients/rate seconds until `stop`."""
    interval = settings.clients / settings.rate
    loop = asyncio.get_running_loop()

    async def client(i: int) -> None:
        next_at = loop.time() + interval * i / settings.clients
        n = i
        while not stop.is_set():
            wait = next_at - loop.time()
            if wait > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    break
            out.append(await one(queries[n % len(queries)]))
            n += settings.clients
            next_at = max(next_at + interval, loop.time())  # no catch-up bursts

    await asyncio.gather(*(client(i) for i in range(settings.clients)))


def connector_search(wrapper: Any) -> Callable[[str], Awaitable[Search]]:
    """Searches through the connector wrapper: awaited (async) or in a worker thread (sync)."""
    from opensearchpy.exceptions import TransportError

    is_async = isinstance(wrapper, AsyncRescoringOpenSearch)

    async def one(query: str) -> Search:
        sent = time.monotonic()
        try:
            if is_async:
                response = await wrapper.search(index=INDEX, body=search_body(query))
            else:
                response = await asyncio.to_thread(wrapper.search, index=INDEX, body=search_body(query))
        except TransportError as exc:  # ConnectionError, ConnectionTimeout and HTTP errors of the engine
            return Search("connector", sent, (time.monotonic() - sent) * 1000, "engine_failed",
                          f"{type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - anything else is a failure rescoring caused
            return Search("connector", sent, (time.monotonic() - sent) * 1000, "failed", repr(exc)[:200])
        return classify_mark("connector", sent, response.get("_rescore"))

    return one


def trace_fallbacks(wrapper: Any) -> dict[str, set[str]]:
    """Collects the detail behind each fallback reason of the in-process connector (the marker
    carries only the reason)."""
    from rescore_sidecar.connectors._sidecar.errors import SidecarUnavailable

    details: dict[str, set[str]] = {}
    client = wrapper.rescorer.sidecar
    rerank = client.rerank

    def note(exc: SidecarUnavailable) -> None:
        found = details.setdefault(exc.reason, set())
        if len(found) < 3:
            found.add(re.sub(r"127\.0\.0\.1:\d+", "HOST", exc.detail)[:160])

    async def traced(*args: Any, **kwargs: Any) -> Any:
        try:
            return await rerank(*args, **kwargs)
        except SidecarUnavailable as exc:
            note(exc)
            raise

    def traced_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            return rerank(*args, **kwargs)
        except SidecarUnavailable as exc:
            note(exc)
            raise

    is_async = isinstance(wrapper, AsyncRescoringOpenSearch)
    client.rerank = traced if is_async else traced_sync  # type: ignore[method-assign]
    return details


def classify_mark(path: str, sent: float, mark: Any) -> Search:
    latency = (time.monotonic() - sent) * 1000
    if not isinstance(mark, dict):
        return Search(path, sent, latency, "failed", f"no _rescore marker: {mark!r}"[:200])
    took = float(mark.get("took_ms") or 0.0)
    if mark.get("reranked"):
        return Search(path, sent, latency, "reranked", "", took)
    if mark.get("fallback"):
        return Search(path, sent, latency, "fallback", str(mark["fallback"]), took)
    return Search(path, sent, latency, "skipped", str(mark.get("skipped")), took)


def proxy_search(client: httpx.AsyncClient, proxy_url: str) -> Callable[[str], Awaitable[Search]]:
    async def one(query: str) -> Search:
        sent = time.monotonic()
        try:
            r = await client.post(f"{proxy_url}/{INDEX}/_search", json=search_body(query))
        except httpx.HTTPError as exc:
            return Search("proxy", sent, (time.monotonic() - sent) * 1000, "failed", f"{type(exc).__name__}: {exc}")
        latency = (time.monotonic() - sent) * 1000
        if r.status_code != 200:
            kind = ""
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                kind = r.json()["error"]["type"]
            # The proxy's own "engine unreachable" answers and the engine's own errors.
            engine = kind.startswith("proxy_upstream") or r.headers.get("x-rescore-skipped") == "engine_error"
            return Search("proxy", sent, latency, "engine_failed" if engine else "failed", f"{r.status_code} {kind}")
        try:
            body = r.json()
        except ValueError:
            return Search("proxy", sent, latency, "failed", "unreadable JSON")
        result = classify_mark("proxy", sent, body.get("_rescore"))
        if result.status == "reranked" and r.headers.get("x-rescore") != "reranked":
            return Search("proxy", sent, latency, "failed", f"header {r.headers.get('x-rescore')} != body marker")
        result.latency_ms = latency
        return result

    return one


async def watch_loop_lag(stop: asyncio.Event, lags: list[float], every: float = 0.05) -> None:
    """How late this process's event loop wakes up: the connector's own CPU starvation, which
    adds to every search's time whatever the sidecar does."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(every)
        lags.append(max(loop.time() - before - every, 0.0) * 1000)


async def watch_proxy_lag(http: httpx.AsyncClient, url: str, stop: asyncio.Event, lags: list[float],
                          every: float = 0.1) -> None:
    """Round trip of the proxy's no-op health endpoint: how long the proxy process (and this one)
    take to get to a request when the machine is busy."""
    while not stop.is_set():
        started = time.monotonic()
        with contextlib.suppress(httpx.HTTPError):
            await http.get(url + "/_rescore/health")
            lags.append((time.monotonic() - started) * 1000)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def flood(address: str, stop: asyncio.Event, concurrency: int = 16, docs: int = 64) -> int:
    """Fills a sidecar's queue with direct Rerank calls until `stop`; returns calls made.
    Every call asks a new query, so the score cache cannot answer it and every pair is queued."""
    documents = [rescore_pb2.Document(id=str(i), text=f"flood document {i} about shock waves and heat transfer " * 4)
                 for i in range(docs)]
    made = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rescore_pb2_grpc.RerankerStub(channel)

        async def worker() -> None:
            nonlocal made
            while not stop.is_set():
                made += 1
                request = rescore_pb2.RerankRequest(query=f"flood query {made} about boundary layers",
                                                    documents=documents)
                with contextlib.suppress(grpc.RpcError):
                    await stub.Rerank(request, timeout=2.0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return made


# --------------------------------------------------------------------------- the run

class Chaos:
    def __init__(self, settings: ChaosSettings, node: LocalNode | None = None):
        self.s = settings
        self._own_node = node is None
        self.node = node
        self.sidecars: dict[str, SidecarProcess] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="chaos-")
        self.model_dir = settings.model

    def log(self, message: str) -> None:
        if self.s.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # -- setup
    def _sidecar(self, name: str, **kwargs: Any) -> SidecarProcess:
        args = ["--max-queue-pairs", str(self.s.max_queue_pairs), "--drain-seconds", str(self.s.drain_seconds),
                "--torch-threads", "1", "--log-level", "WARNING"]
        return SidecarProcess({"m": self.model_dir}, extra_args=args, **kwargs)

    def setup(self) -> None:
        if self.model_dir is None:
            from rescore_sidecar.tools.seeded_models import build_model

            self.model_dir = str(build_model(pathlib.Path(self._tmp.name) / "tiny-ce", kind="cross-encoder",
                                             arch="tiny", seed=0))
        if self.node is None:
            self.log("starting OpenSearch ...")
            self.node = start_node("opensearch", self.s.engine_version)
        docs, self.queries = load_corpus()
        index_corpus(self.node, docs)
        names = ["a", "b"] if {"drain", "replica_dies"} & set(self.s.phases) else ["a"]
        for name in names:
            self.log(f"starting sidecar {name} ...")
            self.sidecars[name] = self._sidecar(name).start()
        if "replica_stalls" in self.s.phases:
            from rescore_sidecar.tools.sidecar_process import free_port

            port = free_port()
            for i, name in enumerate(REPLICAS):
                self.sidecars[name] = self._sidecar(name, host=f"127.0.0.{i + 1}", port=port)
            self.log(f"starting replicas {', '.join(REPLICAS)} on 127.0.0.1-3:{port} ...")
            self._ensure_running(REPLICAS)

    def close(self) -> None:
        for proc in self.sidecars.values():
            proc.close()
        if self._own_node and self.node is not None:
            self.node.stop()
        self._tmp.cleanup()

    def _ensure_running(self, names: Sequence[str]) -> None:
        down = [self.sidecars[n] for n in names
                if self.sidecars[n].process is None or self.sidecars[n].process.poll() is not None]
        if down:
            self.log(f"(re)starting {len(down)} sidecar(s) for the next phase")
        with ThreadPoolExecutor(max(len(down), 1)) as pool:  # several load their models at once
            list(pool.map(lambda proc: proc.start(), down))

    async def _fault(self, phase: str, stop_flood: asyncio.Event) -> tuple[float, float]:
        """Injects the phase's fault; returns (fault start, fault end) monotonic times."""
        a = self.sidecars["a"]
        await asyncio.sleep(self.s.duration / 4)
        started = time.monotonic()
        if phase == "baseline":
            return started, started
        if phase == "sigkill":
            a.kill()
            self.log("sigkill: sidecar a killed; restarting")
            await asyncio.to_thread(a.start)
        elif phase == "sigstop":
            a.pause()
            await asyncio.sleep(max(4 * self.s.budget_ms / 1000, 2.0))
            a.resume()
        elif phase == "overload":
            task = asyncio.create_task(flood(a.address, stop_flood))
            await asyncio.sleep(max(self.s.duration / 4, 2.0))
            stop_flood.set()
            made = await task
            self.log(f"overload: {made} flood calls")
        elif phase == "drain":
            assert a.process is not None
            a.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(a.process.wait, self.s.drain_seconds + 30)
            self.log("drain: sidecar a drained and exited; starting its replacement")
            await asyncio.to_thread(a.start)
        elif phase == "replica_stalls":
            stalled = self.sidecars[REPLICAS[-1]]
            stalled.pause()
            await asyncio.sleep(max(self.s.duration / 2, 2.0))
            stalled.resume()
            self.log("replica_stalls: r3 resumed")
        elif phase == "replica_dies":
            self.sidecars["b"].kill()
            # b stays dead for the rest of the phase; a carries the load alone.
            return started, time.monotonic()
        elif phase == "engine_restart":
            assert self.node is not None
            await asyncio.to_thread(restart_node, self.node)
        return started, time.monotonic()

    async def run_phase(self, phase: str) -> list[PathReport]:
        s = self.s
        names = ["a", "b"] if phase in ("drain", "replica_dies") else list(REPLICAS) if phase == "replica_stalls" else ["a"]
        self._ensure_running(names)
        targets = [self.sidecars[n].address for n in names]
        if phase == "replica_stalls":  # one target naming every replica, as a headless Service resolves
            targets = ["ipv4:" + ",".join(targets)]
        breaker = BreakerConfig(open_seconds=s.open_seconds)
        config = ConnectorConfig(default=RerankOptions(window=s.window, fields=("title", "text")),
                                 sidecar=SidecarClientConfig(targets=tuple(targets), budget_ms=s.budget_ms, breaker=breaker))
        proxy = ProxyProcess(self.node.url, ["--sidecar", ",".join(targets), "--budget-ms", str(s.budget_ms),
                                             "--breaker", json.dumps({"open_seconds": s.open_seconds}),
                                             "--rescore", json.dumps({"window": s.window,
                                                                      "fields": ["title", "text"]}),
                                             "--log-level", "WARNING"]).start()
        if s.connector == "sync":
            wrapper: Any = RescoringOpenSearch(self.node.client(timeout=10, max_retries=0), config)
        else:
            wrapper = AsyncRescoringOpenSearch(self.node.async_client(timeout=10, max_retries=0), config)
        details = trace_fallbacks(wrapper)
        http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=s.clients * 2))
        first = self.sidecars[names[0]]
        pids = lambda: {"sidecar": first.process.pid if first.process else None,  # noqa: E731
                        "connector": os.getpid(), "proxy": proxy.process.pid if proxy.process else None}
        rss_start = {k: rss_mb(v) for k, v in pids().items()}
        local_before = breaker_counts_local()
        outcomes: list[Search] = []
        stop, stop_flood = asyncio.Event(), asyncio.Event()
        self.log(f"phase {phase}: targets {targets}, {s.duration:.0f}s at {s.rate}/s per path")
        t0 = time.monotonic()
        lags: list[float] = []
        proxy_lags: list[float] = []
        load = [asyncio.create_task(run_clients(connector_search(wrapper), self.queries, s, stop, outcomes)),
                asyncio.create_task(run_clients(proxy_search(http, proxy.url), self.queries, s, stop, outcomes)),
                asyncio.create_task(watch_loop_lag(stop, lags)),
                asyncio.create_task(watch_proxy_lag(http, proxy.url, stop, proxy_lags))]
        try:
            fault_start, fault_end = await self._fault(phase, stop_flood)
            # Run out the duration, and on until both paths rerank again (or the goal has passed).
            give_up = fault_end + s.recovery_goal_s + 10
            while time.monotonic() < max(t0 + s.duration, fault_end + 1.0):
                await asyncio.sleep(0.2)
            while time.monotonic() < give_up and not all(
                    any(o.path == p and o.status == "reranked" and o.sent >= fault_end for o in outcomes)
                    for p in ("connector", "proxy")):
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            stop_flood.set()
            await asyncio.gather(*load, return_exceptions=True)
        rss_end = {k: rss_mb(v) for k, v in pids().items()}
        reports = []
        breaker_changes = {"connector": diff_counts(local_before, breaker_counts_local()),
                           "proxy": diff_counts({}, breaker_counts_proxy(proxy))}
        if s.connector == "sync":
            wrapper.close()
        else:
            await wrapper.close()
        await http.aclose()
        proxy.close()
        for path in ("connector", "proxy"):
            mine = [o for o in outcomes if o.path == path]
            reports.append(self._report(phase, path, mine, fault_start, fault_end, breaker_changes[path],
                                        rss_start, rss_end, max(lags if path == "connector" else proxy_lags, default=0.0)))
        reports[0].fallback_details = {k: sorted(v) for k, v in details.items()}
        return reports

    def _report(self, phase: str, path: str, outcomes: list[Search], fault_start: float, fault_end: float,
                breakers: dict[str, int], rss_start: dict, rss_end: dict, loop_lag_ms: float) -> PathReport:
        s = self.s
        latencies = [o.latency_ms for o in outcomes if o.status not in ("failed", "engine_failed")]
        fallbacks: dict[str, int] = {}
        for o in outcomes:
            if o.status == "fallback":
                fallbacks[o.reason] = fallbacks.get(o.reason, 0) + 1
        recovered = [o.sent + o.latency_ms / 1000 for o in outcomes if o.status == "reranked" and o.sent >= fault_end]
        recovery = (min(recovered) - fault_end) if recovered else None
        failed = [o for o in outcomes if o.status == "failed"]
        engine_failed = sum(o.status == "engine_failed" for o in outcomes)
        max_rescore = max((o.rescore_ms or 0.0 for o in outcomes), default=0.0)
        goals = {
            "no failed searches": not failed and (phase == "engine_restart" or engine_failed == 0),
            # A search that waited for a starved process (the harness's event loop for the
            # connector, the proxy's for the proxy) was late by that much, whatever the sidecar did.
            "rescoring within budget": max_rescore <= s.budget_ms + s.slack_ms + loop_lag_ms,
            "recovered in time": recovery is not None and recovery <= s.recovery_goal_s,
            "searches served": len(latencies) > 0,
        }
        if phase == "replica_stalls":
            # One stalled replica of three: a few searches fall back, reranking is never off.
            goals["stall costs few searches"] = (sum(fallbacks.values()) <= STALL_MAX_FALLBACKS
                                                 and "open" not in breakers)
        return PathReport(
            phase=phase, path=path, sent=len(outcomes), succeeded=len(latencies), failed=len(failed),
            engine_failed=engine_failed, reranked=sum(o.status == "reranked" for o in outcomes), fallbacks=fallbacks,
            p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=0.0),
            max_rescore_ms=max_rescore, breaker_changes=breakers,
            rss_start_mb={"sidecar": rss_start["sidecar"], path: rss_start[path]},
            rss_end_mb={"sidecar": rss_end["sidecar"], path: rss_end[path]},
            recovery_s=recovery, fault_s=fault_end - fault_start, loop_lag_ms=loop_lag_ms,
            failures=sorted({o.reason for o in failed})[:5], goals=goals)

    async def run(self) -> list[PathReport]:
        reports: list[PathReport] = []
        for phase in self.s.phases:
            reports += await self.run_phase(phase)
        return reports


def run_chaos(settings: ChaosSettings, node: LocalNode | None = None) -> list[PathReport]:
    """Runs the phases; `node` = an OpenSearch node to use (and restart) instead of starting one."""
    chaos = Chaos(settings, node)
    try:
        chaos.setup()
        return asyncio.run(chaos.run())
    finally:
        chaos.close()


# --------------------------------------------------------------------------- output

def table(reports: list[PathReport]) -> str:
    head = ("phase", "path", "sent", "ok", "failed", "engine_failed", "reranked", "fallbacks", "p50 ms", "p99 ms",
            "max ms", "max rescore ms", "lag ms", "breaker", "sidecar RSS MB", "client RSS MB", "fault s",
            "recovery s", "goals")
    rows = []
    for r in reports:
        client = r.path
        rows.append((
            r.phase, r.path, str(r.sent), str(r.succeeded), str(r.failed), str(r.engine_failed), str(r.reranked),
            " ".join(f"{k}={v}" for k, v in sorted(r.fallbacks.items())) or "-",
            f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}", f"{r.max_ms:.0f}", f"{r.max_rescore_ms:.0f}",
            f"{r.loop_lag_ms:.0f}",
            " ".join(f"{k}={v}" for k, v in r.breaker_changes.items()) or "-",
            f"{r.rss_start_mb['sidecar']:.0f}->{r.rss_end_mb['sidecar']:.0f}",
            f"{r.rss_start_mb[client]:.0f}->{r.rss_end_mb[client]:.0f}",
            f"{r.fault_s:.1f}", "never" if r.recovery_s is None else f"{r.recovery_s:.2f}",
            "met" if r.ok else "MISSED: " + ", ".join(k for k, v in r.goals.items() if not v)))
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = ChaosSettings()
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma separated, from {','.join(PHASES)}")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of load per phase (soak: 300+)")
    p.add_argument("--rate", type=float, default=d.rate, help="searches/s per path (connector and proxy each)")
    p.add_argument("--clients", type=int, default=d.clients, help="concurrent search clients per path")
    p.add_argument("--budget-ms", type=float, default=d.budget_ms)
    p.add_argument("--open-seconds", type=float, default=d.open_seconds, help="breaker open time")
    p.add_argument("--window", type=int, default=d.window, help="hits reranked per search")
    p.add_argument("--max-queue-pairs", type=int, default=d.max_queue_pairs)
    p.add_argument("--slack-ms", type=float, default=d.slack_ms)
    p.add_argument("--model", default=None, help="sidecar model directory (default: seeded tiny cross-encoder)")
    p.add_argument("--engine-version", default=None, help="OpenSearch version (default: localnode's)")
    p.add_argument("--connector", choices=("async", "sync"), default=d.connector,
                   help="connector path: AsyncRescoringOpenSearch, or RescoringOpenSearch in worker threads")
    p.add_argument("--json", dest="json_path", default=None, help="also write the reports as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = set(phases) - set(PHASES) - set(EXTRA_PHASES)
    if unknown:
        print(f"unknown phases {sorted(unknown)}; known: {','.join(PHASES + EXTRA_PHASES)}", file=sys.stderr)
        return 2
    if "overload_ramp" in phases:
        import overload_ramp  # bench/overload_ramp.py, beside this file

        status = overload_ramp.main(["--step-s", str(args.duration), "--budget-ms", str(args.budget_ms)]
                                    + (["--model", args.model] if args.model else []))
        phases = tuple(p for p in phases if p != "overload_ramp")
        if not phases:
            return status
    settings = ChaosSettings(phases=phases, duration=args.duration, rate=args.rate, clients=args.clients,
                             budget_ms=args.budget_ms, open_seconds=args.open_seconds, window=args.window,
                             max_queue_pairs=args.max_queue_pairs, slack_ms=args.slack_ms, model=args.model,
                             engine_version=args.engine_version, connector=args.connector)
    started = time.time()
    reports = run_chaos(settings)
    print(f"machine: {machine()}")
    print(f"run: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {time.time() - started:.0f}s total; "
          f"per phase {settings.duration:.0f}s of load at {settings.rate:g} searches/s per path, "
          f"{settings.clients} clients per path, {settings.connector} connector; budget {settings.budget_ms:g} ms, window {settings.window}, "
          f"breaker open {settings.open_seconds:g}s, sidecar max_queue_pairs {settings.max_queue_pairs}; "
          f"goals: failed=0, rescore <= {settings.budget_ms + settings.slack_ms:g} ms, "
          f"recovery <= {settings.recovery_goal_s:g}s")
    print(table(reports))
    for r in reports:
        if r.failures:
            print(f"{r.phase}/{r.path} failures: {r.failures}")
        for reason, seen in r.fallback_details.items():
            print(f"{r.phase}/{r.path} fallback {reason}: {' | '.join(seen)}")
    if args.json_path:
        pathlib.Path(args.json_path).write_text(json.dumps([dataclasses.asdict(r) for r in reports], indent=1))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
