"""The HTTP shapes on an in-process sidecar: both `/rerank` bodies, token usage, model aliases and
accept_any_model, max_tokens_per_doc, and the fields we cannot honour answered with a 400."""
from __future__ import annotations

import asyncio
import contextlib

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from rescore_sidecar.sidecar.app import Sidecar
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.core.tokenization import tokenize_request
from rescore_sidecar.sidecar.transport.http import FALLBACK_HEADER, HttpTransport
from rescore_sidecar.sidecar.transport.http_schemas import ANY_RERANK_REQUEST, COHERE_FIELDS, TEI_FIELDS

QUERY = "pressure distribution on a slender wing"
DOCS = ["wing " * 100, "drag of a body", "heat transfer"]


@contextlib.asynccontextmanager
async def http_sidecar(model_dir, **overrides):
    config = SidecarConfig(models=[f"short={model_dir}"], host="127.0.0.1", port=0, metrics_port=0, device="cpu",
                           drain_seconds=0, **overrides)
    sidecar = Sidecar(config)
    drain = asyncio.create_task(sidecar.wait_and_drain())
    try:
        await sidecar.start()
        transport = HttpTransport(config, serving=lambda: True)
        transport.service = sidecar.service
        async with TestClient(TestServer(transport.app())) as client:
            yield sidecar, client
    finally:
        sidecar.request_stop()
        await drain


async def test_rerank_takes_the_tei_body_and_the_cohere_body(short_cross_encoder):
    async with http_sidecar(short_cross_encoder) as (_, client):
        tei = await client.post("/rerank", json={"query": QUERY, "texts": DOCS})
        cohere = await client.post("/rerank", json={"query": QUERY, "documents": DOCS, "return_documents": True})
        v2 = await client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS})
        assert (tei.status, cohere.status, v2.status) == (200, 200, 200)
        tei_body, cohere_body, v2_body = await tei.json(), await cohere.json(), await v2.json()
        assert isinstance(tei_body, list) and set(tei_body[0]) == {"index", "score"}
        assert cohere_body["object"] == "rerank" and cohere_body["usage"]["prompt_tokens"] > 0
        assert [(r["index"], r["relevance_score"]) for r in cohere_body["results"]] == \
            [(r["index"], r["score"]) for r in tei_body] == \
            [(r["index"], r["relevance_score"]) for r in v2_body["results"]]
        assert [r["document"]["text"] for r in cohere_body["results"]] == [DOCS[r["index"]] for r in tei_body]
        both = await client.post("/rerank", json={"query": QUERY, "texts": DOCS, "documents": DOCS})
        neither = await client.post("/rerank", json={"query": QUERY})
        assert (both.status, neither.status) == (400, 400)
        assert "texts" in (await neither.json())["detail"] and "documents" in (await both.json())["detail"]


async def test_usage_is_the_tokens_scored_after_truncation(short_cross_encoder):
    async with http_sidecar(short_cross_encoder) as (sidecar, client):
        backend = sidecar.service.backends["short"]
        for extra, cap in (({}, 0), ({"max_tokens_per_doc": 3}, 3)):
            reply = await client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, **extra})
            body = await reply.json()
            expected = sum(len(s.ids) for s in tokenize_request(backend, QUERY, DOCS, max_document_tokens=cap).sequences)
            assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == expected
            assert body["meta"]["tokens"]["input_tokens"] == body["meta"]["billed_units"]["input_tokens"] == expected
        # max_tokens_per_doc is honoured: each document cut to 3 tokens:
        assert body["usage"]["truncated_documents"] == 2  # "heat transfer" is 2 tokens, so not cut


async def test_model_aliases_and_the_404_naming_our_models(short_cross_encoder):
    async with http_sidecar(short_cross_encoder, model_aliases=["rerank-v3.5=short"]) as (_, client):
        reply = await client.post("/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCS})
        assert reply.status == 200 and (await reply.json())["model"] == "short"
        assert FALLBACK_HEADER not in reply.headers
        missing = await client.post("/v2/rerank", json={"model": "rerank-english-v3.0", "query": QUERY,
                                                        "documents": DOCS})
        body = await missing.json()
        assert missing.status == 404 and body["error_type"] == "model_not_found"
        assert "short" in body["detail"] and "rerank-v3.5" in body["detail"] and "--model-alias" in body["detail"]
        models = await (await client.get("/v1/models")).json()
        assert models["data"][0]["aliases"] == ["rerank-v3.5"]


async def test_accept_any_model_serves_the_default_and_says_so(short_cross_encoder, caplog):
    async with http_sidecar(short_cross_encoder, accept_any_model=True) as (_, client):
        reply = await client.post("/v1/rerank", json={"model": "jina-reranker-v1-base-en", "query": QUERY,
                                                      "documents": DOCS})
        assert reply.status == 200 and (await reply.json())["model"] == "short"
        assert "jina-reranker-v1-base-en" in reply.headers[FALLBACK_HEADER]
        assert any("jina-reranker-v1-base-en" in r.getMessage() for r in caplog.records)
        named = await client.post("/v1/rerank", json={"model": "short", "query": QUERY, "documents": DOCS})
        assert FALLBACK_HEADER not in named.headers


@pytest.mark.parametrize("path, extra, field", [
    ("/v1/rerank", {"max_chunks_per_doc": 10}, "max_chunks_per_doc"),
    ("/v1/rerank", {"rank_fields": ["title"]}, "rank_fields"),
    ("/v2/rerank", {"max_tokens_per_doc": 0}, "max_tokens_per_doc"),
    ("/rerank", {"truncation_direction": "Left"}, "truncation_direction"),
])
async def test_fields_we_cannot_honour_are_a_400_naming_them(short_cross_encoder, path, extra, field):
    docs_key = "texts" if path == "/rerank" else "documents"
    async with http_sidecar(short_cross_encoder) as (_, client):
        reply = await client.post(path, json={"query": QUERY, docs_key: DOCS, **extra})
        body = await reply.json()
        assert reply.status == 400 and body["error"]["field"] == field and field in body["detail"]
        accepted = await client.post(path, json={"query": QUERY, docs_key: DOCS, "rank_fields": ["text"],
                                                 "truncation_direction": "Right"})
        assert accepted.status == 200, await accepted.text()


async def test_an_alias_of_a_model_not_served_stops_the_start(short_cross_encoder):
    with pytest.raises(ValueError, match="model_aliases name models that are not served"):
        async with http_sidecar(short_cross_encoder, model_aliases={"rerank-v3.5": "typo"}):
            pass


@pytest.mark.parametrize("fields", [TEI_FIELDS, COHERE_FIELDS], ids=["tei", "cohere"])
async def test_null_in_an_optional_field_means_absent_in_the_schema_and_the_answer(short_cross_encoder, fields):
    # Clients that dump unset fields as null (pydantic without exclude_none) must get the plain answer.
    docs_key = "texts" if fields is TEI_FIELDS else "documents"
    plain = {"query": QUERY, docs_key: DOCS}
    nulls = {**plain, **{name: None for name in fields if name not in plain}}
    jsonschema.validate(nulls, ANY_RERANK_REQUEST)  # the OpenAPI schema allows null ...
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**plain, "query": None}, ANY_RERANK_REQUEST)  # ... only where a field is optional
    async with http_sidecar(short_cross_encoder) as (_, client):
        with_nulls, without = (await client.post("/rerank", json=nulls)), (await client.post("/rerank", json=plain))
        assert (with_nulls.status, without.status) == (200, 200), await with_nulls.text()
        answers = [await reply.json() for reply in (with_nulls, without)]
        for answer in answers:
            if isinstance(answer, dict):
                answer.pop("id")  # Cohere's answer names the request
        assert answers[0] == answers[1]
