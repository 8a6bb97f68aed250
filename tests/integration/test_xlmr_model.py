"""An XLM-R-type model (one segment id, an XLM-R tokenizer emitting none: the bge-reranker-v2-m3 family)
served by a real sidecar over gRPC and HTTP, scored as a direct transformers forward pass scores it."""
from __future__ import annotations

import grpc
import httpx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

QUERY = "Supersonic flow over a wing"
DOCS = ["laminar boundary layer on a flat plate", "Shock-wave drag of a slender body at Mach 3",
        "heat transfer in a turbulent jet " * 30, "buckling", "pressure distribution on a delta wing at incidence"]


def _reference(path) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    with torch.inference_mode():  # one pair at a time: no padding in the reference
        return [float(model(**tokenizer(QUERY, doc, return_tensors="pt")).logits[0, 0]) for doc in DOCS]


def test_xlmr_scores_over_grpc_and_http_equal_a_direct_forward(tiny_xlmr_cross_encoder):
    expected = _reference(tiny_xlmr_cross_encoder)
    # backend=torch: the same runtime as the reference (OpenVINO's parity is tests/unit/sidecar/backends)
    with sidecar_process({"xlmr": f"{tiny_xlmr_cross_encoder},backend=torch"}, http_port=0) as proc:
        with grpc.insecure_channel(proc.address) as channel:
            reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(pb.RerankRequest(
                query=QUERY, documents=[pb.Document(text=t) for t in DOCS], score_mode=pb.SCORE_MODE_RAW), timeout=60)
        grpc_scores = {r.index: r.score for r in reply.results}
        with httpx.Client(base_url=proc.http_url, timeout=60) as http:
            body = http.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}).raise_for_status()
        http_scores = {r["index"]: r["score"] for r in body.json()}
    assert [grpc_scores[i] for i in range(len(DOCS))] == pytest.approx(expected, abs=1e-4)
    assert [http_scores[i] for i in range(len(DOCS))] == pytest.approx(expected, abs=1e-4)
