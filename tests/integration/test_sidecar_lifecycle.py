"""Health across start-up and drain, and in-flight requests surviving SIGTERM (real processes)."""
from __future__ import annotations

import concurrent.futures
import pathlib
import signal
import subprocess
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.seeded_models import build_model
from rescore_sidecar.tools.sidecar_process import SidecarProcess

pytestmark = pytest.mark.integration

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def minilm_sized_cross_encoder(models_dir):
    """MiniLM-L6-H384 shape: slow enough on CPU for a request to be caught in flight."""
    return build_model(models_dir / "minilm-ce", kind="cross-encoder", arch="minilm-l6-h384", seed=5)


def _health(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="rescore.v1.Reranker"), timeout=1).status
        except grpc.RpcError:
            return None


def _in_flight(proc: SidecarProcess) -> float:
    text = urllib.request.urlopen(proc.metrics_url, timeout=5).read().decode()
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("rescore_requests_in_flight "))


def test_health_is_not_serving_until_warm_then_serving(minilm_sized_cross_encoder):
    proc = SidecarProcess({"m": minilm_sized_cross_encoder})
    seen = []
    with open(proc.log_path, "ab") as log:
        proc.process = subprocess.Popen(proc.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not seen or seen[-1] != SERVING):
            status = _health(proc.address)
            if status is not None and (not seen or seen[-1] != status):
                seen.append(status)
            assert proc.process.poll() is None, proc.log_tail()
            time.sleep(0.02)
        assert seen == [NOT_SERVING, SERVING], proc.log_tail()
    finally:
        proc.close()


def test_sigterm_drains_in_flight_requests_and_exits_zero(minilm_sized_cross_encoder):
    proc = SidecarProcess({"m": minilm_sized_cross_encoder},
                          extra_args=["--drain-seconds", "60", "--max-batch-tokens", "2048"])
    proc.start()
    try:
        docs = [pb.Document(id=str(i), text="supersonic flow over a slender wing " * 40) for i in range(400)]
        with grpc.insecure_channel(proc.address) as channel, concurrent.futures.ThreadPoolExecutor(1) as pool:
            stub = rescore_pb2_grpc.RerankerStub(channel)
            in_flight = pool.submit(stub.Rerank, pb.RerankRequest(query="wing flow", documents=docs), timeout=120)
            deadline = time.monotonic() + 30
            while _in_flight(proc) < 1:
                assert time.monotonic() < deadline and not in_flight.done(), "request never became in flight"
                time.sleep(0.01)

            proc.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _health(proc.address) != NOT_SERVING:
                assert time.monotonic() < deadline, "health never went NOT_SERVING"
                time.sleep(0.02)
            assert not in_flight.done(), "the request finished before the drain could be observed"
            with pytest.raises(grpc.RpcError) as refused:
                stub.Rerank(pb.RerankRequest(query="late", documents=[pb.Document(text="x")]), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in refused.value.details()

            response = in_flight.result(timeout=120)
            assert sorted(r.index for r in response.results) == list(range(400))
        assert proc.process.wait(timeout=30) == 0, proc.log_tail()
    finally:
        proc.close()
