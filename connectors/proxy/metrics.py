"""Prometheus metrics of one proxy process (own registry, served on GET /_rescore/metrics)."""
from __future__ import annotations

import dataclasses

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Added latency is small when rescoring is off (sub-millisecond) and bounded by the
# deadline when on: buckets cover both.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5)


@dataclasses.dataclass(frozen=True)
class ProxyMetrics:
    registry: CollectorRegistry
    requests: Counter
    added_latency: Histogram
    upstream_errors: Counter
    # Label children by label values: `labels()` lookups are a measurable part of a request.
    _children: dict = dataclasses.field(default_factory=dict)

    def observe(self, route: str, status: str, arm: str, outcome: str, added_seconds: float) -> None:
        key = (route, status, arm, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key),
                                              self.added_latency.labels(route))
        children[0].inc()
        children[1].observe(added_seconds)

    def render(self) -> tuple[bytes, str]:
        """The proxy's metrics, then the process-wide ones (connector core: rescore_connector_*,
        fallbacks included: counted once there, per search)."""
        return generate_latest(self.registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def create_metrics() -> ProxyMetrics:
    registry = CollectorRegistry()
    return ProxyMetrics(
        registry=registry,
        requests=Counter(
            "rescore_proxy_requests", "Requests handled, by route (search, msearch, other), "
            "status code, A/B arm and rescoring outcome (reranked, fallback, off, passthrough)",
            ["route", "status", "arm", "outcome"], registry=registry),
        added_latency=Histogram(
            "rescore_proxy_added_latency_seconds", "Time the proxy adds on top of the upstream's "
            "answer (rewriting, rescoring, copying), by route", ["route"],
            buckets=LATENCY_BUCKETS, registry=registry),
        upstream_errors=Counter(
            "rescore_proxy_upstream_errors", "Requests the upstream did not answer, by kind "
            "(unreachable, timeout, disconnected)", ["kind"], registry=registry),
    )
