"""The HTTP API's request and response shapes as JSON Schema: the one source of truth that
transport/openapi.py turns into the OpenAPI document (served at /openapi.json, checked in under
docs/openapi/). transport/http_bodies.py parses exactly these shapes; the schemathesis run
in tests/integration/test_http_fuzz.py fails when the two disagree.

Fields of the Cohere v1/v2, Jina, TEI and infinity request schemas are each either honoured or
answered with a 400 naming them (`UNSUPPORTED`); fields of no known schema are ignored, so a client
that adds a field next year keeps working (docs/http-api.md has the table).
"""
from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_TEXT_OBJECT: Schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
_COMMON: dict[str, Schema] = {
    "model": {"type": "string", "description": "a served model, an alias of one, or absent (or empty) for the default"},
    "query": {"type": "string", "pattern": "\\S", "description": "not blank"},
    "raw_scores": {"type": "boolean", "default": False, "description": "the logit instead of the normalized score"},
    "timeout_ms": {"type": "number", "exclusiveMinimum": 0, "description": "the client's deadline (also the "
                                                                           "X-Request-Timeout-Ms header)"},
    "bypass_cache": {"type": "boolean", "default": False,
                     "description": "skip the score cache both ways (also the X-Bypass-Cache header)"},
}

COHERE_FIELDS: dict[str, Schema] = {
    **_COMMON,
    "documents": {"type": "array", "minItems": 1, "items": {"oneOf": [{"type": "string"}, _TEXT_OBJECT]}},
    "top_n": {"type": "integer", "minimum": 1, "description": "above the number of documents: all of them"},
    "return_documents": {"type": "boolean", "default": False},
    "max_tokens_per_doc": {"type": "integer", "minimum": 1,
                           "description": "each document cut to this many tokens (never above the model's limit)"},
    "rank_fields": {"type": "array", "items": {"type": "string", "enum": ["text"]},
                    "description": "Cohere v1; only the `text` field of a document object is read"},
}
TEI_FIELDS: dict[str, Schema] = {
    **_COMMON,
    "texts": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "return_text": {"type": "boolean", "default": False},
    "truncate": {"type": "boolean", "default": True, "description": "false: a text cut to fit is a 413"},
    "truncation_direction": {"type": "string", "enum": ["Right", "right"],
                             "description": "only Right: the end of a document is cut"},
}

# Fields of a client's schema that the sidecar cannot honour: a 400 naming them, never silence.
UNSUPPORTED: dict[str, str] = {
    "max_chunks_per_doc": "the sidecar does not chunk documents; each is cut to the model's length "
                          "(or to max_tokens_per_doc)",
}


def _nullable(field: Schema) -> Schema:
    """`null` in an optional field means the field is absent (clients that serialise unset fields
    as null, e.g. pydantic models dumped without exclude_none); http_bodies.get_field reads it so."""
    if "type" not in field:
        return {"anyOf": [field, {"type": "null"}]}
    nullable = {**field, "type": [field["type"], "null"]}
    if "enum" in field:
        nullable["enum"] = [*field["enum"], None]
    return nullable


def _request(fields: dict[str, Schema], required: list[str]) -> Schema:
    # additionalProperties stays open: fields of no known schema are ignored (see the module doc).
    properties = {name: field if name in required else _nullable(field) for name, field in fields.items()}
    return {"type": "object", "required": required, "properties": properties}


COHERE_REQUEST = _request(COHERE_FIELDS, ["query", "documents"])
TEI_REQUEST = _request(TEI_FIELDS, ["query", "texts"])
ANY_RERANK_REQUEST: Schema = {"oneOf": [TEI_REQUEST, COHERE_REQUEST],
                              "description": "`texts`: the TEI shape and answer; `documents`: the Cohere/Jina ones"}

_USAGE: Schema = {
    "type": "object", "required": ["prompt_tokens", "total_tokens", "truncated_documents"],
    "description": "tokens the model read after truncation, special tokens included (OpenAI/infinity, Jina)",
    "properties": {"prompt_tokens": {"type": "integer", "minimum": 0}, "total_tokens": {"type": "integer", "minimum": 0},
                   "truncated_documents": {"type": "integer", "minimum": 0}},
}
_META: Schema = {
    "type": "object", "description": "Cohere's convention for the same counts",
    "properties": {
        "api_version": {"type": "object", "properties": {"version": {"type": "string"}}},
        "billed_units": {"type": "object", "properties": {"search_units": {"type": "integer"},
                                                           "input_tokens": {"type": "integer"}}},
        "tokens": {"type": "object", "properties": {"input_tokens": {"type": "integer"},
                                                     "output_tokens": {"type": "integer"}}},
    },
}
COHERE_RESPONSE: Schema = {
    "type": "object", "required": ["id", "object", "model", "results", "usage", "meta"],
    "properties": {
        "id": {"type": "string"}, "object": {"const": "rerank"}, "created": {"type": "integer"},
        "model": {"type": "string", "description": "the served model that scored (an alias resolved)"},
        "results": {"type": "array", "items": {
            "type": "object", "required": ["index", "relevance_score"],
            "properties": {"index": {"type": "integer", "minimum": 0}, "relevance_score": {"type": "number"},
                           "document": _TEXT_OBJECT}}},
        "usage": _USAGE, "meta": _META,
    },
}
TEI_RESPONSE: Schema = {"type": "array", "items": {
    "type": "object", "required": ["index", "score"],
    "properties": {"index": {"type": "integer", "minimum": 0}, "score": {"type": "number"}, "text": {"type": "string"}}}}
ERROR_RESPONSE: Schema = {
    "type": "object", "required": ["error", "message", "detail", "error_type"],
    "description": "`error` is ours; `message` for Cohere's and TEI's clients, `detail` for Jina's, "
                   "`error_type` as TEI names it",
    "properties": {
        "error": {"type": "object", "required": ["type", "message"], "properties": {
            "type": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
        "message": {"type": "string"}, "detail": {"type": "string"}, "error_type": {"type": "string"},
    },
}
MODELS_RESPONSE: Schema = {
    "type": "object", "required": ["object", "data", "max_documents", "max_request_bytes"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {"type": "object", "required": ["id", "object"], "properties": {
            "id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"},
            "kind": {"type": "string"}, "source": {"type": "string"}, "max_length": {"type": "integer"},
            "max_query_tokens": {"type": "integer"}, "dtype": {"type": "string"}, "device": {"type": "string"},
            "default": {"type": "boolean"}, "aliases": {"type": "array", "items": {"type": "string"}}}}},
        "max_documents": {"type": "integer"}, "max_request_bytes": {"type": "integer"},
    },
}
HEALTH_RESPONSE: Schema = {"type": "object", "required": ["status"],
                           "properties": {"status": {"enum": ["SERVING", "NOT_SERVING", "alive"]}}}
