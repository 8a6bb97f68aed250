"""The JSON bodies of the HTTP rerank API, to and from protobuf: each request shape becomes a
rescore.v1.RerankRequest (bad input a FieldError naming the field) and each answer is built in the
shape that was asked for. The shapes are described, for the OpenAPI document, in http_schemas.py.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.core.errors import RequestTooLarge
from rescore_sidecar.sidecar.transport import http_schemas as schemas
from rescore_sidecar.sidecar.transport.http_errors import FieldError


def get_field(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise FieldError(name, f"must be {_kind_name(kinds)}, not a boolean")
    if not isinstance(value, kinds):
        raise FieldError(name, f"must be {_kind_name(kinds)}, not {type(value).__name__}")
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unicode(field: str, text: str) -> str:
    """JSON allows lone surrogates (\\ud800) that no UTF-8 string, so no protobuf string, can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(field, "is not valid Unicode (a lone surrogate escape)") from None
    return text


def _texts(body: dict[str, Any], name: str) -> list[str]:
    """`documents` / `texts`: strings, or objects with a `text` string (Cohere v1, Jina)."""
    if name not in body or body[name] is None:
        raise FieldError(name, "is required")
    items = get_field(body, name, list)
    if not items:
        raise FieldError(name, "is empty; send at least one document")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            item = item.get("text")
            if not isinstance(item, str):
                raise FieldError(f"{name}[{i}].text", "must be a string")
        elif not isinstance(item, str):
            raise FieldError(f"{name}[{i}]", f"must be a string or {{\"text\": string}}, not {type(item).__name__}")
        texts.append(_unicode(f"{name}[{i}]", item))
    return texts


def _query(body: dict[str, Any]) -> str:
    query = get_field(body, "query", str)
    if query is None:
        raise FieldError("query", "is required")
    if not query.strip():
        raise FieldError("query", "is empty")
    return _unicode("query", query)


def _positive(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if isinstance(value, float) and value.is_integer():  # 5.0 is an integer to JSON Schema, so to us
        value = body[name] = int(value)
    value = get_field(body, name, int)
    if value is not None and value < 1:
        raise FieldError(name, f"must be at least 1, not {value}")
    return value


def _unsupported(body: dict[str, Any]) -> None:
    """A field of a client's schema that we cannot honour is a 400 naming it, never silently dropped."""
    for name, why in schemas.UNSUPPORTED.items():
        if body.get(name) is not None:
            raise FieldError(name, f"is not supported: {why}")


def _common(body: dict[str, Any], texts: list[str], raw: bool, top_n: int | None) -> pb.RerankRequest:
    _unsupported(body)
    model = _unicode("model", get_field(body, "model", str, ""))
    if top_n is not None:
        top_n = min(top_n, len(texts))  # Cohere's rule; also keeps it inside protobuf's int32
    max_tokens = _positive(body, "max_tokens_per_doc")
    return pb.RerankRequest(
        query=_query(body), documents=[pb.Document(text=text) for text in texts], model=model,
        top_n=top_n or 0, score_mode=pb.SCORE_MODE_RAW if raw else pb.SCORE_MODE_NORMALIZED,
        max_document_tokens=min(max_tokens, 2**32 - 1) if max_tokens else 0)


def cohere_request(body: dict[str, Any]) -> pb.RerankRequest:
    texts = _texts(body, "documents")
    get_field(body, "return_documents", bool)
    rank_fields = get_field(body, "rank_fields", list)
    if rank_fields is not None and any(name != "text" for name in rank_fields):
        raise FieldError("rank_fields", f"only [\"text\"] is supported (the document's text is what the "
                                        f"model reads), not {rank_fields!r}")
    return _common(body, texts, get_field(body, "raw_scores", bool, False), _positive(body, "top_n"))


def cohere_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> dict[str, Any]:
    with_docs = get_field(body, "return_documents", bool, False)
    results = []
    for result in response.results:
        item: dict[str, Any] = {"index": result.index, "relevance_score": result.score}
        if with_docs:
            item["document"] = {"text": request.documents[result.index].text}
        results.append(item)
    tokens = response.input_tokens
    # Each API's own convention for the same count: OpenAI/infinity and Jina read `usage`, Cohere `meta`.
    return {"id": str(uuid.uuid4()), "object": "rerank", "created": int(time.time()), "model": response.model,
            "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                      "truncated_documents": response.truncated_documents},
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"search_units": 1, "input_tokens": tokens},
                     "tokens": {"input_tokens": tokens, "output_tokens": 0}}}


def _tei_request(body: dict[str, Any]) -> pb.RerankRequest:
    texts = _texts(body, "texts")
    get_field(body, "truncate", bool), get_field(body, "return_text", bool)  # type errors before scoring
    direction = get_field(body, "truncation_direction", str)
    if direction is not None and direction.lower() != "right":
        raise FieldError("truncation_direction", f"only \"Right\" is supported (the end of a document is cut), "
                                                 f"not {direction!r}")
    return _common(body, texts, get_field(body, "raw_scores", bool, False), None)


def _is_tei(body: dict[str, Any]) -> bool:
    """Which shape a `/rerank` body is: `texts` (TEI) or `documents` (Cohere/Jina, as infinity sends)."""
    has_texts, has_documents = body.get("texts") is not None, body.get("documents") is not None
    if has_texts and has_documents:
        raise FieldError("body", "has both texts (the TEI shape) and documents (the Cohere/Jina shape); send one")
    if not has_texts and not has_documents:
        raise FieldError("texts", "is required (or documents, for the Cohere/Jina shape)")
    return has_texts


def any_request(body: dict[str, Any]) -> pb.RerankRequest:
    return _tei_request(body) if _is_tei(body) else cohere_request(body)


def any_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> Any:
    return (_tei_answer if _is_tei(body) else cohere_answer)(body, request, response)


def _tei_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> list[dict[str, Any]]:
    if get_field(body, "truncate", bool, True) is False and response.truncated_documents:
        first = next(r.index for r in response.results if r.truncated)
        raise RequestTooLarge(f"texts[{first}] is longer than the model's max length and truncate is false")
    with_text = get_field(body, "return_text", bool, False)
    results = []
    for result in response.results:
        item: dict[str, Any] = {"index": result.index, "score": result.score}
        if with_text:
            item["text"] = request.documents[result.index].text
        results.append(item)
    return results
