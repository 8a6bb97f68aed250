"""Transport security: TLS / mutual TLS credentials and the shared bearer-token check."""
from __future__ import annotations

import hmac
import pathlib
from typing import Awaitable, Callable

import grpc

from rescore_sidecar.sidecar.config import SidecarConfig

# Kubernetes gRPC probes and grpc_health_probe send no metadata: health and reflection stay open.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def server_credentials(config: SidecarConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for a plaintext port."""
    if not config.tls_cert_file:
        return None

    def read(path: str) -> bytes:
        try:
            return pathlib.Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read TLS file {path}: {exc}") from exc

    client_ca = read(config.tls_client_ca_file) if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(read(config.tls_key_file), read(config.tls_cert_file))],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request, context: grpc.aio.ServicerContext):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or invalid bearer token (metadata 'authorization: Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                details: grpc.HandlerCallDetails):
        if details.method.startswith(UNAUTHENTICATED_PREFIXES):
            return await continuation(details)
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        sent_bytes = sent.encode() if isinstance(sent, str) else bytes(sent)
        if hmac.compare_digest(sent_bytes, self._expected):
            return await continuation(details)
        return self._deny
