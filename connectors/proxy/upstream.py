"""Talking to the engine: connection pool, TLS, URL and header rewriting, round-robin failover."""
from __future__ import annotations

import itertools
import ssl
from typing import Any, Iterable, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from rescore_sidecar.connectors import tracing
from rescore_sidecar.connectors.proxy.config import ProxyConfig

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded. Content-Length is
# recomputed by the side that writes the body.
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Proxy-Connection"))
# aiohttp adds these to client requests unless told not to; the proxy sends only what the client sent.
AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamUnavailable(Exception):
    """No upstream accepted a connection (all refused, unreachable or TLS failed)."""


def ssl_context(config: ProxyConfig) -> ssl.SSLContext | bool | None:
    """TLS settings for https upstreams: default verification unless configured otherwise."""
    if not any(u.startswith("https://") for u in config.upstreams):
        return None
    ctx = ssl.create_default_context(cafile=config.upstream_ca)
    if config.upstream_insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.upstream_client_cert:
        ctx.load_cert_chain(config.upstream_client_cert, config.upstream_client_key)
    return ctx


def make_session(config: ProxyConfig) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0,
                                     ssl=ssl_context(config) or True, keepalive_timeout=60,
                                     enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=config.upstream_timeout,
                                    sock_connect=config.connect_timeout)
    # auto_decompress=False: bodies the proxy does not touch go back byte for byte, compressed.
    # Cookies are the client's business: no cookie jar.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=AUTO_HEADERS)


def forward_headers(headers: CIMultiDictProxy[str] | Mapping[str, str],
                    drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The client's request headers minus hop-by-hop ones, Host and anything in `drop`."""
    connection_tokens = {t.strip().lower() for v in headers.getall("Connection", [])
                         for t in v.split(",")} if hasattr(headers, "getall") else set()
    # Expect: 100-continue is answered by the proxy itself (see app.handle).
    skip = (HOP_BY_HOP | connection_tokens | {"host", "content-length", "expect"}
            | {d.lower() for d in drop})
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def response_headers(headers: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The engine's response headers minus hop-by-hop ones and Content-Length (set on write)."""
    connection_tokens = {t.strip().lower() for v in headers.getall("Connection", [])
                         for t in v.split(",")}
    skip = HOP_BY_HOP | connection_tokens | {"content-length"} | {d.lower() for d in drop}
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


class Upstreams:
    """Round-robin over the configured engine URLs; a connection failure moves on to the next."""

    def __init__(self, urls: Iterable[str]):
        self.bases = [URL(u.rstrip("/")) for u in urls]
        self._next = itertools.cycle(range(len(self.bases)))

    def url_for(self, base: URL, raw_path: str, raw_query: str) -> URL:
        path = base.raw_path.rstrip("/") + raw_path
        return URL.build(scheme=base.scheme, authority=base.raw_authority, path=path,
                         query_string=raw_query, encoded=True)

    def order(self) -> list[URL]:
        start = next(self._next)
        return self.bases[start:] + self.bases[:start]

    async def request(self, session: aiohttp.ClientSession, method: str, raw_path: str,
                      raw_query: str, headers: CIMultiDict[str], body: Any,
                      replayable: bool) -> aiohttp.ClientResponse:
        """Sends the request to the first upstream that accepts a connection.

        Only connection-level failures fail over, and only when the body can be sent again
        (`replayable`); anything the engine answered, errors included, is the answer.
        """
        errors = []
        tracing.inject(headers)  # the current span's traceparent replaces the client's (no-op when off)
        for base in self.order():
            try:
                return await session.request(method, self.url_for(base, raw_path, raw_query),
                                             headers=headers, data=body, allow_redirects=False,
                                             compress=False, auto_decompress=False)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                errors.append(f"{base.host}:{base.port}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
                if not replayable:
                    break
        raise UpstreamUnavailable("; ".join(errors))
