"""hypothesis over rescore.v1.RerankRequest against a live sidecar (issue #24): random field values,
sizes at and past every limit, invalid UTF-8 in string fields, huge repeated fields, unknown enum
values. Every answer is OK or a client-error status (never INTERNAL/UNKNOWN, never a hang), and the
server still scores a valid request afterwards."""
from __future__ import annotations

import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc
from rescore_sidecar.tools.sidecar_process import sidecar_process

pytestmark = pytest.mark.integration

MAX_DOCUMENTS, MAX_BYTES = 16, 20000
EXAMPLES = 40  # ~15 s of requests on 2 cores
CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
UINT32 = st.integers(0, 2**32 - 1)
# Around each limit: 0, 1, just under, at and just past, and far past.
DOC_COUNTS = st.sampled_from([0, 1, MAX_DOCUMENTS - 1, MAX_DOCUMENTS, MAX_DOCUMENTS + 1, 5000])
TEXT_SIZES = st.sampled_from([0, 1, 100, MAX_BYTES // MAX_DOCUMENTS, MAX_BYTES - 200, MAX_BYTES + 1])


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand so that it may hold invalid UTF-8."""
    length, size = b"", len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([number << 3 | 2]) + length + payload


@st.composite
def requests(draw) -> bytes:
    count, size = draw(DOC_COUNTS), draw(TEXT_SIZES)
    text = draw(st.text(max_size=20)) or "x"
    request = pb.RerankRequest(
        query=draw(st.one_of(st.text(max_size=50), st.just(" "), st.just("q" * (MAX_BYTES + 1)))),
        documents=[pb.Document(id=str(i), text=(text * size)[:size]) for i in range(count)],
        model=draw(st.sampled_from(["", "ce", "missing", "\x00"])),
        top_n=draw(UINT32), score_mode=draw(st.integers(-5, 5)), max_query_tokens=draw(UINT32),
        max_document_tokens=draw(UINT32), request_id=draw(st.text(max_size=10)))
    raw = request.SerializeToString()
    bad = draw(st.sampled_from(["none", "query", "model", "document"]))
    junk = draw(st.binary(min_size=1, max_size=8)) + b"\xff\xfe"  # never valid UTF-8
    if bad in ("query", "model"):
        raw += _field(1 if bad == "query" else 3, junk)  # a repeated scalar field: the last one wins
    elif bad == "document":
        raw += _field(2, _field(2, junk))
    return raw


@pytest.fixture(scope="module")
def sidecar(tiny_cross_encoder):
    extra = ["--max-documents", str(MAX_DOCUMENTS), "--max-request-bytes", str(MAX_BYTES)]
    with sidecar_process({"ce": tiny_cross_encoder}, extra_args=extra) as proc:
        yield proc


def test_rerank_survives_generated_requests(sidecar):
    started = time.monotonic()
    with grpc.insecure_channel(sidecar.address, options=[("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary("/rescore.v1.Reranker/Rerank", request_serializer=lambda raw: raw,
                                   response_deserializer=pb.RerankResponse.FromString)

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(requests())
        def one(raw: bytes) -> None:
            try:
                reply = call(raw, timeout=20)
            except grpc.RpcError as exc:
                assert exc.code() in CLIENT_ERRORS, (exc.code(), exc.details())
                assert exc.details()
                return
            assert all(0 <= r.index < MAX_DOCUMENTS for r in reply.results)
            scores = [r.score for r in reply.results]
            assert scores == sorted(scores, reverse=True)

        one()
        reply = rescore_pb2_grpc.RerankerStub(channel).Rerank(
            pb.RerankRequest(query="wing", documents=[pb.Document(text="wing flutter"), pb.Document(text="jet")]),
            timeout=30)
        assert len(reply.results) == 2
    print(f"gRPC fuzz: {EXAMPLES} requests in {time.monotonic() - started:.1f}s")
