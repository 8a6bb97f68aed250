"""HTTP transport: the rerank APIs the ecosystem speaks, over the same RerankService as gRPC.

- `POST /v1/rerank` (Jina / Cohere v1) and `POST /v2/rerank` (Cohere v2):
  `{model?, query, documents: [str | {text}], top_n?, return_documents?, max_tokens_per_doc?, raw_scores?,
  timeout_ms?}` -> `{id, object, model, results: [{index, relevance_score, document?}], usage, meta}`
- `POST /rerank`: the text-embeddings-inference body `{query, texts, raw_scores?, return_text?, truncate?}`
  -> `[{index, score, text?}]`, or the Cohere/Jina body (`documents`, as infinity sends) -> its answer.
- `GET /v1/models`; `GET /health` and `/ready` (200 exactly when gRPC health is SERVING), `/live`;
  `GET /openapi.json` (transport/openapi.py, from the shapes in transport/http_schemas.py).

Only translation lives here: every request becomes a rescore.v1.RerankRequest for
RerankService.rerank (same validation, queue, batching, limits and metrics as gRPC), and every
error becomes a status through transport/errors.py `to_http`. See docs/http-api.md.
"""
from __future__ import annotations

import json
import logging
import math
import time
import uuid
from typing import Any, Callable

from aiohttp import web

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.core.accounting import OK, accounted_request, model_label
from rescore_sidecar.sidecar.core.errors import NotReady, RequestTooLarge
from rescore_sidecar.sidecar.core.service import RerankService
from rescore_sidecar.sidecar.transport import http_schemas as schemas
from rescore_sidecar.sidecar.transport.errors import to_http
from rescore_sidecar.sidecar.transport.http_errors import FieldError, HttpError
from rescore_sidecar.sidecar.transport.security import http_ssl_context, request_is_authorized

log = logging.getLogger("sidecar.http")

TIMEOUT_HEADER = "X-Request-Timeout-Ms"
FALLBACK_HEADER = "X-Rescore-Model-Fallback"  # accept_any_model served another model than the one named


def _json_error(error: HttpError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FieldError("body", f"not valid UTF-8 JSON ({exc})") from exc
    except RecursionError:
        raise FieldError("body", "is nested too deeply") from None
    if not isinstance(body, dict):
        raise FieldError("body", f"must be a JSON object, not {type(body).__name__}")
    return body


def _get(body: dict[str, Any], name: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
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
    items = _get(body, name, list)
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
    query = _get(body, "query", str)
    if query is None:
        raise FieldError("query", "is required")
    if not query.strip():
        raise FieldError("query", "is empty")
    return _unicode("query", query)


def _timeout(request: web.Request, body: dict[str, Any]) -> float | None:
    """Seconds the client gives this request: the smaller of the header and the `timeout_ms` field."""
    limits = []
    header = request.headers.get(TIMEOUT_HEADER)
    if header is not None:
        try:
            limits.append(float(header))
        except ValueError:
            raise FieldError(f"header {TIMEOUT_HEADER}", f"must be a number of milliseconds, not {header!r}") from None
    field = _get(body, "timeout_ms", (int, float))
    if field is not None:
        try:
            limits.append(float(field))
        except OverflowError:
            raise FieldError("timeout_ms", "is too large") from None
    for value in limits:
        if not math.isfinite(value) or value <= 0:
            raise FieldError("timeout_ms", f"must be a positive number of milliseconds, not {value}")
    return min(limits) / 1000 if limits else None


class HttpTransport:
    """Adapts RerankService to aiohttp handlers. `service` is None while models load."""

    def __init__(self, config: SidecarConfig, serving: Callable[[], bool]) -> None:
        self.config = config
        self.service: RerankService | None = None
        self._serving = serving  # the same state gRPC health reports
        self._token = config.token()

    def app(self) -> web.Application:
        # client_max_size: a little over the limit so the 413 comes from our check, with a JSON body.
        app = web.Application(client_max_size=self.config.max_request_bytes + 64 * 1024,
                              middlewares=[self._errors_middleware])
        app.router.add_post("/v1/rerank", self.rerank_cohere)
        app.router.add_post("/v2/rerank", self.rerank_cohere)
        app.router.add_post("/rerank", self.rerank_tei)
        app.router.add_get("/v1/models", self.models)
        for path in ("/health", "/ready"):
            app.router.add_get(path, self.ready)
        app.router.add_get("/live", self.live)
        app.router.add_get("/openapi.json", self.openapi)
        return app

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if not request_is_authorized(request.path, request.headers.get("Authorization", ""), self._token):
            return _json_error(HttpError(401, "unauthorized", "missing or invalid bearer token "
                                         "(header 'Authorization: Bearer <token>')", grpc_code="UNAUTHENTICATED"))
        try:
            return await handler(request)
        except web.HTTPException as exc:  # routing: unknown path 404, wrong method 405, body over the cap 413
            kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status, "http_error")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            error = HttpError(exc.status, kind, f"{request.method} {request.path}: {exc.reason}")
            return web.json_response(error.body(), status=exc.status, headers=headers)

    async def _read(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > self.config.max_request_bytes:
            raise RequestTooLarge(f"request is {request.content_length} bytes; the limit is {self.config.max_request_bytes}")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestTooLarge(f"request is over the limit of {self.config.max_request_bytes} bytes") from None
        if len(raw) > self.config.max_request_bytes:
            raise RequestTooLarge(f"request is {len(raw)} bytes; the limit is {self.config.max_request_bytes}")
        return _parse_body(raw)

    async def _score(self, request: web.Request, build: Callable[[dict[str, Any]], pb.RerankRequest],
                     answer: Callable[[dict[str, Any], pb.RerankRequest, pb.RerankResponse], Any]) -> web.Response:
        with accounted_request() as record:
            try:
                if self.service is None:
                    raise NotReady("models are still loading (not ready yet); send the request to another replica")
                body = await self._read(request)
                rerank_request, timeout = build(body), _timeout(request, body)
                record.model = model_label(self.service, rerank_request.model)
                choice = self.service.choose_model(rerank_request.model)
                log.debug("http rerank path=%s model=%s documents=%d", request.path, record.model,
                          len(rerank_request.documents))
                if self.config.log_documents:  # opt-in only: texts may be personal data
                    log.info("http rerank query=%r documents=%r", rerank_request.query,
                             [doc.text for doc in rerank_request.documents])
                response = await self.service.rerank(rerank_request, timeout)
                payload = answer(body, rerank_request, response)
                record.finish(OK)
                headers = {}
                if choice.how == "fallback":
                    headers[FALLBACK_HEADER] = (f"model {rerank_request.model!r} is not served; scored with "
                                                f"{choice.served!r} (accept_any_model)")
                return web.json_response(payload, dumps=_dumps, headers=headers)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                error = to_http(exc)
                record.finish(error.grpc_code)
                return _json_error(error)

    async def rerank_cohere(self, request: web.Request) -> web.Response:
        return await self._score(request, _cohere_request, _cohere_answer)

    async def rerank_tei(self, request: web.Request) -> web.Response:
        """TEI's route; infinity and others post the Cohere/Jina body here, told apart by its fields."""
        return await self._score(request, _any_request, _any_answer)

    async def openapi(self, request: web.Request) -> web.Response:
        from rescore_sidecar.sidecar.transport.openapi import served_document

        names = None
        if self.service is not None and not self.config.accept_any_model:
            names = [*self.service.backends, *self.service.aliases]
        return web.json_response(served_document(names, self.config.max_documents))

    async def models(self, request: web.Request) -> web.Response:
        if self.service is None:
            return _json_error(to_http(NotReady("models are still loading")))
        listed = self.service.list_models()
        aliases: dict[str, list[str]] = {}
        for alias, served in sorted(self.service.aliases.items()):
            aliases.setdefault(served, []).append(alias)
        return web.json_response({
            "object": "list",
            "data": [{"id": m.name, "object": "model", "owned_by": "rescore-sidecar",
                      "kind": pb.ModelKind.Name(m.kind).removeprefix("MODEL_KIND_").lower().replace("_", "-"),
                      "source": m.source, "max_length": m.max_length, "max_query_tokens": m.max_query_tokens,
                      "dtype": m.dtype, "device": m.device, "default": m.is_default,
                      "aliases": aliases.get(m.name, [])} for m in listed.models],
            "max_documents": listed.max_documents,
            "max_request_bytes": listed.max_request_bytes,
        })

    async def ready(self, request: web.Request) -> web.Response:
        if self._serving():
            return web.json_response({"status": "SERVING"})
        return web.json_response({"status": "NOT_SERVING"}, status=503,
                                 headers={"Retry-After": "1"})

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _positive(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if isinstance(value, float) and value.is_integer():  # 5.0 is an integer to JSON Schema, so to us
        value = body[name] = int(value)
    value = _get(body, name, int)
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
    model = _unicode("model", _get(body, "model", str, ""))
    if top_n is not None:
        top_n = min(top_n, len(texts))  # Cohere's rule; also keeps it inside protobuf's int32
    max_tokens = _positive(body, "max_tokens_per_doc")
    return pb.RerankRequest(
        query=_query(body), documents=[pb.Document(text=text) for text in texts], model=model,
        top_n=top_n or 0, score_mode=pb.SCORE_MODE_RAW if raw else pb.SCORE_MODE_NORMALIZED,
        max_document_tokens=min(max_tokens, 2**32 - 1) if max_tokens else 0)


def _cohere_request(body: dict[str, Any]) -> pb.RerankRequest:
    texts = _texts(body, "documents")
    _get(body, "return_documents", bool)
    rank_fields = _get(body, "rank_fields", list)
    if rank_fields is not None and any(name != "text" for name in rank_fields):
        raise FieldError("rank_fields", f"only [\"text\"] is supported (the document's text is what the "
                                        f"model reads), not {rank_fields!r}")
    return _common(body, texts, _get(body, "raw_scores", bool, False), _positive(body, "top_n"))


def _cohere_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> dict[str, Any]:
    with_docs = _get(body, "return_documents", bool, False)
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
    _get(body, "truncate", bool), _get(body, "return_text", bool)  # type errors before scoring
    direction = _get(body, "truncation_direction", str)
    if direction is not None and direction.lower() != "right":
        raise FieldError("truncation_direction", f"only \"Right\" is supported (the end of a document is cut), "
                                                 f"not {direction!r}")
    return _common(body, texts, _get(body, "raw_scores", bool, False), None)


def _is_tei(body: dict[str, Any]) -> bool:
    """Which shape a `/rerank` body is: `texts` (TEI) or `documents` (Cohere/Jina, as infinity sends)."""
    has_texts, has_documents = body.get("texts") is not None, body.get("documents") is not None
    if has_texts and has_documents:
        raise FieldError("body", "has both texts (the TEI shape) and documents (the Cohere/Jina shape); send one")
    if not has_texts and not has_documents:
        raise FieldError("texts", "is required (or documents, for the Cohere/Jina shape)")
    return has_texts


def _any_request(body: dict[str, Any]) -> pb.RerankRequest:
    return _tei_request(body) if _is_tei(body) else _cohere_request(body)


def _any_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> Any:
    return (_tei_answer if _is_tei(body) else _cohere_answer)(body, request, response)


def _tei_answer(body: dict[str, Any], request: pb.RerankRequest, response: pb.RerankResponse) -> list[dict[str, Any]]:
    if _get(body, "truncate", bool, True) is False and response.truncated_documents:
        first = next(r.index for r in response.results if r.truncated)
        raise RequestTooLarge(f"texts[{first}] is longer than the model's max length and truncate is false")
    with_text = _get(body, "return_text", bool, False)
    results = []
    for result in response.results:
        item: dict[str, Any] = {"index": result.index, "score": result.score}
        if with_text:
            item["text"] = request.documents[result.index].text
        results.append(item)
    return results


async def start_http(transport: HttpTransport, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Opens the HTTP port; returns the runner (cleanup() closes it) and the bound port."""
    runner = web.AppRunner(transport.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=http_ssl_context(transport.config), reuse_port=False)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
    return runner, bound
