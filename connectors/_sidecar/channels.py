"""Transport security of the sidecar channels (TLS, mutual TLS, bearer token), for both shells."""
from __future__ import annotations

import pathlib
import warnings

import grpc

from rescore_sidecar.connectors.config import SidecarClientConfig


def _read(path: str, what: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"sidecar {what} {path}: {exc.strerror or exc}") from None


def channel_credentials(config: SidecarClientConfig) -> grpc.ChannelCredentials | None:
    """TLS / mutual-TLS credentials from the PEM files, or None for a plaintext channel.
    Unreadable files are a ValueError now (at start-up) rather than a fallback on every search."""
    if not config.uses_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(config.ca_file, "ca_file") if config.ca_file else None,
        private_key=_read(config.client_key_file, "client_key_file") if config.client_key_file else None,
        certificate_chain=_read(config.client_cert_file, "client_cert_file") if config.client_cert_file else None)


def channel_options(config: SidecarClientConfig) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", config.tls_server_name)] if config.tls_server_name else []


def auth_metadata(config: SidecarClientConfig) -> tuple[tuple[str, str], ...] | None:
    """`authorization: Bearer <token>` call metadata, or None without a token."""
    token = config.auth_token
    if config.auth_token_file:
        token = _read(config.auth_token_file, "auth_token_file").decode().strip()
    if not token:
        return None
    if not config.uses_tls:
        warnings.warn("the sidecar bearer token is sent over a plaintext channel; set tls/ca_file", stacklevel=3)
    return (("authorization", f"Bearer {token}"),)
