"""Prometheus metrics of the sidecar (names documented in the README)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

REQUEST_LATENCY = Histogram(
    "rescore_request_duration_seconds", "Rerank request latency, receipt to response, by transport (grpc, http).",
    ["model", "code", "transport"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
REQUESTS = Counter("rescore_requests_total", "Rerank requests by model and status code.",
                   ["model", "code"], registry=REGISTRY)
ERRORS = Counter("rescore_errors_total", "Requests that ended in an error, by status code.",
                 ["code"], registry=REGISTRY)
PAIRS_SCORED = Counter("rescore_pairs_scored_total", "Documents scored.", ["model"], registry=REGISTRY)
SEQUENCES_DROPPED = Counter("rescore_sequences_dropped_total",
                            "Sequences dropped before compute because their request was cancelled or expired.",
                            ["model"], registry=REGISTRY)
TRUNCATED = Counter("rescore_truncated_documents_total", "Documents cut to fit the model's max length.",
                    ["model"], registry=REGISTRY)
QUERY_TRUNCATED = Counter("rescore_truncated_queries_total", "Queries cut to their token budget.",
                          ["model"], registry=REGISTRY)
BATCH_SIZE = Histogram("rescore_batch_size", "Sequences per forward pass.", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=REGISTRY)
BATCH_TOKENS = Histogram("rescore_batch_tokens", "Padded tokens per forward pass.", ["model"],
                         buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536), registry=REGISTRY)
PADDING_RATIO = Histogram("rescore_batch_padding_ratio", "Share of padding tokens in a forward pass.", ["model"],
                          buckets=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0), registry=REGISTRY)
COMPUTE_SECONDS = Histogram("rescore_batch_compute_seconds", "Forward pass wall time.", ["model"],
                            buckets=LATENCY_BUCKETS, registry=REGISTRY)
QUEUE_DEPTH = Gauge("rescore_queue_depth", "Sequences waiting for a forward pass.", ["model"], registry=REGISTRY)
QUEUE_WAIT = Histogram("rescore_queue_wait_seconds", "Time a request waited before its first forward pass.",
                       ["model"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
IN_FLIGHT = Gauge("rescore_requests_in_flight", "Rerank requests being served.", registry=REGISTRY)
MODEL_INFO = Gauge("rescore_model_info", "Served models (value 1).", ["model", "kind", "device", "dtype"],
                   registry=REGISTRY)
CACHE_HITS = Counter("rescore_cache_hits_total",
                     "Sequences whose row came from the score cache or another request's identical computation.",
                     ["model"], registry=REGISTRY)
CACHE_MISSES = Counter("rescore_cache_misses_total", "Sequences the score cache did not hold (computed).",
                       ["model"], registry=REGISTRY)
CACHE_SHARED = Counter("rescore_cache_shared_total",
                       "Sequences that waited for another request's identical in-flight computation.",
                       ["model"], registry=REGISTRY)
CACHE_BYPASSED = Counter("rescore_cache_bypassed_total",
                         "Sequences computed without the score cache because the request asked (bypass_cache).",
                         ["model"], registry=REGISTRY)
CACHE_EVICTIONS = Counter("rescore_cache_evictions_total", "Entries dropped to keep the cache within its size.",
                          registry=REGISTRY)
CACHE_BYTES = Gauge("rescore_cache_bytes", "Estimated bytes the score cache holds.", registry=REGISTRY)
CACHE_ENTRIES = Gauge("rescore_cache_entries", "Entries in the score cache.", registry=REGISTRY)
CACHE_MAX_BYTES = Gauge("rescore_cache_max_bytes", "The score cache's size setting (0 = off).", registry=REGISTRY)


def serve_metrics(host: str, port: int):
    """Starts the /metrics HTTP endpoint in a background thread; returns (server, thread)."""
    return start_http_server(port, addr=host, registry=REGISTRY)
