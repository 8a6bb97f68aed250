"""What a failed Rerank call means for the caller, read from the status's typed reason.

The sidecar puts a `google.rpc.ErrorInfo` (domain `rescore.sidecar`) in the standard rich-status
trailer of every error (`sidecar/transport/errors.py: to_status`; the reasons are the ErrorReason
enum of proto/rescore/v1/rescore.proto). Its `reason` decides, never the message:

- the request's fault (over a per-request limit, invalid): `RequestRejected`; falls back, and is a
  fast success for the breaker (says nothing about the sidecar's health);
- the sidecar's load (queue full, device memory): `SidecarOverloaded`; counts against the breaker;
- anything else: `SidecarUnavailable` with a reason from the status code.

A RESOURCE_EXHAUSTED without ErrorInfo comes from gRPC's transport itself, whose only use of that
code is a message over the size limit (either side): the request's fault, `too_large`.
"""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb

# The wire contract: proto/rescore/v1/rescore.proto ErrorReason and its options.
_CONTRACT = pb.ErrorReason.DESCRIPTOR.GetOptions()
DOMAIN = _CONTRACT.Extensions[pb.error_domain]  # "rescore.sidecar"
_DETAILS_KEY = _CONTRACT.Extensions[pb.error_details_key]  # "grpc-status-details-bin"
_REASON = pb.ErrorReason.Name

# Fallback reasons (the `_rescore.fallback` values) by gRPC code, when no ErrorInfo says more.
_BY_CODE = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.UNAVAILABLE: "unavailable",
            grpc.StatusCode.RESOURCE_EXHAUSTED: "too_large", grpc.StatusCode.CANCELLED: "timeout",
            grpc.StatusCode.UNAUTHENTICATED: "unauthenticated", grpc.StatusCode.PERMISSION_DENIED: "unauthenticated"}
# Codes that blame what was sent (our request was bad), with or without ErrorInfo.
_REQUEST_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                  grpc.StatusCode.OUT_OF_RANGE}
# ErrorInfo.reason -> fallback reason, by what the reason blames.
_REQUEST_REASONS = {_REASON(pb.REQUEST_TOO_LARGE): "too_large", _REASON(pb.INVALID_REQUEST): "error",
                    _REASON(pb.MODEL_NOT_FOUND): "error"}
_OVERLOAD_REASONS = {_REASON(pb.OVERLOADED): "overloaded", _REASON(pb.OUT_OF_DEVICE_MEMORY): "overloaded"}


class SidecarUnavailable(Exception):
    """The sidecar could not score this request within its budget; `reason` is the fallback reason:
    timeout, unavailable, overloaded, too_large, breaker_open, unauthenticated or error."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.target: str | None = None  # the configured target that failed, when one was called
        self.isolated = False  # one endpoint failed while another of its target was healthy


class RequestRejected(SidecarUnavailable):
    """Refused because of what was sent (over a per-request limit: `too_large`; invalid: `error`).
    Retrying or another replica would not help; not a breaker failure."""


class SidecarOverloaded(SidecarUnavailable):
    """Refused because the sidecar is busy (queue full, out of device memory): reason `overloaded`."""


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The sidecar's ErrorInfo from the status trailer, or None (another server, or gRPC itself)."""
    try:
        trailers = error.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - an RpcError without call details (e.g. raised by a test double)
        return None
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    if info.domain == DOMAIN:
                        return info
    return None


def from_rpc_error(error: grpc.RpcError, target: str = "") -> SidecarUnavailable:
    """The exception a failed call raises to the connector."""
    code = error.code()
    detail = f"{target}: {code.name} {error.details() or ''}".strip()
    info = error_info(error)
    reason = info.reason if info is not None else ""
    if reason in _REQUEST_REASONS:
        return RequestRejected(_REQUEST_REASONS[reason], detail)
    if reason in _OVERLOAD_REASONS:
        return SidecarOverloaded(_OVERLOAD_REASONS[reason], detail)
    if code in _REQUEST_CODES:
        return RequestRejected("error", detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and info is None:
        return RequestRejected("too_large", detail)  # gRPC's own message-size limit
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return SidecarOverloaded("overloaded", detail)
    return SidecarUnavailable(_BY_CODE.get(code, "error"), detail)
