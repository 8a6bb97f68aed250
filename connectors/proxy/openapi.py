"""The proxy's own endpoints (`/_rescore/...`) as an OpenAPI 3.1 document: every other path is the
engine's API, passed through or rescored, and described by the engine's own documentation.

Served at `/_rescore/openapi.json`; checked in as docs/openapi/proxy.json (`scripts/gen_openapi.py`
writes it, a unit test fails when stale). The shapes below are the ones app.py and http.py answer.
"""
from __future__ import annotations

from typing import Any

API_VERSION = "1"  # of the document's shapes, not of the package
_JSON = "application/json"

HEALTH_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["status", "upstreams", "rescoring"],
    "properties": {"status": {"const": "ok"}, "upstreams": {"type": "integer", "minimum": 0},
                   "rescoring": {"type": "boolean", "description": "whether sidecars are configured"}},
}
# error_response() in http.py: shaped like an engine error so engine clients can parse it.
ERROR_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["error", "status"],
    "properties": {"error": {"type": "object", "required": ["type", "reason"],
                             "properties": {"type": {"type": "string"}, "reason": {"type": "string"}}},
                   "status": {"type": "integer"}},
}

FEEDBACK_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["impression_id", "clicked"], "additionalProperties": False,
    "properties": {"impression_id": {"type": "string", "minLength": 1,
                                     "description": "`_rescore.impression_id` of the search (also X-Rescore-Impression)"},
                   "clicked": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                               "description": "`_id`s of the hits the user clicked"}},
}
FEEDBACK_RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["impression_id", "accepted", "duplicate"],
    "properties": {"impression_id": {"type": "string"},
                   "accepted": {"type": "array", "items": {"type": "string"}, "description": "clicks logged now"},
                   "duplicate": {"type": "array", "items": {"type": "string"},
                                 "description": "clicks already logged for this impression (not logged again)"}},
}


def proxy_document() -> dict[str, Any]:
    health = {"description": "the proxy is up (it does not probe the engines)",
              "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Health"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rescore-sidecar proxy: own endpoints", "version": API_VERSION,
                 "description": "Every other path goes to the engine (see docs/proxy.md)."},
        "components": {"schemas": {"Health": HEALTH_RESPONSE, "Error": ERROR_RESPONSE,
                                   "FeedbackRequest": FEEDBACK_REQUEST, "FeedbackResponse": FEEDBACK_RESPONSE}},
        "paths": {
            "/_rescore/health": {"get": {"summary": "liveness of the proxy", "responses": {"200": health}},
                                 "head": {"summary": "liveness of the proxy",
                                          "responses": {"200": {"description": "the proxy is up"}}}},
            "/_rescore/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/_rescore/feedback": {"post": {
                "summary": "clicks on an experiment's impression, into the event log (idempotent per click)",
                "requestBody": {"required": True, "content": {_JSON: {"schema": {
                    "$ref": "#/components/schemas/FeedbackRequest"}}}},
                "responses": {"200": {"description": "logged", "content": {_JSON: {"schema": {
                    "$ref": "#/components/schemas/FeedbackResponse"}}}},
                    **{code: {"description": why, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
                       for code, why in (("400", "malformed JSON or feedback (nothing logged)"),
                                         ("404", "unknown impression, or no experiment configured (nothing logged)"),
                                         ("410", "the impression expired (nothing logged)"),
                                         ("422", "a clicked id was not shown in the impression (nothing logged)"))}}}},
            "/_rescore/openapi.json": {"get": {"summary": "this document", "responses": {"200": {
                "description": "OpenAPI 3.1", "content": {_JSON: {"schema": {"type": "object"}}}}}}},
        },
    }
