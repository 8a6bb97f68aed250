"""One proxy request seen from outside: its `rescore.proxy` server span (continuing the client's
`traceparent`) and its one request log line, both filled from what `http.record` notes."""
from __future__ import annotations

import contextvars
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from rescore_sidecar.connectors import logs, tracing

OWN_PREFIX = "/_rescore/"  # the proxy's own endpoints (health, metrics, openapi.json)
_noted: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("rescore_proxy_request", default=None)


def note(route: str, status: int, arm: str, outcome: str, added: float) -> None:
    """What the handler decided about the request (called once, by `http.record`)."""
    info = _noted.get()
    if info is not None:
        info.update(route=route, status=status, arm=arm, outcome=outcome, added_ms=round(added * 1000, 3))


async def observed(request: web.BaseRequest,
                   handle: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Runs `handle` inside the request's server span; logs the request's line at the end."""
    if request.raw_path.startswith(OWN_PREFIX):  # health probes and scrapes: neither spans nor log lines
        return await handle()
    started = time.perf_counter()
    info: dict[str, Any] = {}
    token = _noted.set(info)
    path = request.raw_path.partition("?")[0]
    try:
        with tracing.server_span(tracing.PROXY, request.headers,
                                 {"http.request.method": request.method, "url.path": path}) as span:
            response = await handle()
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status)
                span.set_attributes({f"rescore.{k}": v for k, v in info.items() if k in ("route", "outcome", "arm")
                                     and v != ""})
            logs.request_line("proxy request", {"method": request.method, "path": path,
                                                "status": response.status, **info,
                                                "took_ms": round((time.perf_counter() - started) * 1000, 3)})
            return response
    finally:
        _noted.reset(token)
