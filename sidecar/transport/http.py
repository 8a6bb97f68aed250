"""HTTP transport: the rerank APIs the ecosystem speaks, over the same RerankService as gRPC.

- `POST /v1/rerank` (Jina / Cohere v1) and `POST /v2/rerank` (Cohere v2):
  `{model?, query, documents: [str | {text}], top_n?, return_documents?, max_tokens_per_doc?, raw_scores?,
  timeout_ms?, bypass_cache?}` -> `{id, object, model, results: [{index, relevance_score, document?}], usage, meta}`
- `POST /rerank`: the text-embeddings-inference body `{query, texts, raw_scores?, return_text?, truncate?, bypass_cache?}`
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
from typing import Any, Callable

from aiohttp import web

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.core.accounting import OK, accounted_request, model_label
from rescore_sidecar.sidecar.core.errors import NotReady, RequestTooLarge
from rescore_sidecar.sidecar.core.service import RerankService
from rescore_sidecar.sidecar.transport.errors import to_http
from rescore_sidecar.sidecar.transport.http_bodies import any_answer, any_request, cohere_answer, cohere_request, get_field
from rescore_sidecar.sidecar.transport.http_errors import FieldError, HttpError
from rescore_sidecar.sidecar.transport.security import http_ssl_context, request_is_authorized

log = logging.getLogger("sidecar.http")

TIMEOUT_HEADER = "X-Request-Timeout-Ms"
BYPASS_HEADER = "X-Bypass-Cache"  # same as the body's `bypass_cache` (for clients that cannot add a field)
_TRUTHS = {"true": True, "1": True, "false": False, "0": False}
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


def _timeout(request: web.Request, body: dict[str, Any]) -> float | None:
    """Seconds the client gives this request: the smaller of the header and the `timeout_ms` field."""
    limits = []
    header = request.headers.get(TIMEOUT_HEADER)
    if header is not None:
        try:
            limits.append(float(header))
        except ValueError:
            raise FieldError(f"header {TIMEOUT_HEADER}", f"must be a number of milliseconds, not {header!r}") from None
    field = get_field(body, "timeout_ms", (int, float))
    if field is not None:
        try:
            limits.append(float(field))
        except OverflowError:
            raise FieldError("timeout_ms", "is too large") from None
    for value in limits:
        if not math.isfinite(value) or value <= 0:
            raise FieldError("timeout_ms", f"must be a positive number of milliseconds, not {value}")
    return min(limits) / 1000 if limits else None


def _bypass(request: web.Request, body: dict[str, Any]) -> bool:
    """Whether to skip the score cache: the `bypass_cache` field or the header (either one is enough)."""
    field = get_field(body, "bypass_cache", bool, False)
    header = request.headers.get(BYPASS_HEADER)
    if header is None:
        return field
    value = _TRUTHS.get(header.strip().lower())
    if value is None:
        raise FieldError(f"header {BYPASS_HEADER}", f"must be true, false, 1 or 0, not {header!r}")
    return field or value


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
        with accounted_request("http", lambda: request.headers) as record:
            try:
                if self.service is None:
                    raise NotReady("models are still loading (not ready yet); send the request to another replica")
                body = await self._read(request)
                rerank_request, timeout = build(body), _timeout(request, body)
                rerank_request.bypass_cache = _bypass(request, body)
                record.model = model_label(self.service, rerank_request.model)
                record.documents = len(rerank_request.documents)
                log.debug("http rerank path=%s model=%s documents=%d", request.path, record.model,
                          len(rerank_request.documents))
                if self.config.log_documents:  # opt-in only: texts may be personal data
                    log.info("http rerank query=%r documents=%r", rerank_request.query,
                             [doc.text for doc in rerank_request.documents])
                response = await self.service.rerank(rerank_request, timeout)
                payload = answer(body, rerank_request, response)
                record.timings = response.timings
                record.finish(OK)
                headers = {}
                requested = rerank_request.model
                if requested and requested != response.model and self.service.choose_model(requested).how == "fallback":
                    headers[FALLBACK_HEADER] = (f"model {requested!r} is not served; scored with "
                                                f"{response.model!r} (accept_any_model)")
                return web.json_response(payload, dumps=_dumps, headers=headers)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                error = to_http(exc)
                record.finish(error.grpc_code)
                return _json_error(error)

    async def rerank_cohere(self, request: web.Request) -> web.Response:
        return await self._score(request, cohere_request, cohere_answer)

    async def rerank_tei(self, request: web.Request) -> web.Response:
        """TEI's route; infinity and others post the Cohere/Jina body here, told apart by its fields."""
        return await self._score(request, any_request, any_answer)

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


async def start_http(transport: HttpTransport, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Opens the HTTP port; returns the runner (cleanup() closes it) and the bound port."""
    runner = web.AppRunner(transport.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=http_ssl_context(transport.config), reuse_port=False)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
    return runner, bound
