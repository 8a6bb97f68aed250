"""The core's errors carry the proto's reasons; the limit errors say whose fault they are."""
from __future__ import annotations

from rescore_sidecar.proto.rescore.v1 import rescore_pb2 as pb
from rescore_sidecar.sidecar.core import errors


def test_every_error_class_has_a_reason_from_the_proto():
    classes = [errors.RescoreError, errors.InvalidRequest, errors.ModelNotFound, errors.LimitExceeded,
               errors.RequestTooLarge, errors.Overloaded, errors.DeadlineTooShort, errors.NotReady]
    for cls in classes:
        assert cls.reason in errors.REASONS
        assert pb.ErrorReason.Value(cls.reason) != pb.ERROR_REASON_UNSPECIFIED
    assert "ERROR_REASON_UNSPECIFIED" not in errors.REASONS


def test_the_two_limits_differ():
    assert (errors.RequestTooLarge.reason, errors.Overloaded.reason) == ("REQUEST_TOO_LARGE", "OVERLOADED")
