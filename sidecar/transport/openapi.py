"""The sidecar's HTTP API as an OpenAPI 3.1 document, built from transport/http_schemas.py (the one
source of truth) and the error table in transport/errors.py. Served at /openapi.json; checked in as
docs/openapi/sidecar.json (`scripts/gen_openapi.py` writes it, a unit test fails when stale).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from rescore_sidecar.sidecar.transport import http_schemas as schemas
from rescore_sidecar.sidecar.transport.errors import ANSWERS

API_VERSION = "1"  # of the document's shapes, not of the package: a checked-in file must not churn per release
_JSON = "application/json"
_POSITIVE_NUMBER = r"^\s*(0*[1-9][0-9]*(\.[0-9]*)?|0*\.[0-9]*[1-9][0-9]*)\s*$"  # what float() takes, above 0

# Statuses any rerank call may answer besides 200, from the one error table (plus the HTTP layer's own).
_RERANK_ERRORS = sorted({answer.http_status for answer in ANSWERS.values()} | {401})


def _error_responses(statuses: list[int]) -> dict[str, Any]:
    kinds: dict[int, list[str]] = {401: ["unauthorized"], 404: ["not_found"], 405: ["method_not_allowed"]}
    for answer in ANSWERS.values():
        kinds.setdefault(answer.http_status, []).append(answer.http_type)
    return {str(status): {"description": "error.type: " + ", ".join(sorted(set(kinds.get(status, ["http_error"])))),
                          "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for status in statuses}


def _rerank(summary: str, request: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "parameters": [{"name": "X-Request-Timeout-Ms", "in": "header", "required": False,
                        "schema": {"type": "string", "pattern": _POSITIVE_NUMBER},
                        "description": "the client's deadline in milliseconds (the smaller of it and timeout_ms)"}],
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{request}"}}}},
        "responses": {"200": {"description": "scored, best first", "content": {_JSON: {"schema": answer}}},
                      **_error_responses(_RERANK_ERRORS)},
    }}


def _get(summary: str, schema: dict[str, Any], statuses: dict[str, str] | None = None,
         errors: list[int] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {code: {"description": text, "content": {_JSON: {"schema": schema}}}
                                 for code, text in (statuses or {"200": "OK"}).items()}
    return {"get": {"summary": summary, "responses": {**responses, **_error_responses(errors or [])}}}


def served_document(models: Sequence[str] | None, max_documents: int) -> dict[str, Any]:
    """The document as one running sidecar serves it: `model` narrowed to the names it answers (None:
    any name, with accept_any_model) and the document arrays to its max_documents, so a client
    generator or fuzzer knows what this server accepts. The checked-in document stays general."""
    document = copy.deepcopy(sidecar_document())
    for name, array in (("CohereRequest", "documents"), ("TeiRequest", "texts")):
        properties = document["components"]["schemas"][name]["properties"]
        properties[array]["maxItems"] = max_documents
        if models is not None:
            properties["model"] = {**properties["model"], "enum": [*sorted(models), "", None]}  # the default
    return document


def sidecar_document() -> dict[str, Any]:
    cohere = {"$ref": "#/components/schemas/CohereResponse"}
    health = {"$ref": "#/components/schemas/Health"}
    probes = {"200": "SERVING", "503": "NOT_SERVING (loading or draining); Retry-After: 1"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rescore-sidecar HTTP rerank API", "version": API_VERSION,
                 "description": "Cohere, Jina, TEI and infinity rerank shapes over the sidecar's models; "
                                "see docs/http-api.md."},
        "components": {
            "schemas": {"CohereRequest": schemas.COHERE_REQUEST, "TeiRequest": schemas.TEI_REQUEST,
                        "AnyRerankRequest": {"oneOf": [{"$ref": "#/components/schemas/TeiRequest"},
                                                       {"$ref": "#/components/schemas/CohereRequest"}]},
                        "CohereResponse": schemas.COHERE_RESPONSE, "TeiResponse": schemas.TEI_RESPONSE,
                        "Error": schemas.ERROR_RESPONSE, "Models": schemas.MODELS_RESPONSE,
                        "Health": schemas.HEALTH_RESPONSE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "only when the sidecar has a token; probes are open"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/rerank": _rerank("Jina / Cohere v1 rerank", "CohereRequest", cohere),
            "/v2/rerank": _rerank("Cohere v2 rerank", "CohereRequest", cohere),
            "/rerank": _rerank("text-embeddings-inference rerank (`texts`), or the Cohere/Jina body (`documents`)",
                               "AnyRerankRequest", {"oneOf": [{"$ref": "#/components/schemas/TeiResponse"}, cohere]}),
            "/v1/models": _get("served models and limits", {"$ref": "#/components/schemas/Models"},
                               errors=[401, 503]),
            "/health": _get("readiness (same as gRPC health)", health, probes),
            "/ready": _get("readiness (same as gRPC health)", health, probes),
            "/live": _get("liveness", health),
            "/openapi.json": _get("this document", {"type": "object"}, errors=[401]),
        },
    }
