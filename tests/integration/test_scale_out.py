"""Scale-out over sidecar replicas: three real sidecars on 127.0.0.1/2/3 sharing one port (the
shape a headless Service resolves to), one client target naming all of them.

Each replica's own Prometheus counter (`rescore_requests_total{code="OK"}`) says how many calls
it served; the client's pool is only read to wait on, never to count.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest

from rescore_sidecar.connectors.config import OutlierConfig, SidecarClientConfig
from rescore_sidecar.connectors import AsyncSidecarClient, SidecarClient, SidecarUnavailable
from rescore_sidecar.tools.sidecar_process import SidecarProcess, free_port

pytestmark = pytest.mark.integration

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
TEXTS = ["the wing flutter at supersonic speed", "boundary layer transition", "heat transfer in a nozzle"]


def served(proc: SidecarProcess) -> int:
    """Calls this replica answered OK, from its own metrics endpoint."""
    text = httpx.get(proc.metrics_url, timeout=5).text
    return int(sum(float(v) for v in re.findall(r'^rescore_requests_total\{[^}]*code="OK"[^}]*\} ([\d.e+]+)$',
                                                   text, re.M)))


def start_all(procs: list[SidecarProcess]) -> None:
    errors: list[BaseException] = []

    def start(p: SidecarProcess) -> None:
        try:
            p.start(timeout=180)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def replicas(tiny_cross_encoder):
    port = free_port()
    procs = [SidecarProcess({"tiny": tiny_cross_encoder}, host=h, port=port, metrics_port=free_port(),
                            extra_args=["--log-level", "WARNING"]) for h in HOSTS]
    try:
        start_all(procs)
        yield procs
    finally:
        for p in procs:
            p.close()


def target(procs: list[SidecarProcess]) -> str:
    return "ipv4:" + ",".join(p.address for p in procs)


def config(tgt: str, **outlier) -> SidecarClientConfig:
    return SidecarClientConfig(targets=(tgt,), budget_ms=250,
                               outlier=OutlierConfig(**{"base_ejection_seconds": 1.0, "max_ejection_seconds": 3.0,
                                                        **outlier}))


def rerank_ok(client: SidecarClient) -> bool:
    try:
        client.rerank("supersonic flow", TEXTS)
        return True
    except SidecarUnavailable:
        return False


def test_sync_client_spreads_over_every_replica(replicas):
    before = [served(p) for p in replicas]
    client = SidecarClient(config(target(replicas)))
    try:
        assert all(rerank_ok(client) for _ in range(60))
    finally:
        client.close()
    shares = [served(p) - b for p, b in zip(replicas, before)]
    assert sum(shares) == 60 and min(shares) >= 12, shares  # each at least 20 %


def test_async_client_spreads_over_every_replica(replicas):
    before = [served(p) for p in replicas]

    async def run() -> None:
        client = AsyncSidecarClient(config(target(replicas)))
        try:
            for _ in range(6):  # concurrent, like a busy proxy
                await asyncio.gather(*(client.rerank("supersonic flow", TEXTS) for _ in range(10)))
        finally:
            await client.close()

    asyncio.run(run())
    shares = [served(p) - b for p, b in zip(replicas, before)]
    assert sum(shares) == 60 and min(shares) >= 12, shares


def test_stalled_then_killed_replica_is_ejected_and_comes_back(replicas):
    sick = replicas[2]
    client = SidecarClient(config(target(replicas)))
    try:
        assert all(rerank_ok(client) for _ in range(6))
        # Stalled: the port is open, nothing answers (calls time out after the 250 ms budget).
        sick.pause()
        outcomes = [rerank_ok(client) for _ in range(60)]
        failed = outcomes.count(False)
        assert failed <= 6 and outcomes.count(True) >= 54, outcomes  # a few timeouts, then >= 90 % reranked
        assert all(outcomes[-20:]), outcomes  # the failures are the ejections' probes, not steady loss
        # Back: it gets calls again within the (capped) ejection time.
        sick.resume()
        before, resumed = served(sick), time.monotonic()
        while served(sick) == before:
            assert time.monotonic() - resumed < 3.0 + 2.0, "the resumed replica got no call"
            rerank_ok(client)
            time.sleep(0.02)
        # Killed: refused connections are retried on another replica within the budget.
        sick.kill()
        outcomes = [rerank_ok(client) for _ in range(60)]
        assert outcomes.count(True) >= 57, outcomes
        # The breaker (reranking off for the target) never opened: two replicas were healthy.
        assert client.endpoints.breakers[target(replicas)].state == "closed"
    finally:
        client.close()
        if sick.process is None or sick.process.poll() is not None:
            sick.start(timeout=180)


def test_breaker_opens_only_when_no_replica_is_left(replicas):
    client = SidecarClient(SidecarClientConfig(targets=(target(replicas),), budget_ms=250))
    try:
        for p in replicas:
            p.pause()
        reasons = []
        for _ in range(30):
            try:
                client.rerank("supersonic flow", TEXTS)
                reasons.append("reranked")
            except SidecarUnavailable as exc:
                reasons.append(exc.reason)
        assert "breaker_open" in reasons and "reranked" not in reasons, reasons
    finally:
        for p in replicas:
            p.resume()
        client.close()


def test_a_replica_added_to_the_name_gets_traffic_without_a_restart(replicas, tiny_cross_encoder):
    from dnslib import QTYPE, RR, A
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    names = {"replicas.test.": list(HOSTS)}

    class Zone(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            qname = str(request.q.qname)
            if request.q.qtype == QTYPE.A:
                for ip in names.get(qname, []):
                    reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=1))
            return reply

    dns_port = free_port()
    server = DNSServer(Zone(), port=dns_port, address="127.0.0.1", logger=DNSLogger(logf=lambda s: None))
    server.start_thread()
    port = replicas[0].port
    fourth = SidecarProcess({"tiny": tiny_cross_encoder}, host="127.0.0.4", port=port, metrics_port=free_port(),
                            extra_args=["--log-level", "WARNING"])
    client = SidecarClient(config(f"dns://127.0.0.1:{dns_port}/replicas.test:{port}", resolve_seconds=0.5))
    try:
        assert all(rerank_ok(client) for _ in range(30))
        fourth.start(timeout=180)
        names["replicas.test."].append("127.0.0.4")
        time.sleep(1.0)  # one re-resolution period and then some
        before = served(fourth)
        assert all(rerank_ok(client) for _ in range(40))
        assert served(fourth) - before >= 8, served(fourth) - before  # ~ a quarter of 40
        # A replica dropped from the name gets no more calls.
        names["replicas.test."].remove("127.0.0.1")
        gone = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 3.0
        while gone in client.endpoints.pools[client.config.targets[0]].addresses():  # resolved again on use
            assert time.monotonic() < deadline, "the dropped replica is still in the pool"
            rerank_ok(client)
            time.sleep(0.1)
        before = served(replicas[0])
        assert all(rerank_ok(client) for _ in range(20))
        assert served(replicas[0]) == before
    finally:
        client.close()
        fourth.close()
        server.stop()
