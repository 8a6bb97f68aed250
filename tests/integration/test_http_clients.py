"""Real rerank client libraries, unmodified, pointed at a real sidecar's HTTP API: their own
response parsing must accept our answers and give back our scores and order (docs/http-api.md).
Each is given only our base URL, the token as its API key and, where it sends a hosted model name by
default, that default: the sidecar maps it with --model-alias, as an operator would."""
from __future__ import annotations

import asyncio

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
    # The hosted names the clients below send by default, mapped to our model.
    aliases = ["rerank-v3.5=ce", "jina-reranker-v1-base-en=ce"]
    extra = ["--auth-token", TOKEN, *(arg for alias in aliases for arg in ("--model-alias", alias))]
    with sidecar_process({"ce": tiny_cross_encoder}, http_port=0, extra_args=extra) as proc:
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


def _nodes(texts):
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0) for i, text in enumerate(texts)]


def _llama_pairs(nodes):
    return [(int(n.node.id_), n.score) for n in nodes]


def test_llama_index_tei_postprocessor(sidecar, expected):
    """llama-index's TEI postprocessor re-sorts by the score it reads: our order must survive that."""
    tei = pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.schema import QueryBundle

    post = tei.TextEmbeddingInference(base_url=sidecar.http_url, auth_token=f"Bearer {TOKEN}", top_n=len(DOCS))
    ranked = post.postprocess_nodes(_nodes(DOCS), QueryBundle(QUERY))
    assert_same(_llama_pairs(ranked), expected)
    # Its errors are not readable by design (it asserts on the answer's length); TEI itself answers the same.


def test_llama_index_jina_postprocessor(sidecar, expected):
    jina = pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
    from llama_index.core.schema import QueryBundle

    post = jina.JinaRerank(base_url=sidecar.http_url + "/v1", api_key=TOKEN, top_n=3)  # default model name
    ranked = post.postprocess_nodes(_nodes(DOCS), QueryBundle(QUERY))
    assert_same(_llama_pairs(ranked), expected[:3])
    ranked = asyncio.run(post.apostprocess_nodes(_nodes(DOCS), QueryBundle(QUERY)))
    assert_same(_llama_pairs(ranked), expected[:3])
    missing = jina.JinaRerank(base_url=sidecar.http_url + "/v1", api_key=TOKEN, model="jina-reranker-v2-base-multilingual")
    with pytest.raises(RuntimeError, match="not served here; served models: ce"):
        missing.postprocess_nodes(_nodes(DOCS), QueryBundle(QUERY))
    with pytest.raises(RuntimeError, match="bearer token"):
        jina.JinaRerank(base_url=sidecar.http_url + "/v1", api_key="wrong").postprocess_nodes(_nodes(DOCS), QueryBundle(QUERY))


@pytest.fixture
def haystack(monkeypatch):
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")  # no posthog calls from a test
    return pytest.importorskip("haystack")


def _haystack_pairs(documents):
    return [(int(d.id), d.score) for d in documents]


def test_haystack_jina_ranker(sidecar, expected, haystack):
    ranker_module = pytest.importorskip("haystack_integrations.components.rankers.jina")
    from haystack.utils import Secret

    docs = [haystack.Document(content=text, id=str(i)) for i, text in enumerate(DOCS)]
    ranker = ranker_module.JinaRanker(api_key=Secret.from_token(TOKEN), base_url=sidecar.http_url + "/v1/rerank")
    assert_same(_haystack_pairs(ranker.run(QUERY, docs)["documents"]), expected)
    assert_same(_haystack_pairs(asyncio.run(ranker.run_async(QUERY, docs, top_k=2))["documents"]), expected[:2])
    missing = ranker_module.JinaRanker(model="jina-colbert-v2", api_key=Secret.from_token(TOKEN),
                                       base_url=sidecar.http_url + "/v1/rerank")
    with pytest.raises(RuntimeError, match="served models: ce"):
        missing.run(QUERY, docs)


def test_haystack_cohere_ranker(sidecar, expected, haystack):
    """Its default model (rerank-v3.5, aliased) and max_tokens_per_doc=4096 (above the model: no effect)."""
    ranker_module = pytest.importorskip("haystack_integrations.components.rankers.cohere")
    from haystack.utils import Secret

    docs = [haystack.Document(content=text, id=str(i)) for i, text in enumerate(DOCS)]
    ranker = ranker_module.CohereRanker(api_key=Secret.from_token(TOKEN), api_base_url=sidecar.http_url,
                                        top_k=len(DOCS))
    assert_same(_haystack_pairs(ranker.run(QUERY, docs)["documents"]), expected)
    assert_same(_haystack_pairs(asyncio.run(ranker.run_async(QUERY, docs, top_k=3))["documents"]), expected[:3])
    missing = ranker_module.CohereRanker(model="rerank-english-v3.0", api_key=Secret.from_token(TOKEN),
                                         api_base_url=sidecar.http_url)
    with pytest.raises(cohere.errors.NotFoundError, match="served models: ce"):
        missing.run(QUERY, docs)
