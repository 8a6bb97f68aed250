"""Replicas started at the same moment on one model folder (a Deployment on a ReadWriteMany
volume or a hostPath): all reach SERVING, one of them builds the OpenVINO artefact, the others
wait for it, and all score alike (issue 24: a late builder used to delete what an early one had
published, and replicas died at start)."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time

import grpc
import pytest

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.seeded_models import build_model
from rescore_sidecar.tools.sidecar_process import SidecarProcess, sidecar_process

pytestmark = pytest.mark.integration

REPLICAS = 4
DOCUMENTS = ["boundary layer flow on a flat plate", "shock wave and supersonic drag", "panel buckling", "jet nozzle"]


def _scores(proc: SidecarProcess, model: str) -> list[float]:
    with grpc.insecure_channel(proc.address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(pb.RerankRequest(
            query="supersonic flutter", model=model, score_mode=pb.SCORE_MODE_RAW,
            documents=[pb.Document(id=str(i), text=text) for i, text in enumerate(DOCUMENTS)]), timeout=60)
    return [result.score for result in sorted(reply.results, key=lambda result: result.index)]


def test_replicas_started_at_once_build_each_artefact_once_and_all_serve(tmp_path):
    # Both artefacts the sidecar writes (the fp32 IR and the int8 model) in one set of processes:
    # the start (imports) is most of the cost on a 2-core CI machine.
    model = build_model(tmp_path / "m", kind="cross-encoder", arch="tiny", seed=0)
    served = {f"m-{precision}": f"{model},backend=openvino,precision={precision}" for precision in ("fp32", "int8")}
    replicas = [SidecarProcess(served, extra_args=["--max-wait-ms", "1"]) for _ in range(REPLICAS)]
    try:
        with concurrent.futures.ThreadPoolExecutor(REPLICAS) as pool:  # every process started at once
            list(pool.map(lambda proc: proc.start(timeout=300), replicas))
        logs = [proc.log_tail(400) for proc in replicas]
        for precision in ("fp32", "int8"):
            building = f"building the OpenVINO {precision} artefact"
            assert sum(building in log for log in logs) == 1, "\n----\n".join(logs)
            # the others waited for it or came after it was published (how many waited is timing)
            assert sum(f"using the OpenVINO {precision} artefact" in log for log in logs) == REPLICAS - 1
        folders = sorted(p.name for p in (model / "openvino").iterdir() if not p.name.endswith(".lock"))
        assert [name.rsplit("-", 1)[0] for name in folders] == ["cross-encoder-fp32", "cross-encoder-int8-default"]
        for name in served:  # no leftovers above; the same artefact everywhere, so the same scores
            scores = [_scores(proc, name) for proc in replicas]
            assert len(scores[0]) == len(DOCUMENTS) and all(got == scores[0] for got in scores), name
    finally:
        for proc in replicas:
            proc.close()


def test_a_replica_killed_mid_build_leaves_nothing_the_next_start_trips_over(tmp_path):
    model = build_model(tmp_path / "m", kind="cross-encoder", arch="tiny", seed=0)
    served = {"m": f"{model},backend=openvino,precision=int8"}  # int8: export + calibration, the longest build
    template = SidecarProcess(served)
    command = template.command()  # its free ports; started here, without waiting for SERVING
    template.close()
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        while not list(model.glob("openvino/.staging-*")):  # it is building
            assert time.monotonic() < deadline and first.poll() is None, "the build never started"
            time.sleep(0.01)
    finally:
        first.kill()  # OOM-killed or evicted mid-build
        first.wait(10)
    assert not [p for p in (model / "openvino").iterdir() if not p.name.startswith(".")]  # nothing published
    with sidecar_process(served, timeout=300) as second:
        assert "waiting for another replica" not in second.log_tail(400)  # the dead one's lock went with it
        assert "building the OpenVINO int8 artefact" in second.log_tail(400)
        assert len(_scores(second, "m")) == len(DOCUMENTS)
    assert [p.name for p in (model / "openvino").iterdir() if p.name.startswith(".staging-")] == []
