"""Search and multi-search requests: strip the toggles, then let the connector core rescore.

The HTTP side lives here (bodies, encodings, NDJSON, headers, marks). Planning, windowing, text
extraction, `_source` transparency, pagination, A/B arms, budget, breaker and fallback are the
connector core's (`rescore_sidecar.connectors._core.steps`), shared with the Python wrappers: the
proxy drives the same steps, with its own engine call in between.
"""
from __future__ import annotations

import gzip
import json
import re
import time
import uuid
import zlib
from typing import Any, Mapping
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from rescore_sidecar.connectors._core import arms
from rescore_sidecar.connectors.config import RerankOptions
from rescore_sidecar.connectors._core.shape import MARKER_KEY
from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.http import ProxyState, error_response, read_limited, record, relay
from rescore_sidecar.connectors.proxy.config import ProxyConfig
from rescore_sidecar.connectors.proxy.toggle import (ARM_KEY_HEADER, BODY_SECTION, TOGGLE_HEADER, ToggleError,
                                     merge_toggles)
from rescore_sidecar.connectors.proxy.upstream import forward_headers, response_headers
from rescore_sidecar.connectors._async.rescoring import AsyncRescorer, resume
from rescore_sidecar.connectors._core.experiment import experiment_steps
from rescore_sidecar.connectors._core.steps import EngineSearch, msearch_steps, search_steps
from rescore_sidecar.connectors._core.spans import marked
from rescore_sidecar.connectors import tracing

# Response headers the proxy sets on every search it handles.
MARK_HEADER = "X-Rescore"
ARM_HEADER = "X-Rescore-Arm"
FALLBACK_HEADER = "X-Rescore-Fallback"
SKIPPED_HEADER = "X-Rescore-Skipped"
WINDOW_HEADER = "X-Rescore-Window"  # `_rescore.window`, with `; reason=...` when below the requested one
IMPRESSION_HEADER = "X-Rescore-Impression"  # `_rescore.impression_id` of an experiment's search
_DROP_REQUEST = (TOGGLE_HEADER, ARM_KEY_HEADER)


def create_rescorer(config: ProxyConfig) -> AsyncRescorer:
    return AsyncRescorer(config.connector_config())


class EngineAnswer(Exception):
    """The engine answered with something other than a readable 200: goes back as it came."""

    def __init__(self, status: int, reason: str, headers: CIMultiDictProxy[str], body: bytes):
        super().__init__(status)
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


class _Untouched(Exception):
    """The body cannot be read as a search: forward it as received, the engine judges it."""


def _decode(data: bytes, encoding: str) -> bytes | None:
    """gzip/deflate bodies inflated; None for encodings the proxy does not handle."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "x-gzip", "deflate"):
        for wbits in (47, -15):  # gzip or zlib header (auto), then raw deflate
            try:
                return zlib.decompress(data, wbits)
            except zlib.error:
                pass
    return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _parse_object(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nested past the parser: the engine judges it
        raise _Untouched from None
    if not isinstance(value, dict):
        raise _Untouched
    return value


_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether JSON (or NDJSON) `data` nests objects/arrays deeper than `limit`. Counting
    brackets is enough for nearly every body; only bodies with more brackets than the limit
    are scanned, skipping brackets inside strings."""
    if not limit or data.count(b"{") + data.count(b"[") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(data):
        char = token.group()[:1]
        if char in (b"{", b"["):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"}", b"]"):
            depth = max(depth - 1, 0)
    return False


def _parse_msearch(data: bytes) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or len(lines) % 2:
        raise _Untouched
    return [(_parse_object(lines[i]) or {}, _parse_object(lines[i + 1]) or {})
            for i in range(0, len(lines), 2)]


def _ndjson(lines: list[Any]) -> bytes:
    return b"".join(_dumps(line) + b"\n" for line in lines)


def _marks(mark: Mapping[str, Any] | None, arm: str | None) -> dict[str, str]:
    """Response headers from the core's `_rescore` marker (None: not handed to the core)."""
    headers = {}
    if mark is None:
        headers[MARK_HEADER] = "off"
    elif mark.get("reranked"):
        headers[MARK_HEADER] = "reranked"
    elif mark.get("fallback"):
        headers[MARK_HEADER] = "fallback"
        headers[FALLBACK_HEADER] = str(mark["fallback"])
    else:
        headers[MARK_HEADER] = "off"
        if mark.get("skipped"):
            headers[SKIPPED_HEADER] = str(mark["skipped"])
    if mark is not None and isinstance(mark.get("window"), int):
        reason = mark.get("window_reason")
        headers[WINDOW_HEADER] = f"{mark['window']}; reason={reason}" if reason else str(mark["window"])
    if arm:
        headers[ARM_HEADER] = arm
    return headers


def _msearch_mark(responses: list[Any]) -> dict[str, Any] | None:
    """One mark for a multi-search: fallback if any fell back, reranked if any was, else off."""
    marks = [r.get(MARKER_KEY) for r in responses if isinstance(r, dict)]
    marks = [m for m in marks if isinstance(m, dict)]
    fallbacks = sorted({str(m["fallback"]) for m in marks if m.get("fallback")})
    if fallbacks:
        return {"reranked": False, "fallback": ",".join(fallbacks)}
    if any(m.get("reranked") for m in marks):
        return {"reranked": True}
    skipped = sorted({str(m["skipped"]) for m in marks if m.get("skipped")})
    return {"reranked": False, "skipped": ",".join(skipped) or None}


async def handle_search(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                        raw_query: str) -> web.StreamResponse:
    started = time.perf_counter()
    raw_query, query_toggle = routes.split_toggle(raw_query)
    header_toggle = request.headers.get(TOGGLE_HEADER)
    ab_key = request.headers.get(ARM_KEY_HEADER)
    headers = forward_headers(request.headers, drop=_DROP_REQUEST)
    raw = await read_limited(request, state.config.max_request_bytes) if request.body_exists else b""
    data = _decode(raw, request.headers.get("Content-Encoding", ""))
    if data is not None and json_depth_exceeds(data, state.config.max_json_depth):
        # Guards the engine too: a deep enough query kills an OpenSearch node outright.
        record(state, route, 400, "", "error", time.perf_counter() - started)
        return error_response(400, "proxy_json_too_deep", f"request body nests objects/arrays deeper than "
                              f"{state.config.max_json_depth} levels (max_json_depth)")
    body: Any = None
    section: Any = None
    try:
        if data is None:
            raise _Untouched
        rerank = merge_toggles(header_toggle, query_toggle)
        if BODY_SECTION.encode() in data:  # a body section to strip (and to merge) first
            body, section = _parse(route, data)
            if section is not None:
                rerank = merge_toggles(header_toggle, query_toggle, section)
        choice = _resolve(state, rerank, ab_key)  # once per request
        # A search without any toggle runs the configured experiment (msearch: the arms/default).
        experiment = (route == routes.SEARCH and rerank is None and state.rescorer is not None
                      and state.rescorer.config.experiment is not None)
        if body is None and (experiment or (choice is not None and choice.options.enabled)):
            body, _ = _parse(route, data)  # parse only a search to rescore
    except (ToggleError, ValueError, TypeError) as exc:
        record(state, route, 400, "", "error", time.perf_counter() - started)
        return error_response(400, "rescore_toggle_exception", str(exc))
    except _Untouched:
        # Not a readable search body: the engine gets it as sent and answers with its own error.
        return await _forward(request, state, route, raw_path, raw_query, headers, raw,
                              _marks(None, None), started)

    if not experiment and (choice is None or not choice.options.enabled):
        # Not rescored: the request goes through as sent (minus the toggles), answer untouched.
        if section is not None:
            headers.popall("Content-Encoding", None)
            raw = _dumps(body) if route == routes.SEARCH else _ndjson([x for p in body for x in p])
        return await _forward(request, state, route, raw_path, raw_query, headers, raw,
                              _marks(None, choice.arm if choice else None), started)
    try:
        return await _rescore(request, state, route, raw_path, raw_query, headers, body, choice,
                              started, ab_key if experiment else None, experiment)
    except RecursionError:
        # Parsed, but nested too deep to write back out: the engine judges the original bytes.
        return await _forward(request, state, route, raw_path, raw_query, headers, raw,
                              _marks(None, choice.arm), started)


def _parse(route: str, data: bytes) -> tuple[Any, Any]:
    """(search body or msearch pairs, the `rescore_sidecar` body section popped from them)."""
    if route == routes.SEARCH:
        body = _parse_object(data)
        return body, (body.pop(BODY_SECTION, None) if body is not None else None)
    pairs = _parse_msearch(data)
    sections = [b.pop(BODY_SECTION, None) for _, b in pairs]
    if any(s != sections[0] for s in sections):
        raise ToggleError(f"{BODY_SECTION}: every search of one _msearch must carry "
                          "the same section (or use the X-Rescore header)")
    return pairs, sections[0]


def _resolve(state: ProxyState, rerank: Any, ab_key: str | None) -> arms.Choice | None:
    """The core's choice of options; None when nothing can be rescored."""
    if state.rescorer is None:
        return None
    config = state.rescorer.config
    if rerank is False and not (config.arms and ab_key is not None):
        return _OFF  # off whatever the default: skip building options on the hot path
    return arms.resolve(config, rerank, ab_key)


_OFF = arms.Choice(options=RerankOptions(enabled=False), arm=None)


async def _forward(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                   raw_query: str, headers: CIMultiDict[str], data: bytes,
                   marks: dict[str, str], started: float) -> web.StreamResponse:
    t0 = time.perf_counter()
    upstream = await state.upstreams.request(state.session, request.method, raw_path, raw_query,
                                             headers, data or None, True)
    waited = time.perf_counter() - t0
    try:
        response, body_wait = await relay(request, upstream, marks)
    finally:
        upstream.release()
    record(state, route, response.status, marks.get(ARM_HEADER, ""), "off",
           time.perf_counter() - started - waited - body_wait)
    return response


async def _call_engine(request: web.BaseRequest, state: ProxyState, raw_path: str, query: str,
                       headers: CIMultiDict[str], data: bytes) -> tuple[aiohttp.ClientResponse, dict]:
    """The engine's answer to the rewritten search: (response, parsed JSON body); EngineAnswer
    when it is not a readable 200."""
    upstream = await state.upstreams.request(state.session, request.method, raw_path, query, headers, data, True)
    try:
        answer = await upstream.read()
    finally:
        upstream.release()
    decoded = _decode(answer, upstream.headers.get("Content-Encoding", ""))
    parsed = None
    if upstream.status == 200 and decoded is not None:
        try:
            parsed = json.loads(decoded)
        except ValueError:
            pass
    if not isinstance(parsed, dict):
        raise EngineAnswer(upstream.status, upstream.reason or "", upstream.headers, answer)
    return upstream, parsed


async def _rescore(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                   raw_query: str, headers: CIMultiDict[str], body: Any, choice: arms.Choice,
                   started: float, ab_key: str | None = None, experiment: bool = False) -> web.StreamResponse:
    with tracing.span(tracing.SEARCH):  # as the wrappers': rescore.engine and rescore.sidecar inside
        return await _rescored(request, state, route, raw_path, raw_query, headers, body, choice, started,
                               ab_key, experiment)


async def _rescored(request: web.BaseRequest, state: ProxyState, route: str, raw_path: str,
                    raw_query: str, headers: CIMultiDict[str], body: Any, choice: arms.Choice,
                    started: float, ab_key: str | None, experiment: bool) -> web.StreamResponse:
    params = routes.query_params(raw_query)
    arm = choice.arm
    headers.popall("Content-Encoding", None)
    # Accept-Encoding stays: engine errors must reach the client exactly as the engine sends them.
    if "Content-Type" not in headers:  # keep the client's (it may carry a compatibility version)
        headers["Content-Type"] = ("application/x-ndjson" if route == routes.MSEARCH
                                   else "application/json")
    config = state.rescorer.config
    if experiment:
        steps = experiment_steps(config, body, params, impression_id=uuid.uuid4().hex, ab_key=ab_key,
                                 brownout=state.rescorer.brownout)
    elif route == routes.SEARCH:
        steps = search_steps(config, body, params, choice=choice, brownout=state.rescorer.brownout)
    else:
        steps = msearch_steps(config, [x for pair in body for x in pair], params, choice=choice,
                              brownout=state.rescorer.brownout)
    call = next(steps)  # the engine call the plan asks for
    if isinstance(call, EngineSearch):
        # The plan may have moved from/size/_source from the URL into the body.
        data, query = _dumps(call.body), (raw_query if call.params == params else urlencode(call.params))
    else:
        data, query = _ndjson(call.lines), raw_query
    t0 = time.perf_counter()
    try:
        with tracing.client_span(tracing.ENGINE):
            upstream, parsed = await _call_engine(request, state, raw_path, query, headers, data)
    except EngineAnswer as answer:
        # Engine errors (and answers the proxy cannot read) reach the client as the engine sent them.
        steps.close()
        out_headers = response_headers(answer.headers)
        out_headers.update(_marks({"skipped": "engine_error"}, arm))
        record(state, route, answer.status, arm or "", "engine_error",
               t0 - started)
        return web.Response(status=answer.status, reason=answer.reason, body=answer.body,
                            headers=out_headers)
    waited = time.perf_counter() - t0
    out = marked(tracing.current(), await resume(steps, parsed, state.rescorer.sidecar))
    mark = out.get(MARKER_KEY) if route == routes.SEARCH else _msearch_mark(out.get("responses", []))
    if experiment and isinstance(mark, dict):
        state.rescorer.record(out)  # the impression, for POST /_rescore/feedback (never blocks)
        arm = mark.get("served_arm") or arm
    out_headers = response_headers(upstream.headers, drop=("Content-Encoding",))
    data = _dumps(out)
    if upstream.headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip"):
        # Answer in the encoding the engine chose for this client (level 1: cheap, most of the gain).
        data = gzip.compress(data, compresslevel=1)
        out_headers["Content-Encoding"] = "gzip"
    marks = _marks(mark if isinstance(mark, dict) else None, arm)
    if experiment and isinstance(mark, dict) and mark.get("impression_id"):
        marks[IMPRESSION_HEADER] = str(mark["impression_id"])
    out_headers.update(marks)
    # Fallbacks are counted once, per search, by the connector core (rescore_connector_fallbacks_total).
    response = web.Response(status=upstream.status, reason=upstream.reason, body=data,
                            headers=out_headers)
    record(state, route, upstream.status, arm or "", marks[MARK_HEADER], time.perf_counter() - started - waited)
    return response
