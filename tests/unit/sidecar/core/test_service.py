"""The reranking service and its gRPC transport, served in-process (the tiny seeded cross-encoder,
a real `Sidecar` on a loopback port, no subprocess): validation, error -> status, ordering, score
modes, ListModels, raw-bytes parsing and the loading/draining states."""
from __future__ import annotations

import asyncio
import contextlib
import math

import grpc
import pytest

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.app import Sidecar
from rescore_sidecar.sidecar.transport.grpc import SERVICE_NAME, GrpcTransport

LIMITS = dict(max_documents=8, max_request_bytes=4096, min_deadline_ms=2000)


@contextlib.asynccontextmanager
async def serving(model_dir, **overrides):
    config = SidecarConfig(models=[f"tiny={model_dir}"], host="127.0.0.1", port=0, metrics_port=0,
                           device="cpu", **{"drain_seconds": 0, **LIMITS, **overrides})
    sidecar = Sidecar(config)
    drain = asyncio.create_task(sidecar.wait_and_drain())
    try:
        await sidecar.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
            yield sidecar, channel
    finally:
        sidecar.request_stop()
        await drain


def _call(channel, method, response):
    return channel.unary_unary(f"/{SERVICE_NAME}/{method}", request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response.FromString)


async def _rerank(channel, timeout=10.0, **fields) -> pb.RerankResponse:
    return await _call(channel, "Rerank", pb.RerankResponse)(pb.RerankRequest(**fields), timeout=timeout)


def _docs(*texts):
    return [pb.Document(id=f"d{i}", text=t) for i, t in enumerate(texts)]


async def _status(coro) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code(), info.value.details()


async def test_scores_order_and_score_modes(tiny_cross_encoder):
    texts = ["the cat sat on the mat", "stock markets fell", "cats purr", "a recipe for bread", "mat"]
    async with serving(tiny_cross_encoder) as (_, channel):
        full = await _rerank(channel, query="cat on a mat", documents=_docs(*texts), request_id="r-1")
        assert full.model == "tiny" and full.request_id == "r-1"
        assert sorted(r.index for r in full.results) == list(range(len(texts)))
        scores = [r.score for r in full.results]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        assert all(r.id == f"d{r.index}" for r in full.results)
        top = await _rerank(channel, query="cat on a mat", documents=_docs(*texts), top_n=2)
        assert [r.index for r in top.results] == [r.index for r in full.results[:2]]
        raw = await _rerank(channel, query="cat on a mat", documents=_docs(*texts), score_mode=pb.SCORE_MODE_RAW)
        # Normalized = sigmoid of the raw logit of a single-logit cross-encoder.
        by_index = {r.index: r.score for r in full.results}
        for r in raw.results:
            assert by_index[r.index] == pytest.approx(1 / (1 + math.exp(-r.score)), rel=1e-5)
        # The same request twice gives the same scores (no state leaks between batches).
        again = await _rerank(channel, query="cat on a mat", documents=_docs(*texts), request_id="r-1")
        assert {r.index: r.score for r in again.results} == pytest.approx(by_index, rel=1e-5)
        assert full.timings.total_ms >= full.timings.compute_ms > 0

        models = await _call(channel, "ListModels", pb.ListModelsResponse)(pb.ListModelsRequest(), timeout=10)
        assert [(m.name, m.is_default, m.kind) for m in models.models] == [("tiny", True, pb.MODEL_KIND_CROSS_ENCODER)]
        assert models.max_documents == LIMITS["max_documents"]
        assert models.max_request_bytes == LIMITS["max_request_bytes"]


async def test_bypass_cache_computes_cached_pairs_and_leaves_the_cache_as_it_was(tiny_cross_encoder):
    texts = ["the cat sat on the mat", "stock markets fell", "cats purr"]
    async with serving(tiny_cross_encoder) as (sidecar, channel):
        cache = sidecar.service.cache
        first = await _rerank(channel, query="cat", documents=_docs(*texts))
        cached = await _rerank(channel, query="cat", documents=_docs(*texts))
        assert first.timings.compute_ms > 0 and cached.timings.compute_ms == 0  # the second is all hits
        rows = list(cache._rows.items())  # contents and LRU order
        bypassed = await _rerank(channel, query="cat", documents=_docs(*texts), bypass_cache=True)
        assert bypassed.timings.compute_ms > 0  # computed although every pair is cached
        assert [(r.index, r.score) for r in bypassed.results] == [(r.index, r.score) for r in first.results]
        await _rerank(channel, query="never seen", documents=_docs(*texts), bypass_cache=True)
        assert list(cache._rows.items()) == rows


async def test_bad_requests_get_the_right_status_and_the_next_one_is_served(tiny_cross_encoder):
    docs = _docs("one", "two")
    async with serving(tiny_cross_encoder) as (_, channel):
        cases = [
            (dict(query="  ", documents=docs), grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
            (dict(query="q"), grpc.StatusCode.INVALID_ARGUMENT, "no documents"),
            (dict(query="q", documents=_docs(*["x"] * 9)), grpc.StatusCode.RESOURCE_EXHAUSTED, "9 documents"),
            (dict(query="q", documents=_docs("y" * 5000)), grpc.StatusCode.RESOURCE_EXHAUSTED, "bytes"),
            (dict(query="q", documents=docs, score_mode=7), grpc.StatusCode.INVALID_ARGUMENT, "score_mode"),
            (dict(query="q", documents=docs, model="nope"), grpc.StatusCode.NOT_FOUND, "served models: tiny"),
        ]
        for fields, code, text in cases:
            got = await _status(_rerank(channel, **fields))
            assert got[0] == code and text in got[1], (fields, got)
            assert len((await _rerank(channel, query="q", documents=docs)).results) == 2
        # Less time left than the server needs (2 s here): refused at once by the server, not queued.
        code, message = await _status(_rerank(channel, timeout=1.0, query="q", documents=docs))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "below the 2000 ms" in message
        # Bytes that are no RerankRequest: a clear INVALID_ARGUMENT from the transport's own parsing.
        code, message = await _status(channel.unary_unary(f"/{SERVICE_NAME}/Rerank")(b"\xff\xff\xff", timeout=5))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid rescore.v1.RerankRequest" in message
        code, message = await _status(channel.unary_unary(f"/{SERVICE_NAME}/Rerank")(
            b"\x0a\x02\xc3\x28", timeout=5))  # field 1 (query) with invalid UTF-8
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in message


async def test_draining_server_finishes_in_flight_work_and_refuses_new_work(tiny_cross_encoder):
    # A batch waits up to max_wait_ms for company: the first request is still in flight when the
    # drain begins; the port stays open, new work gets a retryable UNAVAILABLE naming the shutdown.
    async with serving(tiny_cross_encoder, drain_seconds=5, max_wait_ms=1500) as (sidecar, channel):
        in_flight = asyncio.create_task(_rerank(channel, query="q", documents=_docs("one", "two")))
        await asyncio.sleep(0.3)
        sidecar.request_stop()
        await asyncio.sleep(0.1)
        code, message = await _status(_rerank(channel, query="q", documents=_docs("one")))
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in message
        assert len((await in_flight).results) == 2


async def test_loading_transport_answers_unavailable_not_unimplemented():
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((GrpcTransport().handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for method, response in (("Rerank", pb.RerankResponse), ("ListModels", pb.ListModelsResponse)):
                request = pb.RerankRequest(query="q") if method == "Rerank" else pb.ListModelsRequest()
                code, message = await _status(_call(channel, method, response)(request, timeout=5))
                assert code == grpc.StatusCode.UNAVAILABLE and "loading" in message
    finally:
        await server.stop(None)


async def test_aliases_and_accept_any_model_over_grpc(tiny_cross_encoder):
    from rescore_sidecar.sidecar.transport.grpc import FALLBACK_METADATA

    async with serving(tiny_cross_encoder, model_aliases={"rerank-v3.5": "tiny"}) as (_, channel):
        assert (await _rerank(channel, query="q", documents=_docs("a"), model="rerank-v3.5")).model == "tiny"
        code, details = await _status(_rerank(channel, query="q", documents=_docs("a"), model="other"))
        assert code == grpc.StatusCode.NOT_FOUND and "tiny" in details and "rerank-v3.5" in details
    async with serving(tiny_cross_encoder, accept_any_model=True) as (_, channel):
        call = _call(channel, "Rerank", pb.RerankResponse)(
            pb.RerankRequest(query="q", documents=_docs("a"), model="other"), timeout=10)
        assert (await call).model == "tiny"
        assert "'other' is not served" in dict(await call.trailing_metadata())[FALLBACK_METADATA]
