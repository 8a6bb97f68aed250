"""`POST /_rescore/feedback`: what a user clicked in an experiment's impression, into the event log.

Body: `{"impression_id": "<_rescore.impression_id of the search>", "clicked": ["<_id>", ...]}`.
200 `{"impression_id", "accepted": [...], "duplicate": [...]}` (a click already logged is not
logged again); bad feedback writes nothing and gets a 4xx in the engine's error shape, `error.type`
saying why: 400 `malformed_json` / `bad_feedback`, 404 `unknown_impression` (or no experiment
configured: `no_experiment`), 410 `expired_impression`, 422 `doc_not_in_impression`.
"""
from __future__ import annotations

import json
import time

from aiohttp import web

from rescore_sidecar.connectors.feedback_log import (REASON_BAD_FEEDBACK, REASON_EXPIRED_IMPRESSION,
                                                     REASON_UNKNOWN_DOC, REASON_UNKNOWN_IMPRESSION, FeedbackError)
from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.http import ProxyState, error_response, read_limited, record

MAX_FEEDBACK_BYTES = 1024 * 1024  # a list of clicked ids; far more than any real one
STATUS = {REASON_BAD_FEEDBACK: 400, REASON_UNKNOWN_IMPRESSION: 404, REASON_EXPIRED_IMPRESSION: 410,
          REASON_UNKNOWN_DOC: 422}


async def handle_feedback(request: web.BaseRequest, state: ProxyState) -> web.Response:
    started = time.perf_counter()
    response = await _answer(request, state)
    record(state, routes.FEEDBACK, response.status, "", "feedback" if response.status == 200 else "error",
           time.perf_counter() - started)
    return response


async def _answer(request: web.BaseRequest, state: ProxyState) -> web.Response:
    log = getattr(state.rescorer, "feedback_log", None)
    if log is None:
        return error_response(404, "no_experiment", "no experiment is configured on this proxy (--experiment), "
                                                    "so there are no impressions to give feedback on")
    raw = await read_limited(request, min(MAX_FEEDBACK_BYTES, state.config.max_request_bytes))
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return error_response(400, "malformed_json", f"feedback body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return error_response(400, REASON_BAD_FEEDBACK, 'feedback body must be a JSON object '
                                                        '{"impression_id": "...", "clicked": ["<_id>", ...]}')
    unknown = sorted(set(payload) - {"impression_id", "clicked"})
    if unknown:
        return error_response(400, REASON_BAD_FEEDBACK, f"unknown feedback keys {unknown}; "
                                                        "known: impression_id, clicked")
    try:
        result = log.feedback(payload.get("impression_id"), payload.get("clicked"))
    except FeedbackError as exc:
        return error_response(STATUS.get(exc.reason, 400), exc.reason, str(exc))
    return web.json_response({"impression_id": result.impression_id, "accepted": list(result.accepted),
                              "duplicate": list(result.duplicate)})
