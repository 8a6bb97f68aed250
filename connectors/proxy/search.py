"""Search and multi-search requests: strip the toggles, let the connector core plan and rescore.

The HTTP side lives here (bodies, encodings, NDJSON, headers); windowing, text extraction,
`_source` transparency, pagination, deadline, breaker and fallback are the connector core's,
reached through `connectors.proxy.rescoring`.
"""
from __future__ import annotations

import asyncio
import json
import time
import zlib
from typing import Any

import aiohttp
from aiohttp import web

from connectors.proxy import routes
from connectors.proxy.app import (ProxyState, error_response, passthrough, read_limited, record)
from connectors.proxy.config import ProxyConfig
from connectors.proxy.rescoring import Outcome, Rescorer, create_rescorer as _create
from connectors.proxy.toggle import (ARM_KEY_HEADER, BODY_SECTION, TOGGLE_HEADER, Decision,
                                     ToggleError, decide)
from connectors.proxy.upstream import forward_headers, response_headers

# Response headers the proxy sets on every search it handles.
MARK_HEADER = "X-Rescore"
ARM_HEADER = "X-Rescore-Arm"
FALLBACK_HEADER = "X-Rescore-Fallback"
_DROP_REQUEST = (TOGGLE_HEADER, ARM_KEY_HEADER)


def create_rescorer(config: ProxyConfig) -> Rescorer:
    return _create(config)


def _decode(data: bytes, encoding: str) -> bytes | None:
    """gzip/deflate bodies inflated; None for encodings the proxy does not handle."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            # wbits 47: gzip or zlib header detected automatically.
            return zlib.decompress(data, 47)
        except zlib.error:
            try:
                return zlib.decompress(data, -15)  # raw deflate
            except zlib.error:
                return None
    return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _marks(outcome: str, arm: str, reason: str = "") -> dict[str, str]:
    headers = {MARK_HEADER: outcome}
    if arm:
        headers[ARM_HEADER] = arm
    if reason:
        headers[FALLBACK_HEADER] = reason
    return headers


def _summary(outcomes: list[Outcome]) -> tuple[str, str]:
    """One mark for a multi-search: fallback if any fell back, reranked if any was, else off."""
    reasons = sorted({o.reason for o in outcomes if o.outcome == "fallback" and o.reason})
    if any(o.outcome == "fallback" for o in outcomes):
        return "fallback", ",".join(reasons)
    if any(o.outcome == "reranked" for o in outcomes):
        return "reranked", ""
    return "off", ""


class _Untouched(Exception):
    """The body cannot be inspected: forward it as received, the engine answers."""


def _parse_search(data: bytes) -> dict[str, Any] | None:
    if not data.strip():
        return None
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _Untouched from None
    if not isinstance(body, dict):
        raise _Untouched
    return body


def _parse_msearch(data: bytes) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    lines = data.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    if len(lines) % 2:
        raise _Untouched
    pairs = []
    for i in range(0, len(lines), 2):
        header = _parse_search(lines[i]) or {}
        pairs.append((header, _parse_search(lines[i + 1])))
    return pairs


async def _forward_raw(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                       raw_query: str, data: bytes, headers, marks: dict[str, str],
                       outcome: str, arm: str, started: float) -> web.StreamResponse:
    from connectors.proxy.app import relay

    t0 = time.perf_counter()
    upstream = await state.upstreams.request(state.session, request.method, raw_path, raw_query,
                                             headers, data if data else None, True)
    waited = time.perf_counter() - t0
    try:
        response, body_wait = await relay(request, upstream, marks)
    finally:
        upstream.release()
    record(state, route, response.status, arm, outcome,
           time.perf_counter() - started - waited - body_wait)
    return response


async def handle_search(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                        raw_query: str) -> web.StreamResponse:
    started = time.perf_counter()
    raw_query, query_toggle = routes.split_toggle(raw_query)
    header_toggle = request.headers.get(TOGGLE_HEADER)
    key = request.headers.get(ARM_KEY_HEADER)
    headers = forward_headers(request.headers, drop=_DROP_REQUEST)
    raw = await read_limited(request, state.config.max_request_bytes) if request.body_exists else b""
    encoding = request.headers.get("Content-Encoding", "")
    data = _decode(raw, encoding)
    params = routes.query_params(raw_query)
    try:
        if data is None:
            raise _Untouched
        if route == routes.SEARCH:
            body = _parse_search(data)
            searches = [({}, body)]
        else:
            searches = _parse_msearch(data)
        sections = [b.pop(BODY_SECTION, None) if b is not None else None for _, b in searches]
        decisions = [decide(state.config, header=header_toggle, key=key, query=query_toggle,
                            body_section=s) for s in sections]
    except ToggleError as exc:
        record(state, route, 400, "", "error", time.perf_counter() - started)
        return error_response(400, "rescore_toggle_exception", str(exc))
    except _Untouched:
        # Undecodable or invalid JSON: the engine gets it as sent and answers with its own error.
        try:
            decision = decide(state.config, header=header_toggle, key=key, query=query_toggle)
        except ToggleError as exc:
            record(state, route, 400, "", "error", time.perf_counter() - started)
            return error_response(400, "rescore_toggle_exception", str(exc))
        marks = (_marks("fallback", decision.arm, "invalid_body")
                 if decision.enabled and state.rescorer else _marks("off", decision.arm))
        return await _forward_raw(request, state, route, raw_path, raw_query, raw, headers, marks,
                                  marks[MARK_HEADER], decision.arm, started)

    active = state.rescorer is not None and any(d.enabled for d in decisions)
    arm = decisions[0].arm if decisions else ""
    if not active:
        changed = any(s is not None for s in sections)
        if changed:
            headers.popall("Content-Encoding", None)
            raw = _encode(route, searches)
        return await _forward_raw(request, state, route, raw_path, raw_query, raw, headers,
                                  _marks("off", arm), "off", arm, started)
    return await _rescored(request, state, route, raw_path, raw_query, params, headers, searches,
                           decisions, started)


def _encode(route: str, searches: list[tuple[dict, dict | None]]) -> bytes:
    if route == routes.SEARCH:
        body = searches[0][1]
        return _dumps(body) if body is not None else b""
    out = []
    for header, body in searches:
        out += [_dumps(header), _dumps(body if body is not None else {})]
    return b"\n".join(out) + b"\n"


async def _rescored(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                    raw_query: str, params: dict[str, str], headers, searches, decisions:
                    list[Decision], started: float) -> web.StreamResponse:
    rescorer: Rescorer = state.rescorer
    plans = []
    planned = []
    for (header, body), decision in zip(searches, decisions):
        search_params = {**params, **{k: str(v) for k, v in header.items()}}
        plan = rescorer.plan(body, search_params, decision) if decision.enabled else None
        plans.append(plan)
        planned.append((header, plan.engine_body if plan is not None else body))
    headers.popall("Content-Encoding", None)
    # The proxy reads the answer: ask for it uncompressed rather than inflate it here.
    headers.popall("Accept-Encoding", None)
    data = _encode(route, planned)
    t0 = time.perf_counter()
    upstream = await state.upstreams.request(state.session, request.method, raw_path,
                                             planned_query(raw_query, plans), headers,
                                             data or None, True)
    try:
        answer = await upstream.read()
    finally:
        upstream.release()
    waited = time.perf_counter() - t0
    arm = decisions[0].arm
    out_headers = response_headers(upstream.headers)
    decoded = _decode(answer, upstream.headers.get("Content-Encoding", ""))
    parsed = None
    if upstream.status == 200 and decoded is not None:
        try:
            parsed = json.loads(decoded)
        except ValueError:
            parsed = None
    if not isinstance(parsed, dict) or (route == routes.MSEARCH
                                        and not isinstance(parsed.get("responses"), list)):
        # Engine error or an answer the proxy cannot read: as the engine sent it.
        reason = "engine_error" if upstream.status != 200 else "unreadable_response"
        out_headers.update(_marks("fallback", arm, reason))
        record(state, route, upstream.status, arm, "fallback",
               time.perf_counter() - started - waited)
        state.metrics.fallbacks.labels(reason).inc()
        return web.Response(status=upstream.status, reason=upstream.reason, body=answer,
                            headers=out_headers)
    if route == routes.SEARCH:
        results = [await _finish(rescorer, parsed, plans[0])]
        parsed = results[0].body
    else:
        responses = parsed["responses"]
        if len(responses) != len(plans):
            plans = [None] * len(responses)
        results = await asyncio.gather(*(_finish(rescorer, r, p)
                                         for r, p in zip(responses, plans)))
        parsed["responses"] = [r.body for r in results]
    for r in results:
        if r.outcome == "fallback":
            state.metrics.fallbacks.labels(r.reason or "unknown").inc()
    outcome, reason = _summary(list(results))
    out_headers.popall("Content-Encoding", None)
    out_headers.update(_marks(outcome, arm, reason))
    response = web.Response(status=upstream.status, reason=upstream.reason, body=_dumps(parsed),
                            headers=out_headers)
    record(state, route, upstream.status, arm, outcome, time.perf_counter() - started - waited)
    return response


async def _finish(rescorer: Rescorer, response: Any, plan: Any) -> Outcome:
    if plan is None:
        return Outcome(body=response, outcome="off")
    if not isinstance(response, dict) or "hits" not in response:
        # An error item of a multi-search: unchanged.
        return Outcome(body=response, outcome="fallback", reason="engine_error")
    return await rescorer.finish(response, plan)


def planned_query(raw_query: str, plans: list[Any]) -> str:
    """The query string after planning: the core may move from/size from the URL into the body."""
    for plan in plans:
        if plan is not None and getattr(plan, "drop_params", None):
            kept = [item for item in raw_query.split("&")
                    if item.partition("=")[0] not in plan.drop_params]
            return "&".join(kept)
    return raw_query


__all__ = ["handle_search", "create_rescorer", "MARK_HEADER", "ARM_HEADER", "FALLBACK_HEADER",
           "aiohttp"]
