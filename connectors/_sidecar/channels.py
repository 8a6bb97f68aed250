"""The client's gRPC channels: transport security (TLS, mutual TLS, bearer token) for both clients,
and the channel caches (`Channels` for the sync client, `AsyncChannels` for the asyncio one: the one
place the two clients differ, besides `concurrency`)."""
from __future__ import annotations

import asyncio
import pathlib
import threading
import warnings
from typing import Any

import grpc

from rescore_sidecar.connectors._sidecar.endpoints import Endpoints
from rescore_sidecar.connectors.config import SidecarClientConfig
from rescore_sidecar.proto.rescore.v1 import rescore_pb2_grpc


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


class Channels:
    """The sync client's gRPC channels: one per endpoint address, opened on first use. Thread-safe.
    `transport` (`connectors.testing.MockSidecar`) stands in for them in tests."""

    def __init__(self, endpoints: Endpoints, config: SidecarClientConfig, transport: Any = None):
        self._endpoints = endpoints
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._transport = transport
        self._stubs: dict[str, tuple[grpc.Channel, rescore_pb2_grpc.RerankerStub]] = {}
        self._lock = threading.Lock()

    def stub(self, address: str) -> rescore_pb2_grpc.RerankerStub:
        if self._transport is not None:
            return self._transport.stub(address)
        with self._lock:
            if address not in self._stubs:
                self._close_stale(keep=address)
                options = self._endpoints.channel_options(address, self._options, self._credentials is not None)
                channel = (grpc.secure_channel(address, self._credentials, options) if self._credentials
                           else grpc.insecure_channel(address, options))
                self._stubs[address] = (channel, rescore_pb2_grpc.RerankerStub(channel))
            return self._stubs[address][1]

    def open_addresses(self) -> list[str]:
        with self._lock:
            return list(self._stubs)

    def _close_stale(self, keep: str) -> None:
        """Closes channels to endpoints the targets no longer resolve to (called with the lock held,
        when a new endpoint's channel is opened: that is when the set of endpoints changed)."""
        current = self._endpoints.current_addresses() | {keep}
        for address in [a for a in self._stubs if a not in current]:
            self._stubs.pop(address)[0].close()

    def close(self) -> None:
        if self._transport is not None and hasattr(self._transport, "close"):
            self._transport.close()
        with self._lock:
            stubs, self._stubs = self._stubs, {}
        for channel, _ in stubs.values():
            channel.close()


class AsyncChannels:
    """The asyncio client's channels: one per (event loop, endpoint address), since a grpc.aio
    channel belongs to the loop that opened it."""

    def __init__(self, endpoints: Endpoints, config: SidecarClientConfig, transport: Any = None):
        self._endpoints = endpoints
        self._credentials = channel_credentials(config)
        self._options = channel_options(config)
        self._transport = transport
        self._stubs: dict[tuple[int, str], tuple[grpc.aio.Channel, rescore_pb2_grpc.RerankerStub]] = {}

    def stub(self, address: str) -> rescore_pb2_grpc.RerankerStub:
        if self._transport is not None:
            return self._transport.async_stub(address)
        key = (id(asyncio.get_running_loop()), address)
        if key not in self._stubs:
            self._close_stale(keep=address)
            options = self._endpoints.channel_options(address, self._options, self._credentials is not None)
            channel = (grpc.aio.secure_channel(address, self._credentials, options) if self._credentials
                       else grpc.aio.insecure_channel(address, options))
            self._stubs[key] = (channel, rescore_pb2_grpc.RerankerStub(channel))
        return self._stubs[key][1]

    def open_addresses(self) -> list[str]:
        return [address for _, address in self._stubs]

    def _close_stale(self, keep: str) -> None:
        """Closes (in the background) channels to endpoints the targets no longer resolve to; called
        when a new endpoint's channel is opened, which is when the set of endpoints changed."""
        current = self._endpoints.current_addresses() | {keep}
        for key in [k for k in self._stubs if k[1] not in current]:
            channel = self._stubs.pop(key)[0]
            if key[0] == id(asyncio.get_running_loop()):
                asyncio.get_running_loop().create_task(channel.close())

    async def close(self) -> None:
        """Closes the channels this event loop opened (others belong to loops that are gone)."""
        if self._transport is not None and hasattr(self._transport, "close"):
            self._transport.close()
        stubs, self._stubs = self._stubs, {}
        loop_id = id(asyncio.get_running_loop())
        for (owner, _), (channel, _) in stubs.items():
            if owner == loop_id:
                try:
                    await channel.close()
                except RuntimeError:  # its loop's machinery is already shut down
                    pass
