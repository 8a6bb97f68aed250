"""Prometheus metrics of the connectors (prefix `rescore_connector_`), registered once per process."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SEARCHES = Counter("rescore_connector_searches_total",
                   "Searches handled by a connector, by outcome (reranked, fallback, skipped) and A/B arm",
                   ["outcome", "arm"])
FALLBACKS = Counter("rescore_connector_fallbacks_total", "Searches answered in engine order, by reason", ["reason"])
# Brownout window and selective reranking (connectors/_core/brownout.py, selective.py).
WINDOW = Gauge("rescore_connector_window", "Window the default options send to a sidecar target now (0 = off)",
               ["target"])
WINDOW_SEARCHES = Counter("rescore_connector_window_searches_total",
                          "Searches by the window they sent to the sidecar (0 = none) and why it was below the "
                          "requested one (latency, queue, timeouts, pinned; empty = as requested)",
                          ["window", "reason"])
SKIPPED = Counter("rescore_connector_skipped_total",
                  "Searches not sent to the sidecar, by reason (confident, brownout, disabled, no_text, ...)",
                  ["reason"])
SIDECAR_CALLS = Counter("rescore_connector_sidecar_calls_total", "Rerank calls by target and gRPC status code",
                        ["target", "code"])
SIDECAR_SECONDS = Histogram("rescore_connector_sidecar_seconds", "Wall time of one Rerank call",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
OVERHEAD_SECONDS = Histogram("rescore_connector_overhead_seconds",
                             "Time a search spends in the connector besides the engine and sidecar calls",
                             buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05))
BREAKER_STATE = Gauge("rescore_connector_breaker_open", "1 while the breaker of a sidecar target is open or half-open",
                      ["target"])
BREAKER_TRANSITIONS = Counter("rescore_connector_breaker_transitions_total", "Breaker state changes",
                              ["target", "state"])


def breaker_listener(target: str):
    def on_change(state: str) -> None:
        BREAKER_TRANSITIONS.labels(target, state).inc()
        BREAKER_STATE.labels(target).set(0 if state == "closed" else 1)

    return on_change

# Per endpoint: each address a sidecar target resolves to (connectors/_sidecar/pool.py).
ENDPOINT_CALLS = Counter("rescore_connector_endpoint_calls_total",
                         "Rerank calls per sidecar endpoint (address), by outcome (ok, failed, request_error)",
                         ["target", "endpoint", "outcome"])
ENDPOINT_EJECTIONS = Counter("rescore_connector_endpoint_ejections_total",
                             "Times a sidecar endpoint was ejected by outlier detection", ["target", "endpoint"])
ENDPOINT_EJECTED = Gauge("rescore_connector_endpoint_ejected", "1 while a sidecar endpoint is ejected",
                         ["target", "endpoint"])
ENDPOINTS = Gauge("rescore_connector_endpoints", "Addresses a sidecar target currently resolves to", ["target"])


def endpoint_listener(target: str):
    """Pool events (added, removed, ejected, returned) as metrics."""
    def on_event(event: str, endpoint: str) -> None:
        if event == "ejected":
            ENDPOINT_EJECTIONS.labels(target, endpoint).inc()
            ENDPOINT_EJECTED.labels(target, endpoint).set(1)
        elif event in ("returned", "added"):
            ENDPOINT_EJECTED.labels(target, endpoint).set(0)
        if event == "removed":
            try:
                ENDPOINT_EJECTED.remove(target, endpoint)
            except KeyError:
                pass
        if event in ("added", "removed"):
            ENDPOINTS.labels(target).inc(1 if event == "added" else -1)

    return on_event
