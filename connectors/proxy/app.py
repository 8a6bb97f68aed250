"""The proxy server: aiohttp low-level server, one handler, pass-through by default."""
from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.observe import observed
from rescore_sidecar.connectors.proxy.config import ProxyConfig
from rescore_sidecar.connectors.proxy.http import (ProxyState, RequestTooLarge, error_response, read_body, record,
                                                   relay, split_target)
from rescore_sidecar.connectors.proxy.metrics import create_metrics
from rescore_sidecar.connectors.proxy.search import create_rescorer, handle_search
from rescore_sidecar.connectors.proxy.upstream import UpstreamUnavailable, Upstreams, forward_headers, make_session

__all__ = ["ProxyState", "RequestTooLarge", "error_response", "handle", "passthrough", "start", "stop"]


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
        if route == routes.OWN_UNKNOWN:
            parts = [part for part in raw_path.split("/") if part]
            allowed = routes.OWN_METHODS.get(parts[1]) if len(parts) == 2 else None
            if allowed is None:
                return error_response(404, "proxy_not_found", f"no proxy endpoint {raw_path}")
            response = error_response(405, "proxy_method_not_allowed", f"{request.method} {raw_path}: use "
                                      + " or ".join(allowed))
            response.headers["Allow"] = ", ".join(allowed)
            return response
        if route == routes.FEEDBACK:
            from rescore_sidecar.connectors.proxy.feedback import handle_feedback

            return await handle_feedback(request, state)
        if route == routes.OPENAPI:
            from rescore_sidecar.connectors.proxy.openapi import proxy_document

            return web.json_response(proxy_document())
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The proxy answers Expect itself (the header is not forwarded): refuse a body that
            # is too large before the client sends it, or invite it.
            length = request.content_length
            if length is not None and length > state.config.max_request_bytes:
                raise RequestTooLarge(f"request body of {length} bytes exceeds the "
                                      f"{state.config.max_request_bytes}-byte limit")
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if route in (routes.SEARCH, routes.MSEARCH):
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
        state.rescorer = create_rescorer(config)

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return await observed(request, lambda: handle(request, state))

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
