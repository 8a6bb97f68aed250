"""The proxy server: aiohttp low-level server, one handler, pass-through by default."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.config import ProxyConfig
from rescore_sidecar.connectors.proxy.metrics import ProxyMetrics, create_metrics
from rescore_sidecar.connectors.proxy.upstream import (UpstreamUnavailable, Upstreams, forward_headers,
                                       make_session, response_headers)

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
    # Set by rescore_sidecar.connectors.proxy.search when a sidecar is configured.
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


async def passthrough(request: web.BaseRequest, state: ProxyState, route: str,
                      raw_path: str, raw_query: str,
                      extra_headers: dict[str, str] | None = None,
                      outcome: str = "passthrough", arm: str = "") -> web.StreamResponse:
    """Forwards a request the proxy does not look into, and its answer, unchanged."""
    started = time.perf_counter()
    body, replayable = await read_body(request, state.config.max_request_bytes)
    headers = forward_headers(request.headers)
    if body is not None and not isinstance(body, bytes) and request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    t0 = time.perf_counter()
    try:
        upstream = await state.upstreams.request(state.session, request.method, raw_path,
                                                 raw_query, headers, body, replayable)
    except aiohttp.ClientError as exc:
        # The size limit tripped while streaming the body: aiohttp wraps our exception.
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, RequestTooLarge):
            cause = cause.__cause__ or cause.__context__
        raise (cause or exc) from None
    waited = time.perf_counter() - t0
    try:
        response, body_wait = await relay(request, upstream, extra_headers)
    finally:
        upstream.release()
    record(state, route, response.status, arm, outcome,
           time.perf_counter() - started - waited - body_wait)
    return response


def record(state: ProxyState, route: str, status: int, arm: str, outcome: str,
           added: float) -> None:
    state.metrics.observe(route, str(status), arm, outcome, max(added, 0.0))


async def handle(request: web.BaseRequest, state: ProxyState) -> web.StreamResponse:
    raw_path, raw_query = split_target(request)
    route = routes.classify(request.method, raw_path)
    try:
        if route == routes.HEALTH:
            return web.json_response({"status": "ok", "upstreams": len(state.upstreams.bases),
                                      "rescoring": state.rescorer is not None})
        if route == routes.METRICS:
            data, content_type = state.metrics.render()
            return web.Response(body=data, headers={"Content-Type": content_type})
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The proxy answers Expect itself (the header is not forwarded): refuse a body that
            # is too large before the client sends it, or invite it.
            length = request.content_length
            if length is not None and length > state.config.max_request_bytes:
                raise RequestTooLarge(f"request body of {length} bytes exceeds the "
                                      f"{state.config.max_request_bytes}-byte limit")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if route in (routes.SEARCH, routes.MSEARCH):
            from rescore_sidecar.connectors.proxy.search import handle_search

            return await handle_search(request, state, route, raw_path, raw_query)
        return await passthrough(request, state, route, raw_path, raw_query)
    except RequestTooLarge as exc:
        record(state, route, 413, "", "error", 0.0)
        response = error_response(413, "proxy_request_too_large", str(exc))
        response.force_close()  # the unread rest of the body must not be taken for a request
        return response
    except UpstreamUnavailable as exc:
        state.metrics.upstream_errors.labels("unreachable").inc()
        record(state, route, 502, "", "error", 0.0)
        return error_response(502, "proxy_upstream_unreachable", f"no upstream reachable: {exc}")
    except asyncio.TimeoutError:
        state.metrics.upstream_errors.labels("timeout").inc()
        record(state, route, 504, "", "error", 0.0)
        return error_response(504, "proxy_upstream_timeout",
                              f"upstream did not answer within {state.config.upstream_timeout}s")
    except aiohttp.ClientError as exc:
        # The engine dropped the connection mid-request or mid-answer.
        state.metrics.upstream_errors.labels("disconnected").inc()
        record(state, route, 502, "", "error", 0.0)
        return error_response(502, "proxy_upstream_error", f"upstream failed: {type(exc).__name__}")


async def start(config: ProxyConfig, *, host: str | None = None,
                port: int | None = None) -> tuple[web.ServerRunner, ProxyState, int]:
    """Starts the proxy on the running loop; returns the runner (cleanup() stops it), the
    state and the bound port (useful with port 0)."""
    state = ProxyState(config=config, upstreams=Upstreams(config.upstreams),
                       metrics=create_metrics())
    state.session = make_session(config)
    if config.sidecars:
        from rescore_sidecar.connectors.proxy.search import create_rescorer

        state.rescorer = create_rescorer(config)

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return await handle(request, state)

    # auto_decompress=False: compressed request bodies reach the engine as sent.
    server = web.Server(handler, auto_decompress=False, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host if host is not None else config.listen_host,
                       config.listen_port if port is None else port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    return runner, state, bound


async def stop(runner: web.ServerRunner, state: ProxyState) -> None:
    await runner.cleanup()
    if state.session is not None:
        await state.session.close()
    if state.rescorer is not None:
        await state.rescorer.close()
