"""Token check and TLS credentials, on an in-process gRPC server (loopback, no subprocess)."""
from __future__ import annotations

import ssl

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.transport.security import (BearerTokenInterceptor, http_ssl_context, request_is_authorized,
                                                           server_credentials)
from rescore_sidecar.sidecar.transport.grpc import SERVICE_NAME, GrpcTransport

RERANK = f"/{SERVICE_NAME}/Rerank"


async def _serve_with_token(token: str):
    server = grpc.aio.server(interceptors=[BearerTokenInterceptor(token)])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_generic_rpc_handlers((GrpcTransport().handler(),))  # no service yet: UNAVAILABLE past the check
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _rerank_error(channel: grpc.aio.Channel, metadata=None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(RERANK)(b"", metadata=metadata, timeout=5)
    return info.value


async def _rerank_code(channel: grpc.aio.Channel, metadata=None) -> grpc.StatusCode:
    return (await _rerank_error(channel, metadata)).code()


async def test_token_is_required_for_rerank_but_not_for_health():
    server, port = await _serve_with_token("s3cret")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await _rerank_code(channel) == grpc.StatusCode.UNAUTHENTICATED
            assert await _rerank_code(channel, [("authorization", "Bearer wrong")]) == grpc.StatusCode.UNAUTHENTICATED
            assert await _rerank_code(channel, [("authorization", "s3cret")]) == grpc.StatusCode.UNAUTHENTICATED
            assert await _rerank_code(channel, [("authorization", "Bearer s3cret2")]) == grpc.StatusCode.UNAUTHENTICATED
            # The right token passes the check and reaches the transport (still loading: UNAVAILABLE).
            assert await _rerank_code(channel, [("authorization", "Bearer s3cret")]) == grpc.StatusCode.UNAVAILABLE
            # Probes send no metadata: health stays open.
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)


def test_no_certificate_means_plaintext():
    assert server_credentials(SidecarConfig()) is None


def test_unreadable_tls_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.pem"
    config = SidecarConfig(tls_cert_file=str(missing), tls_key_file=str(missing))
    with pytest.raises(ValueError, match="cannot read TLS file .*nope.pem"):
        server_credentials(config)


async def test_tls_credentials_serve_a_client_that_trusts_the_ca(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    credentials = server_credentials(SidecarConfig(tls_cert_file=str(cert_file), tls_key_file=str(key_file)))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((GrpcTransport().handler(),))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        trusted = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", trusted) as channel:
            error = await _rerank_error(channel)  # TLS handshake done: the transport answers
            assert "models are still loading" in error.details()
        untrusted = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", untrusted) as channel:
            error = await _rerank_error(channel)  # a client that does not trust the CA never gets there
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "loading" not in error.details()
    finally:
        await server.stop(None)


def test_http_token_check_leaves_probes_open():
    assert request_is_authorized("/v1/rerank", "", "")  # no token configured
    assert request_is_authorized("/ready", "", "s3cret")
    assert request_is_authorized("/v1/rerank", "Bearer s3cret", "s3cret")
    assert not request_is_authorized("/v1/rerank", "", "s3cret")
    assert not request_is_authorized("/v1/rerank", "Bearer s3cret2", "s3cret")
    assert not request_is_authorized("/v1/rerank", "s3cret", "s3cret")


def test_http_tls_context(tmp_path):
    assert http_ssl_context(SidecarConfig()) is None
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="cannot load TLS files for the HTTP port"):
        http_ssl_context(SidecarConfig(tls_cert_file=missing, tls_key_file=missing))
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    context = http_ssl_context(SidecarConfig(tls_cert_file=str(cert_file), tls_key_file=str(key_file),
                                             tls_client_ca_file=str(ca_file)))
    assert context.verify_mode == ssl.CERT_REQUIRED  # mutual TLS, as on the gRPC port
