"""Transport security for both ports: TLS / mutual TLS from one set of PEM files, and the bearer-token
check (a gRPC interceptor; a function the HTTP middleware calls)."""
from __future__ import annotations

import hmac
import pathlib
import ssl
from typing import Awaitable, Callable

import grpc

from rescore_sidecar.sidecar.config import SidecarConfig

# Kubernetes gRPC probes and grpc_health_probe send no metadata: health and reflection stay open.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
OPEN_HTTP_PATHS = frozenset({"/health", "/ready", "/live"})  # the HTTP probes, likewise


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
        self._token = token

        async def deny(request, context: grpc.aio.ServicerContext):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or invalid bearer token (metadata 'authorization: Bearer <token>')")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                details: grpc.HandlerCallDetails):
        if details.method.startswith(UNAUTHENTICATED_PREFIXES):
            return await continuation(details)
        if token_matches(dict(details.invocation_metadata or ()).get("authorization", ""), self._token):
            return await continuation(details)
        return self._deny


def token_matches(sent: str | bytes, token: str) -> bool:
    """Whether `sent` (an authorization header or metadata value) is `Bearer <token>`, compared in
    constant time."""
    sent_bytes = sent.encode() if isinstance(sent, str) else bytes(sent)
    return hmac.compare_digest(sent_bytes, f"Bearer {token}".encode())


def request_is_authorized(path: str, authorization: str, token: str) -> bool:
    """The HTTP port's check: open probe paths and a server without a token need none."""
    return not token or path in OPEN_HTTP_PATHS or token_matches(authorization, token)


def http_ssl_context(config: SidecarConfig) -> ssl.SSLContext | None:
    """The same TLS / mutual TLS for the HTTP port as `server_credentials` gives the gRPC port,
    from the same PEM files."""
    if not config.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        if config.tls_client_ca_file:
            context.load_verify_locations(config.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS files for the HTTP port: {exc}") from exc
    return context
