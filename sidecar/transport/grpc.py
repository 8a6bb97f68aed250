"""gRPC transport: parses request bytes itself (so malformed protobuf or invalid UTF-8 becomes
INVALID_ARGUMENT instead of a generic failure), calls the core service, maps every error to a status."""
from __future__ import annotations

import logging

import grpc
from google.protobuf.message import DecodeError

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.core.accounting import OK, accounted_request, model_label
from rescore_sidecar.sidecar.core.errors import InvalidRequest, NotReady
from rescore_sidecar.sidecar.core.service import RerankService
from rescore_sidecar.sidecar.transport.errors import to_status

log = logging.getLogger("sidecar")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Reranker"].full_name  # "rescore.v1.Reranker"


FALLBACK_METADATA = "x-rescore-model-fallback"


class GrpcTransport:
    """Adapts RerankService to grpc.aio handlers."""

    def __init__(self, service: RerankService | None = None) -> None:
        # None while models load: the handlers are registered before the port opens, so early
        # calls get a retryable UNAVAILABLE instead of UNIMPLEMENTED.
        self.service = service

    async def rerank(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        with accounted_request("grpc", lambda: dict(context.invocation_metadata() or ())) as record:
            try:
                if self.service is None:
                    raise NotReady("models are still loading (not SERVING yet); send the request to another replica")
                try:
                    request = pb.RerankRequest.FromString(raw)
                except DecodeError as exc:
                    raise InvalidRequest(f"request is not a valid rescore.v1.RerankRequest ({exc}); "
                                         "string fields must be valid UTF-8") from exc
                record.model = model_label(self.service, request.model)
                record.documents = len(request.documents)
                log.debug("rerank request_id=%s model=%s documents=%d", request.request_id, record.model,
                          len(request.documents))
                if self.service.config.log_documents:  # opt-in only: texts may be personal data
                    log.info("rerank request_id=%s query=%r documents=%r", request.request_id, request.query,
                             [doc.text for doc in request.documents])
                response = await self.service.rerank(request, context.time_remaining())
                if request.model and request.model != response.model \
                        and self.service.choose_model(request.model).how == "fallback":
                    # accept_any_model: say so, as the HTTP port's header does
                    context.set_trailing_metadata(((FALLBACK_METADATA, f"model {request.model!r} is not served; "
                                                    f"scored with {response.model!r} (accept_any_model)"),))
                record.timings = response.timings
                record.finish(OK)
                return response
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                status = to_status(exc)
                record.finish(status.code.name)
                await context.abort(status.code, status.message, status.trailing_metadata())

    async def list_models(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        if self.service is None:
            status = to_status(NotReady("models are still loading (not SERVING yet)"))
            await context.abort(status.code, status.message, status.trailing_metadata())
        return self.service.list_models()

    def handler(self) -> grpc.GenericRpcHandler:
        # No request deserializer: rerank() parses, so decode errors get a clear status.
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Rerank": grpc.unary_unary_rpc_method_handler(
                self.rerank, response_serializer=pb.RerankResponse.SerializeToString),
            "ListModels": grpc.unary_unary_rpc_method_handler(
                self.list_models, response_serializer=pb.ListModelsResponse.SerializeToString),
        })
