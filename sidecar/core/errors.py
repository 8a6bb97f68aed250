"""The errors the core raises, each with its typed reason from the wire contract.

Every status the sidecar sends carries a `google.rpc.ErrorInfo` (domain `DOMAIN`) in the standard
rich-status trailer: clients decide on its `reason`, never on the message's wording (which may
change). The reasons, the domain and the trailer key are the `ErrorReason` enum of
proto/rescore/v1/rescore.proto; transport/errors.py maps them to gRPC and HTTP statuses.
"""
from __future__ import annotations

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb

_CONTRACT = pb.ErrorReason.DESCRIPTOR.GetOptions()
DOMAIN: str = _CONTRACT.Extensions[pb.error_domain]  # "rescore.sidecar"
DETAILS_KEY: str = _CONTRACT.Extensions[pb.error_details_key]  # "grpc-status-details-bin"

# Every ErrorInfo.reason the sidecar may send.
REASONS: tuple[str, ...] = tuple(name for name in pb.ErrorReason.keys() if name != "ERROR_REASON_UNSPECIFIED")


def reason_name(value: int) -> str:
    """The wire string of an `ErrorReason` value (the value's name)."""
    return pb.ErrorReason.Name(value)


class RescoreError(Exception):
    """An error whose message is safe to show the client."""

    reason: str = reason_name(pb.INTERNAL)


class InvalidRequest(RescoreError):
    reason = reason_name(pb.INVALID_REQUEST)


class ModelNotFound(RescoreError):
    reason = reason_name(pb.MODEL_NOT_FOUND)


class LimitExceeded(RescoreError):
    """RESOURCE_EXHAUSTED: raise one of the two subclasses, which say whose fault it is (a bare
    LimitExceeded is treated as the request's)."""

    reason = reason_name(pb.REQUEST_TOO_LARGE)


class RequestTooLarge(LimitExceeded):
    """The request is over a per-request limit and never fits, whatever the load: the request's fault."""

    reason = reason_name(pb.REQUEST_TOO_LARGE)


class Overloaded(LimitExceeded):
    """The queue is full right now: the sidecar's load, worth another replica or a later retry."""

    reason = reason_name(pb.OVERLOADED)


class DeadlineTooShort(RescoreError):
    reason = reason_name(pb.DEADLINE_TOO_SHORT)


class NotReady(RescoreError):
    """Loading models or draining: another replica should take the request."""

    reason = reason_name(pb.NOT_READY)
