"""Client-side rescoring: wrap an opensearch-py / elasticsearch-py client and get reranked hits.

    from rescore_sidecar.connectors import RescoringOpenSearch, ConnectorConfig, SidecarClientConfig
    client = RescoringOpenSearch(OpenSearch(url), ConnectorConfig(sidecar=SidecarClientConfig(targets=("127.0.0.1:50051",))))
    client.search(index="docs", body={"query": {"match": {"text": "q"}}}, rerank={"window": 100})

The names below load on first use (PEP 562): the sidecar imports light modules of this package
(`tracing`, `logs`) without the client stack and its Prometheus metrics.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AsyncSidecarClient": "_async.client", "AsyncRescorer": "_async.rescoring",
    "AsyncRescoringElasticsearch": "_async.wrappers", "AsyncRescoringOpenSearch": "_async.wrappers",
    "RerankResult": "_sidecar.calls", "SidecarClient": "_sidecar.client",
    "RequestRejected": "_sidecar.errors", "SidecarOverloaded": "_sidecar.errors", "SidecarUnavailable": "_sidecar.errors",
    "Arm": "config", "BreakerConfig": "config", "ConnectorConfig": "config", "RerankOptions": "config",
    "SidecarClientConfig": "config", "Experiment": "config", "Rescorer": "rescoring",
    "FeedbackError": "feedback_log", "FeedbackLog": "feedback_log", "MockSidecar": "testing",
    "RescoringElasticsearch": "wrappers", "RescoringOpenSearch": "wrappers",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rescore_sidecar.connectors._async.client import AsyncSidecarClient
    from rescore_sidecar.connectors._async.rescoring import AsyncRescorer
    from rescore_sidecar.connectors._async.wrappers import AsyncRescoringElasticsearch, AsyncRescoringOpenSearch
    from rescore_sidecar.connectors._sidecar.calls import RerankResult
    from rescore_sidecar.connectors._sidecar.client import SidecarClient
    from rescore_sidecar.connectors._sidecar.errors import RequestRejected, SidecarOverloaded, SidecarUnavailable
    from rescore_sidecar.connectors.config import (Arm, BreakerConfig, ConnectorConfig, Experiment, RerankOptions,
                                                  SidecarClientConfig)
    from rescore_sidecar.connectors.feedback_log import FeedbackError, FeedbackLog
    from rescore_sidecar.connectors.rescoring import Rescorer
    from rescore_sidecar.connectors.testing import MockSidecar
    from rescore_sidecar.connectors.wrappers import RescoringElasticsearch, RescoringOpenSearch


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once: later lookups are plain
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
