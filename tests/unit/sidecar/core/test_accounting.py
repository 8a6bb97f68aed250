"""One request's bookkeeping, the same for both transports: gauge, counters, latency, labels."""
from __future__ import annotations

import asyncio
import types

import pytest

from rescore_sidecar.sidecar import metrics
from rescore_sidecar.sidecar.core.accounting import OK, accounted_request, model_label


def _value(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_model_label_is_bounded_to_served_models():
    service = types.SimpleNamespace(backends={"ce": object(), "bi": object()}, default_model="ce")
    assert model_label(service, "bi") == "bi"
    assert model_label(service, "") == "ce"  # the default model
    assert model_label(service, "made-up") == "unknown"
    assert model_label(None, "ce") == "unknown"  # still loading


def test_ok_request_is_counted_without_an_error():
    before = (_value("rescore_requests_total", model="acc-ok", code="OK"), _value("rescore_errors_total", code="OK"))
    with accounted_request() as record:
        assert _value("rescore_requests_in_flight") >= 1
        record.model = "acc-ok"
        record.finish(OK)
        # counted as soon as finished, before the answer leaves: not when the block ends
        assert _value("rescore_requests_total", model="acc-ok", code="OK") == before[0] + 1
        record.finish("INTERNAL")  # once only
    assert _value("rescore_requests_total", model="acc-ok", code="OK") == before[0] + 1
    assert _value("rescore_request_duration_seconds_count", model="acc-ok", code="OK", transport="grpc") >= 1
    assert _value("rescore_errors_total", code="OK") == before[1]


def test_latency_is_labelled_with_the_transport_the_request_came_in_on():
    """The dashboard's server-side p50/p99 per transport reads this label; the counters stay per model."""
    for transport in ("grpc", "http"):
        with accounted_request(transport) as record:
            record.model = "acc-transport"
            record.finish(OK)
    for transport in ("grpc", "http"):
        assert _value("rescore_request_duration_seconds_count", model="acc-transport", code="OK",
                      transport=transport) == 1
    assert _value("rescore_requests_total", model="acc-transport", code="OK") == 2


def test_error_code_counts_an_error_and_the_gauge_returns():
    in_flight = _value("rescore_requests_in_flight")
    errors = _value("rescore_errors_total", code="NOT_FOUND")
    with accounted_request() as record:
        record.model = "acc-err"
        record.finish("NOT_FOUND")
    assert _value("rescore_errors_total", code="NOT_FOUND") == errors + 1
    assert _value("rescore_requests_in_flight") == in_flight


def test_cancelled_request_is_counted_as_cancelled():
    before = _value("rescore_requests_total", model="acc-cancel", code="CANCELLED")
    with pytest.raises(asyncio.CancelledError):
        with accounted_request() as record:
            record.model = "acc-cancel"
            raise asyncio.CancelledError
    assert _value("rescore_requests_total", model="acc-cancel", code="CANCELLED") == before + 1


def test_a_request_left_unfinished_is_counted_unknown():
    before = _value("rescore_requests_total", model="acc-escaped", code="UNKNOWN")
    with pytest.raises(KeyError):
        with accounted_request() as record:
            record.model = "acc-escaped"
            raise KeyError("escaped the transport")
    assert _value("rescore_requests_total", model="acc-escaped", code="UNKNOWN") == before + 1


def test_model_label_counts_an_alias_as_the_model_it_serves():
    service = types.SimpleNamespace(backends={"ce": object()}, default_model="ce", aliases={"rerank-v3.5": "ce"})
    assert model_label(service, "rerank-v3.5") == "ce"
    assert model_label(service, "made-up") == "unknown"
