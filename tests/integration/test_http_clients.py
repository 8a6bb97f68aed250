"""Real rerank client libraries, unmodified, pointed at a real sidecar's HTTP API: their own
response parsing must accept our answers and give back our scores and order (docs/http-api.md)."""
from __future__ import annotations

import grpc
import pytest

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

cohere = pytest.importorskip("cohere")
api_rankers = pytest.importorskip("rerankers.models.api_rankers")

QUERY = "supersonic flow over a wing"
DOCS = ["laminar boundary layer on a flat plate", "shock wave drag of a slender body at supersonic speed",
        "heat transfer in a turbulent jet", "buckling of cylindrical panels", "wing pressure distribution",
        "hypersonic viscous flow", "nozzle design", "lift of a delta wing at supersonic speed"]
TOKEN = "client-token"


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0, extra_args=["--auth-token", TOKEN]) as proc:
        yield proc


@pytest.fixture(scope="module")
def expected(sidecar) -> list[tuple[int, float]]:
    """The gRPC answer (normalized scores) for the same request."""
    with grpc.insecure_channel(sidecar.address) as channel:
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(
            pb.RerankRequest(query=QUERY, documents=[pb.Document(text=t) for t in DOCS]),
            metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
    return [(r.index, r.score) for r in reply.results]


def assert_same(got, expected):
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-6)


def test_cohere_sdk_v2(sidecar, expected):
    client = cohere.ClientV2(api_key=TOKEN, base_url=sidecar.http_url, timeout=30)
    reply = client.rerank(model="ce", query=QUERY, documents=DOCS)
    assert_same([(r.index, r.relevance_score) for r in reply.results], expected)
    top = client.rerank(model="ce", query=QUERY, documents=DOCS, top_n=3)
    assert_same([(r.index, r.relevance_score) for r in top.results], expected[:3])


def test_cohere_sdk_v2_errors_are_typed(sidecar):
    client = cohere.ClientV2(api_key=TOKEN, base_url=sidecar.http_url, timeout=30)
    with pytest.raises(cohere.errors.NotFoundError):
        client.rerank(model="not-served", query=QUERY, documents=DOCS)
    with pytest.raises(cohere.errors.BadRequestError):
        client.rerank(model="ce", query=" ", documents=DOCS)
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=sidecar.http_url).rerank(model="ce", query=QUERY, documents=DOCS)


def test_cohere_sdk_v1(sidecar, expected):
    client = cohere.Client(api_key=TOKEN, base_url=sidecar.http_url, timeout=30)
    reply = client.rerank(model="ce", query=QUERY, documents=DOCS, return_documents=True)
    assert_same([(r.index, r.relevance_score) for r in reply.results], expected)
    assert [r.document.text for r in reply.results] == [DOCS[r.index] for r in reply.results]


@pytest.mark.parametrize("provider, path", [("jina", "/v1/rerank"), ("text-embeddings-inference", "/rerank")])
def test_rerankers_api_ranker(sidecar, expected, provider, path):
    """rerankers' APIRanker (pip install rerankers): its Jina and TEI shapes, given our URL."""
    ranker = api_rankers.APIRanker(model="ce", api_key=TOKEN, api_provider=provider, url=sidecar.http_url + path)
    ranked = ranker.rank(QUERY, DOCS)
    assert_same([(r.document.doc_id, r.score) for r in ranked.results], expected)
    assert [r.document.text for r in ranked.results] == [DOCS[i] for i, _ in expected]
