"""transport/errors.py: one classification gives the gRPC status and the HTTP answer; the typed
reason over a real gRPC wire (an in-process server with the real GrpcTransport) as the connectors
read it; the reasons are the proto's ErrorReason names, unchanged on the wire."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import types

import grpc
import pytest

from rescore_sidecar.connectors import RequestRejected, SidecarClient, SidecarClientConfig, SidecarOverloaded
from rescore_sidecar.connectors._sidecar.errors import error_info, from_rpc_error
import torch

from rescore_sidecar.connectors._sidecar import errors as client_errors
from rescore_sidecar.sidecar.core import errors
from rescore_sidecar.sidecar.transport.errors import ANSWERS, to_http, to_status
from rescore_sidecar.sidecar.transport.grpc import GrpcTransport

CASES = [
    (errors.InvalidRequest("query is empty"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
    (errors.ModelNotFound("model 'x' is not served here"), grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    (errors.RequestTooLarge("5 documents in one request; the limit is 4"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "REQUEST_TOO_LARGE"),
    (errors.Overloaded("model 'm' has 9 sequences queued; retry later"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "OVERLOADED"),
    (errors.DeadlineTooShort("1 ms left"), grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_TOO_SHORT"),
    (errors.NotReady("draining"), grpc.StatusCode.UNAVAILABLE, "NOT_READY"),
    (asyncio.TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_DEVICE_MEMORY"),
    (MemoryError(), grpc.StatusCode.RESOURCE_EXHAUSTED, "OUT_OF_DEVICE_MEMORY"),  # host memory
    (KeyError("bug"), grpc.StatusCode.INTERNAL, "INTERNAL"),
]


@pytest.mark.parametrize("exc,code,reason", CASES, ids=lambda v: getattr(v, "name", None) or str(v)[:20])
def test_to_status(exc, code, reason):
    status = to_status(exc)
    assert (status.code, status.reason) == (code, reason)
    assert reason in errors.REASONS
    if isinstance(exc, errors.RescoreError):
        assert status.message == str(exc)  # the message is kept as raised


def test_every_reason_is_produced():
    assert {to_status(exc).reason for exc, _, _ in CASES} == set(errors.REASONS)


def test_out_of_memory_is_recognised_by_type_not_by_name():
    lookalike = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")
    assert to_status(lookalike).reason == "INTERNAL"


def test_wire_strings_are_unchanged():
    """Clients in the field read these strings: the proto enum must keep exactly these names."""
    assert errors.REASONS == ("INVALID_REQUEST", "MODEL_NOT_FOUND", "REQUEST_TOO_LARGE", "OVERLOADED",
                              "DEADLINE_TOO_SHORT", "DEADLINE_EXCEEDED", "NOT_READY", "OUT_OF_DEVICE_MEMORY",
                              "INTERNAL")
    assert (errors.DOMAIN, errors.DETAILS_KEY) == ("rescore.sidecar", "grpc-status-details-bin")
    assert client_errors.DOMAIN == errors.DOMAIN


def test_one_answer_per_reason_for_both_transports():
    assert set(ANSWERS) == set(errors.REASONS)
    for exc, code, reason in CASES:
        status, http = to_status(exc), to_http(exc)
        assert http.grpc_code == status.code.name  # one metrics label set for both ports
        assert http.message == status.message
        assert (http.retry_after is not None) == (reason in ("OVERLOADED", "NOT_READY", "OUT_OF_DEVICE_MEMORY"))


class _Service:
    """Just enough of RerankService for GrpcTransport: every call raises `exc`."""

    def __init__(self, exc: Exception):
        self.exc = exc
        self.backends = {"m": None}
        self.default_model = "m"
        self.config = types.SimpleNamespace(log_documents=False)

    async def rerank(self, request, time_remaining):
        raise self.exc


async def _serve(service):
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((GrpcTransport(service).handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("exc,expected,reason", [
    (errors.RequestTooLarge("10000 documents in one request; the limit is 1000"), RequestRejected, "too_large"),
    (errors.Overloaded("queue full, retry later"), SidecarOverloaded, "overloaded"),
    # Reworded messages change nothing: the reason travels apart from the text.
    (errors.RequestTooLarge("too big"), RequestRejected, "too_large"),
    (errors.Overloaded("the limit is 5"), SidecarOverloaded, "overloaded"),
])
async def test_reason_over_the_wire(exc, expected, reason):
    server, address = await _serve(_Service(exc))
    try:
        channel = grpc.aio.insecure_channel(address)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/rescore.v1.Reranker/Rerank")(b"\n\x01q\x12\x03\x12\x01x", timeout=5)
        await channel.close()
        assert error_info(info.value).reason == to_status(exc).reason
        failure = from_rpc_error(info.value, address)
        assert type(failure) is expected and failure.reason == reason
        # And the sync client, end to end (its own thread: this test's loop runs the server).
        client = SidecarClient(SidecarClientConfig(targets=(address,), retry=False, budget_ms=5000))
        got = await asyncio.to_thread(lambda: pytest.raises(expected, client.rerank, "q", ["x"]))
        client.close()
        assert got.value.reason == reason
    finally:
        await server.stop(None)


async def test_loading_sidecar_says_not_ready():
    server, address = await _serve(None)
    try:
        channel = grpc.aio.insecure_channel(address)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/rescore.v1.Reranker/Rerank")(b"", timeout=5)
        await channel.close()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(info.value).reason == "NOT_READY"
    finally:
        await server.stop(None)


def test_classifying_an_error_never_imports_torch():
    code = ("import sys; from rescore_sidecar.sidecar.transport.errors import to_status; "
            "assert to_status(MemoryError()).reason == 'OUT_OF_DEVICE_MEMORY'; "
            "assert to_status(RuntimeError('x')).reason == 'INTERNAL'; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
