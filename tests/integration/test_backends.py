"""Real sidecar processes on every backend/precision: scores against the torch fp32 forward
pass under concurrent requests, and a model a backend cannot load fails at start."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys

import grpc
import numpy as np
import pytest
from scipy.stats import spearmanr

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.sidecar.backends import load_backend
from rescore_sidecar.sidecar.config import ModelSpec
from rescore_sidecar.sidecar.core.tokenization import tokenize_request
from rescore_sidecar.tools.seeded_models import minilm_dir
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling "
         "cylinder laminar turbulent jet nozzle slender body hypersonic viscous").split()
CONFIGS = {  # served name -> (backend, precision)
    "ce-torch": ("torch", "fp32"), "ce-ov": ("openvino", "fp32"), "ce-ov-int8": ("openvino", "int8"),
    "bi-ov": ("openvino", "fp32"), "mini-ov-bf16": ("openvino", "bf16"), "mini-ov-int8": ("openvino", "int8"),
}


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder, tiny_bi_encoder):
    sources = {"ce": tiny_cross_encoder, "bi": tiny_bi_encoder, "mini": minilm_dir()}
    models = {name: f"{sources[name.split('-')[0]]},backend={backend},precision={precision}"
              for name, (backend, precision) in CONFIGS.items()}
    # Generous start: the first start exports and quantizes (minutes on a busy 2-core CI machine).
    with sidecar_process(models, extra_args=["--max-wait-ms", "5", "--max-documents", "64"], timeout=600) as proc:
        yield proc, sources


def _reference(source, query, docs) -> np.ndarray:
    """Scores of the torch fp32 forward pass, one sequence at a time, as the sidecar reports them."""
    backend = load_backend(ModelSpec(source=str(source), backend="torch", precision="fp32"), device="cpu")
    rows = np.concatenate([backend.forward([s]) for s in tokenize_request(backend, query, docs).sequences])
    if backend.kind == "cross-encoder":
        return rows[:, -1]  # raw logits (SCORE_MODE_RAW)
    return rows[1:] @ rows[0]


def test_list_models_reports_runtime_precision_as_dtype(sidecar):
    proc, _ = sidecar
    with grpc.insecure_channel(proc.address) as channel:
        listed = {m.name: m for m in rescore_pb2_grpc.RerankerStub(channel).ListModels(pb.ListModelsRequest()).models}
    assert listed["ce-ov-int8"].dtype == "int8" and listed["mini-ov-bf16"].dtype == "bfloat16"
    assert listed["ce-ov"].dtype == "float32" and listed["ce-ov"].device == "cpu"


async def test_every_backend_matches_torch_fp32_under_concurrent_requests(sidecar):
    proc, sources = sidecar
    rng = random.Random(5)
    query = "supersonic flutter of a slender wing"
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 150))) for _ in range(40)]
    reference = {name: _reference(source, query, docs) for name, source in sources.items()}
    async with grpc.aio.insecure_channel(proc.address) as channel:
        stub = rescore_pb2_grpc.RerankerStub(channel)
        calls = []
        for _ in range(3):  # every model at once, three times: batches mix requests of several clients
            for name in CONFIGS:
                request = pb.RerankRequest(query=query, model=name, score_mode=pb.SCORE_MODE_RAW,
                                           documents=[pb.Document(id=str(i), text=t) for i, t in enumerate(docs)])
                calls.append((name, stub.Rerank(request, timeout=120)))
        responses = await asyncio.gather(*(call for _, call in calls))
    for (name, _), response in zip(calls, responses):
        got = np.zeros(len(docs))
        for result in response.results:
            got[result.index] = result.score
        expected = reference[name.split("-")[0]]
        backend, precision = CONFIGS[name]
        if precision == "fp32":
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0, err_msg=name)
        elif name.startswith("mini"):  # pretrained: ranks are meaningful
            assert spearmanr(got, expected).statistic >= 0.97, name
        else:  # random-weight cross-encoder: every document scores almost alike, so bound the error
            assert np.abs(got - expected).max() < 2e-2, name


def test_a_model_the_backend_cannot_load_fails_at_start(tiny_cross_encoder):
    command = [sys.executable, "-m", "rescore_sidecar.tools", "serve", "--port", "0", "--metrics-port", "0",
               "--model", f"broken={tiny_cross_encoder},backend=torch,precision=int8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "'broken'" in done.stderr and "backend=torch" in done.stderr and "int8" in done.stderr


def test_prepare_model_builds_the_artefact_serve_then_reuses(tiny_bi_encoder, tmp_path):
    spec = f"bi={tiny_bi_encoder},backend=openvino,precision=int8"
    command = [sys.executable, "-m", "rescore_sidecar.tools", "prepare-model", spec, "--model-cache-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (xml,) = tmp_path.glob("*/bi-encoder-int8-default-*/model.xml")
    assert str(xml) in done.stdout
    built = xml.stat().st_mtime_ns
    with sidecar_process({"bi": f"{tiny_bi_encoder},backend=openvino,precision=int8"},
                         extra_args=["--model-cache-dir", str(tmp_path)], timeout=300) as proc:
        assert "building the OpenVINO" not in proc.log_tail(200)
    assert xml.stat().st_mtime_ns == built
