"""The sidecar's spans, both transports, served in-process (the tiny seeded cross-encoder): rescore.rerank
continues the caller's trace from gRPC metadata or HTTP headers, with rescore.tokenize, rescore.queue
and one rescore.forward per pass inside, cache hits counted; the connector's client and the sidecar in
one trace; errors marked; the JSON request line; query text only when the operator opts in."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import aiohttp
import grpc
import pytest

from rescore_sidecar.connectors import AsyncSidecarClient, SidecarClient, SidecarClientConfig, logs, tracing
from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.app import Sidecar
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.transport.grpc import SERVICE_NAME
from tests.support.spans import is_child, named, one

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
INCOMING = f"00-{TRACE}-{PARENT}-01"
DOCS = ["the quick brown fox", "a lazy dog sleeps all day long in the sun", "foxes"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(model_dir, **overrides):
    config = SidecarConfig(models=[f"tiny={model_dir}"], host="127.0.0.1", port=0, metrics_port=0, device="cpu",
                           drain_seconds=0, **overrides)
    sidecar = Sidecar(config)
    drain = asyncio.create_task(sidecar.wait_and_drain())
    try:
        await sidecar.start()
        yield sidecar
    finally:
        sidecar.request_stop()
        await drain


async def _grpc_rerank(port: int, query: str, metadata=()) -> pb.RerankResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(f"/{SERVICE_NAME}/Rerank", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pb.RerankResponse.FromString)
        return await call(pb.RerankRequest(query=query, documents=[pb.Document(id=str(i), text=t)
                                                                   for i, t in enumerate(DOCS)]),
                          timeout=10, metadata=metadata)


def _check_rerank_tree(spans, rerank) -> None:
    tokenize, queue = one(spans, tracing.TOKENIZE), one(spans, tracing.QUEUE)
    forwards = named(spans, tracing.FORWARD)
    assert rerank.kind.name == "SERVER" and f"{rerank.context.trace_id:032x}" == TRACE
    assert f"{rerank.parent.span_id:016x}" == PARENT
    assert forwards and all(is_child(s, rerank) for s in [tokenize, queue, *forwards])
    assert tokenize.end_time <= queue.start_time <= queue.end_time <= forwards[0].start_time
    assert forwards[-1].end_time <= rerank.end_time
    batch = forwards[0].attributes
    assert sum(f.attributes["rescore.batch_pairs"] for f in forwards) == len(DOCS)
    assert batch["rescore.batch_tokens"] >= batch["rescore.batch_pairs"] and 0 <= batch["rescore.padding_ratio"] < 1
    assert rerank.attributes["rescore.cache_hits"] == 0 and rerank.attributes["rescore.documents"] == len(DOCS)
    assert rerank.attributes["rescore.model"] == "tiny"
    texts = [str(v) for s in spans.get_finished_spans() for v in s.attributes.values()]
    assert not [t for t in texts if "fox" in t]  # no text without tracing_query_text


async def test_grpc_rerank_continues_the_trace_and_counts_cache_hits(spans, tiny_cross_encoder, capsys):
    logs.configure("INFO", "json")
    try:
        async with serving(tiny_cross_encoder) as sidecar:
            await _grpc_rerank(sidecar.port, "fox", (("traceparent", INCOMING),))
            rerank = one(spans, tracing.RERANK)
            _check_rerank_tree(spans, rerank)
            assert rerank.attributes["rescore.transport"] == "grpc"
            spans.clear()
            await _grpc_rerank(sidecar.port, "fox", (("traceparent", INCOMING),))  # every pair cached now
            again = one(spans, tracing.RERANK)
            assert again.attributes["rescore.cache_hits"] == len(DOCS)
            assert not named(spans, tracing.FORWARD) and not named(spans, tracing.QUEUE)
            with pytest.raises(grpc.aio.AioRpcError):
                await _grpc_rerank(sidecar.port, " ", (("traceparent", INCOMING),))
    finally:
        logs.configure("WARNING", "text")
    failed = [s for s in named(spans, tracing.RERANK) if s.status.status_code.name == "ERROR"]
    assert len(failed) == 1 and failed[0].attributes["rpc.grpc.status_code_name"] == "INVALID_ARGUMENT"
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    requests = [x for x in lines if x["logger"] == logs.REQUEST_LOGGER]
    assert [x["code"] for x in requests] == ["OK", "OK", "INVALID_ARGUMENT"]
    assert all(x["trace_id"] == TRACE and x["transport"] == "grpc" for x in requests)
    first = requests[0]
    assert first["span_id"] == f"{rerank.context.span_id:016x}" and first["documents"] == len(DOCS)
    assert first["took_ms"] >= first["compute_ms"] > 0 and first["queue_ms"] >= 0


async def test_http_rerank_continues_the_trace_from_headers(spans, tiny_cross_encoder):
    port = _free_port()
    async with serving(tiny_cross_encoder, http_port=port, tracing_query_text=True) as sidecar:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{sidecar.http_port}/v1/rerank",
                                    json={"query": "fox", "documents": DOCS}, headers={"traceparent": INCOMING}) as r:
                assert r.status == 200, await r.text()
    rerank = one(spans, tracing.RERANK)
    assert rerank.attributes["rescore.transport"] == "http"
    assert rerank.attributes["rescore.query"] == "fox"  # tracing_query_text: the operator's opt-in
    assert not [v for s in spans.get_finished_spans() for v in s.attributes.values() if "quick" in str(v)]
    forwards = named(spans, tracing.FORWARD)
    assert forwards and all(is_child(f, rerank) for f in forwards)


async def test_connector_clients_and_sidecar_share_one_trace(spans, tiny_cross_encoder):
    async with serving(tiny_cross_encoder) as sidecar:
        config = SidecarClientConfig(targets=(f"127.0.0.1:{sidecar.port}",), budget_ms=10000)
        with tracing.span("app"):
            async with AsyncSidecarClient(config) as client:
                await client.rerank("fox", DOCS)
        app = one(spans, "app")
        with tracing.span("sync-app"):
            sync_client = SidecarClient(config)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, tracing_context_call(lambda: sync_client.rerank("dog", DOCS)))
            finally:
                sync_client.close()
        sync_app = one(spans, "sync-app")
    for root in (app, sync_app):
        calls = [s for s in named(spans, tracing.SIDECAR) if is_child(s, root)]
        assert len(calls) == 1
        reranks = [s for s in named(spans, tracing.RERANK) if is_child(s, calls[0])]
        assert len(reranks) == 1 and reranks[0].context.trace_id == root.context.trace_id
        assert calls[0].attributes["rescore.endpoint"] == f"127.0.0.1:{sidecar.port}"


def tracing_context_call(function):
    """`function` to run on another thread in this context (its current span)."""
    import contextvars

    context = contextvars.copy_context()
    return lambda: context.run(function)
