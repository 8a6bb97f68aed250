"""A real sidecar process, checked against direct transformers / sentence-transformers runs."""
from __future__ import annotations

import asyncio
import random
import urllib.request

import grpc
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.seeded_models import minilm_dir
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

WORDS = ("boundary layer flow wing pressure supersonic heat transfer shock wave drag lift panel buckling "
         "cylinder laminar turbulent jet nozzle slender body hypersonic viscous").split()


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder, tiny_two_label_cross_encoder, tiny_bi_encoder, short_cross_encoder):
    models = {"ce": tiny_cross_encoder, "ce2": tiny_two_label_cross_encoder, "bi": tiny_bi_encoder,
              "short": short_cross_encoder, "minilm": minilm_dir()}
    extra = ["--max-documents", "64", "--max-request-bytes", "200000", "--max-wait-ms", "5",
             "--max-batch-tokens", "4096"]
    with sidecar_process(models, extra_args=extra) as proc:
        yield proc


@pytest.fixture
def stub(sidecar):
    with grpc.insecure_channel(sidecar.address) as channel:
        yield rescore_pb2_grpc.RerankerStub(channel)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _request(query, docs, **kwargs) -> pb.RerankRequest:
    return pb.RerankRequest(query=query, documents=[pb.Document(id=f"d{i}", text=t) for i, t in enumerate(docs)],
                            **kwargs)


def _reference_logits(path, query: str, docs: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    rows = []
    with torch.inference_mode():
        for doc in docs:  # one pair at a time: no padding in the reference
            inputs = tokenizer(query, doc, truncation="only_second", max_length=512, return_tensors="pt")
            rows.append(model(**inputs).logits[0])
    return torch.stack(rows)


def _scores_by_index(response: pb.RerankResponse) -> dict[int, float]:
    return {r.index: r.score for r in response.results}


async def test_scores_equal_transformers_forward_under_concurrent_load(sidecar, tiny_cross_encoder):
    rng = random.Random(42)
    requests = []
    for i in range(50):
        docs = [_text(rng, rng.randint(1, 300)) for _ in range(rng.randint(1, 40))]
        mode = pb.SCORE_MODE_RAW if i % 2 else pb.SCORE_MODE_NORMALIZED
        requests.append(_request(_text(rng, rng.randint(1, 12)), docs, model="ce", score_mode=mode,
                                 request_id=f"r{i}"))
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        stub = rescore_pb2_grpc.RerankerStub(channel)
        responses = await asyncio.gather(*(stub.Rerank(r, timeout=120) for r in requests))

    for request, response in zip(requests, responses):
        assert response.request_id == request.request_id and response.model == "ce"
        assert sorted(r.index for r in response.results) == list(range(len(request.documents)))
        assert all(r.id == request.documents[r.index].id for r in response.results)
        scores = [r.score for r in response.results]
        assert scores == sorted(scores, reverse=True)
        logits = _reference_logits(tiny_cross_encoder, request.query, [d.text for d in request.documents])[:, 0]
        expected = logits if request.score_mode == pb.SCORE_MODE_RAW else torch.sigmoid(logits)
        got = _scores_by_index(response)
        for index, value in enumerate(expected.tolist()):
            assert got[index] == pytest.approx(value, abs=1e-5)


def test_two_label_models_score_the_last_label(stub, tiny_two_label_cross_encoder):
    docs = ["shock wave drag", "heat transfer in laminar flow", "panel buckling"]
    logits = _reference_logits(tiny_two_label_cross_encoder, "supersonic drag", docs)
    raw = _scores_by_index(stub.Rerank(_request("supersonic drag", docs, model="ce2",
                                                score_mode=pb.SCORE_MODE_RAW)))
    norm = _scores_by_index(stub.Rerank(_request("supersonic drag", docs, model="ce2")))
    for i in range(3):
        assert raw[i] == pytest.approx(logits[i, -1].item(), abs=1e-5)
        assert norm[i] == pytest.approx(torch.softmax(logits[i], 0)[-1].item(), abs=1e-5)


@pytest.mark.parametrize("model", ["bi", "minilm"])
def test_bi_encoder_scores_equal_sentence_transformers_cosine(stub, model, tiny_bi_encoder):
    from sentence_transformers import SentenceTransformer, util

    path = {"bi": tiny_bi_encoder, "minilm": minilm_dir()}[model]
    query = "how does the boundary layer behave on a swept wing"
    docs = ["the laminar boundary layer on swept wings", "heat transfer to a blunt body in hypersonic flow",
            "buckling of thin cylindrical shells under axial compression", ""]
    st = SentenceTransformer(str(path), device="cpu")
    expected = util.cos_sim(st.encode([query], convert_to_tensor=True), st.encode(docs, convert_to_tensor=True))[0]
    got = _scores_by_index(stub.Rerank(_request(query, docs, model=model)))
    for i, value in enumerate(expected.tolist()):
        assert got[i] == pytest.approx(value, abs=1e-5)


def test_pretrained_minilm_ranks_the_relevant_document_first(stub):
    docs = ["buckling of thin cylindrical shells under axial compression",
            "the laminar boundary layer on swept wings",
            "a recipe for chocolate cake"]
    response = stub.Rerank(_request("boundary layer on a swept wing", docs, model="minilm"))
    assert [r.index for r in response.results] == [1, 0, 2]


def test_truncation_is_flagged_and_counted(stub):
    docs = ["short document", "drag " * 300, "lift", "wing " * 61]
    response = stub.Rerank(_request("what is drag", docs, model="short"))
    flags = {r.index: r.truncated for r in response.results}
    # 64-token pairs: [CLS] 3 query tokens [SEP] ... [SEP] leaves 59 document tokens.
    assert flags == {0: False, 1: True, 2: False, 3: True}
    assert response.truncated_documents == 2 and not response.query_truncated
    long_query = stub.Rerank(_request("drag " * 100, ["a"], model="short"))
    assert long_query.query_truncated


def test_top_n_and_default_model(stub, sidecar):
    docs = [f"document number {i} about wings" for i in range(10)]
    full = stub.Rerank(_request("wings", docs))
    top = stub.Rerank(_request("wings", docs, top_n=3))
    assert full.model == "ce"  # the first --model is the default
    assert [r.index for r in top.results] == [r.index for r in full.results[:3]]


def test_list_models_reports_limits(stub):
    reply = stub.ListModels(pb.ListModelsRequest())
    models = {m.name: m for m in reply.models}
    assert set(models) == {"ce", "ce2", "bi", "short", "minilm"}
    assert models["ce"].is_default and models["ce"].kind == pb.MODEL_KIND_CROSS_ENCODER
    assert models["minilm"].kind == pb.MODEL_KIND_BI_ENCODER and models["minilm"].max_length == 256
    assert models["short"].max_length == 64 and models["ce2"].num_labels == 2
    assert models["ce"].device == "cpu" and models["ce"].dtype == "float32"
    assert reply.max_documents == 64 and reply.max_request_bytes == 200000


def _code_and_message(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("request_, code, fragment", [
    (_request("", ["x"]), grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
    (_request(" \t\n", ["x"]), grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
    (_request("q", []), grpc.StatusCode.INVALID_ARGUMENT, "no documents"),
    (_request("q", ["x"] * 65), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 64"),
    (_request("q", ["x" * 201_000]), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit is 200000"),
    (_request("q", ["x"], model="nope"), grpc.StatusCode.NOT_FOUND, "served models: bi, ce, ce2, minilm, short"),
    (_request("q", ["x"], score_mode=7), grpc.StatusCode.INVALID_ARGUMENT, "score_mode"),
])
def test_bad_requests_get_a_status_and_message(stub, request_, code, fragment):
    got_code, message = _code_and_message(lambda: stub.Rerank(request_, timeout=30))
    assert got_code == code and fragment in message


def test_oversized_message_is_rejected_by_the_transport(stub):
    code, _ = _code_and_message(lambda: stub.Rerank(_request("q", ["x" * 300_000]), timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("raw, fragment", [
    (b"\x0a\x02\xff\xfe\x12\x03\x12\x01x", "UTF-8"),  # query field holds invalid UTF-8
    (b"\xff\xff\xff\xff", "not a valid"),
])
def test_malformed_bytes_are_invalid_argument_and_the_server_keeps_serving(sidecar, stub, raw, fragment):
    with grpc.insecure_channel(sidecar.address) as channel:
        call = channel.unary_unary("/rescore.v1.Reranker/Rerank", request_serializer=None,
                                   response_deserializer=pb.RerankResponse.FromString)
        code, message = _code_and_message(lambda: call(raw, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in message
    assert stub.Rerank(_request("q", ["still serving"])).results


def test_odd_characters_are_scored_not_crashed(stub):
    docs = ["\x00\x01\x02", "\u202e\u200b\ufeff", "🚀" * 500, "漢字 " * 400, "a\r\nb\tc"]
    response = stub.Rerank(_request("wing \x00 🚀", docs, model="short"))
    assert len(response.results) == 5


def _metric(sidecar, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    text = urllib.request.urlopen(sidecar.metrics_url, timeout=10).read().decode()
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and all(w in sample for w in wanted):
            total += float(value)
    return total


def test_deadline_too_short_fails_fast_without_compute(sidecar, stub):
    before = _metric(sidecar, "rescore_pairs_scored_total", model="ce")
    code, _ = _code_and_message(lambda: stub.Rerank(_request("q", ["x"] * 10), timeout=0.002))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _metric(sidecar, "rescore_pairs_scored_total", model="ce") == before


def test_metrics_move(sidecar, stub):
    names = ["rescore_requests_total", "rescore_pairs_scored_total", "rescore_batch_size_count",
             "rescore_batch_padding_ratio_count", "rescore_truncated_documents_total",
             "rescore_request_duration_seconds_count"]
    before = {n: _metric(sidecar, n, model="short") for n in names}
    errors_before = _metric(sidecar, "rescore_errors_total", code="INVALID_ARGUMENT")
    stub.Rerank(_request("drag", ["drag " * 100, "lift"], model="short"))
    _code_and_message(lambda: stub.Rerank(_request("", ["x"], model="short")))
    after = {n: _metric(sidecar, n, model="short") for n in names}
    assert after["rescore_pairs_scored_total"] == before["rescore_pairs_scored_total"] + 2
    assert after["rescore_truncated_documents_total"] == before["rescore_truncated_documents_total"] + 1
    assert after["rescore_requests_total"] == before["rescore_requests_total"] + 2
    assert after["rescore_batch_size_count"] > before["rescore_batch_size_count"]
    assert after["rescore_batch_padding_ratio_count"] > before["rescore_batch_padding_ratio_count"]
    assert _metric(sidecar, "rescore_errors_total", code="INVALID_ARGUMENT") == errors_before + 1
    assert "rescore_queue_depth" in urllib.request.urlopen(sidecar.metrics_url).read().decode()
