"""Client-side rescoring: wrap an opensearch-py / elasticsearch-py client and get reranked hits.

    from rescore_sidecar.connectors import RescoringOpenSearch, ConnectorConfig, SidecarClientConfig
    client = RescoringOpenSearch(OpenSearch(url), ConnectorConfig(sidecar=SidecarClientConfig(targets=("127.0.0.1:50051",))))
    client.search(index="docs", body={"query": {"match": {"text": "q"}}}, rerank={"window": 100})
"""
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

__all__ = [
    "Arm", "AsyncRescorer", "AsyncRescoringElasticsearch", "AsyncRescoringOpenSearch", "AsyncSidecarClient",
    "BreakerConfig", "ConnectorConfig", "Experiment", "FeedbackError", "FeedbackLog", "MockSidecar", "RerankOptions", "RerankResult", "Rescorer", "RescoringElasticsearch",
    "RescoringOpenSearch", "RequestRejected", "SidecarClient", "SidecarClientConfig", "SidecarOverloaded",
    "SidecarUnavailable",
]
