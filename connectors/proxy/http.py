"""What the proxy's handlers share: request state, body reading, relaying the engine's answer,
the proxy's own errors, and recording a request's metrics. Imports no handler (no cycles)."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from rescore_sidecar.connectors.proxy import observe
from rescore_sidecar.connectors.proxy.config import ProxyConfig
from rescore_sidecar.connectors.proxy.metrics import ProxyMetrics
from rescore_sidecar.connectors.proxy.upstream import Upstreams, response_headers

log = logging.getLogger("rescore.proxy")

# Bodies up to this size are read whole (fast path, and a failed connection can be retried
# on the next upstream); larger ones are streamed through.
BUFFER_BYTES = 1024 * 1024
STREAM_CHUNK = 64 * 1024


class RequestTooLarge(Exception):
    pass


@dataclasses.dataclass
class ProxyState:
    config: ProxyConfig
    upstreams: Upstreams
    metrics: ProxyMetrics
    session: aiohttp.ClientSession | None = None
    # The AsyncRescorer when a sidecar is configured (proxy.search.create_rescorer).
    rescorer: Any = None


def error_response(status: int, kind: str, reason: str) -> web.Response:
    """An error of the proxy itself, shaped like an engine error so clients can parse it."""
    body = {"error": {"type": kind, "reason": reason}, "status": status}
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json")


def split_target(request: web.BaseRequest) -> tuple[str, str]:
    """(raw path, raw query string) exactly as the client sent them."""
    path, _, query = request.raw_path.partition("?")
    return path, query


async def read_body(request: web.BaseRequest, limit: int) -> tuple[Any, bool]:
    """(body to send upstream, whether it can be sent again).

    Small or unknown-size-but-small bodies come back as bytes; large ones as a stream that
    raises RequestTooLarge past `limit`.
    """
    if not request.body_exists:
        return None, True
    length = request.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"request body of {length} bytes exceeds the {limit}-byte limit")
    if length is not None and length <= BUFFER_BYTES:
        return await request.content.readexactly(length) if length else b"", True

    async def stream() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.content.iter_chunked(STREAM_CHUNK):
            seen += len(chunk)
            if seen > limit:
                raise RequestTooLarge(f"request body exceeds the {limit}-byte limit")
            yield chunk

    return stream(), False


async def read_limited(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes (for requests the proxy inspects)."""
    length = request.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"request body of {length} bytes exceeds the {limit}-byte limit")
    if length is not None:
        return await request.content.readexactly(length) if length else b""
    chunks, seen = [], 0
    async for chunk in request.content.iter_chunked(STREAM_CHUNK):
        seen += len(chunk)
        if seen > limit:
            raise RequestTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def relay(request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                extra_headers: dict[str, str] | None = None) -> tuple[web.StreamResponse, float]:
    """Copies the engine's answer to the client untouched; returns it and the time spent
    waiting on the engine's body."""
    headers = response_headers(upstream.headers)
    if extra_headers:
        headers.update(extra_headers)
    length = upstream.content_length
    no_body = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
    if no_body:
        # Keep the engine's Content-Length on HEAD: it describes the GET body.
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=headers)
        if length is not None and upstream.status not in (204, 304):
            response.content_length = length
        await response.prepare(request)
        await response.write_eof()
        return response, 0.0
    if length is not None and length <= BUFFER_BYTES:
        t0 = time.perf_counter()
        data = await upstream.read()
        waited = time.perf_counter() - t0
        response = web.Response(status=upstream.status, reason=upstream.reason, body=data,
                                headers=headers)
        if "Content-Type" not in headers:
            # aiohttp would add application/octet-stream; the engine sent none.
            response.headers.popall("Content-Type", None)
        return response, waited
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if length is not None:
        response.content_length = length
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    waited = 0.0
    iterator = upstream.content.iter_chunked(STREAM_CHUNK).__aiter__()
    while True:
        t0 = time.perf_counter()
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            break
        except (aiohttp.ClientError, asyncio.TimeoutError):
            # The engine broke off mid-body and our headers are out: cutting the connection is
            # the only way left to tell the client its body is incomplete.
            log.warning("upstream closed mid-response; closing the client connection")
            if request.transport is not None:
                request.transport.close()
            return response, waited
        finally:
            waited += time.perf_counter() - t0
        await response.write(chunk)
    await response.write_eof()
    return response, waited


def record(state: ProxyState, route: str, status: int, arm: str, outcome: str,
           added: float) -> None:
    state.metrics.observe(route, str(status), arm, outcome, max(added, 0.0))
    observe.note(route, status, arm, outcome, max(added, 0.0))
